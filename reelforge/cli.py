"""The `reelforge` command. The only module that talks to the terminal."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from . import config
from .errors import ReelforgeError
from .jobs import JobRecord, JobStatus

log = logging.getLogger("reelforge.cli")


class CLIError(click.ClickException):
    """One readable line on stderr and exit status 1."""


def _setup_logging() -> None:
    """Tracebacks and job history go to the log file, never to the terminal."""
    path = config.log_path()
    root = logging.getLogger("reelforge")
    if any(isinstance(h, logging.FileHandler) for h in root.handlers):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
    except OSError:
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ReelforgeError as exc:
            raise CLIError(str(exc)) from None
        except BrokenPipeError:  # `reelforge ... | head`: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None
        except OSError as exc:  # a data dir or output we cannot use: say which, keep the traceback in the log
            log.exception("OS error")
            where = f" ({exc.filename})" if exc.filename else ""
            raise CLIError(f"{exc.strerror or exc}{where}; check REELFORGE_HOME and the output folder") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reelforge")
def cli() -> None:
    """Text-to-video as asynchronous jobs: generate, watch, download, serve."""
    _setup_logging()


def _client(endpoint: str | None):
    from .client import Client

    return Client(endpoint) if endpoint else Client()


def _engine_note(model: str) -> str | None:
    from .engines import get_engine_class
    from .models import engine_for, get_model

    engine_id, _ = engine_for(get_model(model))
    if get_engine_class(engine_id).generative:
        return None
    return (
        f"Note: {model} is rendered here by the animatic engine, a previsualization renderer, not a generative "
        "model. For generated video use --model reelforge.ltx-video (pip install 'reelforge[diffusers]'); "
        "`reelforge models` lists them."
    )


@cli.command()
@click.argument("prompt")
@click.option("--image", type=click.Path(dir_okay=False), help="Starting image (PNG or JPEG).")
@click.option("--fit", type=click.Choice(["crop", "pad"]), help="Bring an image of another size to the video size.")
@click.option("--seed", type=int, help="Seed (0-2147483646); same prompt and seed, same video.")
@click.option("--duration", "duration", type=int, help="Seconds [default: 6, or the model's longest shot if shorter].")
@click.option("--fps", type=int, default=24, show_default=True)
@click.option("--resolution", default="1280x720", show_default=True, help="WIDTHxHEIGHT.")
@click.option("--model", default=config.DEFAULT_MODEL, show_default=True, help="Model id (`reelforge models`).")
@click.option("-o", "--output", help="Output folder or s3://bucket/prefix (default: the data dir's outputs; with --endpoint, the server's default).")
@click.option("--token", help="Client request token: the same token never starts a second job.")
@click.option("--endpoint", envvar="REELFORGE_ENDPOINT", help="URL of a reelforge server (default: run here).")
@click.option("--no-wait", is_flag=True, help="Print the job id and return; the job runs on.")
@click.option("--json", "as_json", is_flag=True, help="Print the finished job as JSON.")
@click.option("--dry-run", is_flag=True, help="Check the request and estimate cost and time; submit nothing.")
def generate(prompt, image, fit, seed, duration, fps, resolution, model, output, token, endpoint, no_wait, as_json, dry_run):
    """Make a video from PROMPT."""
    from .request import ImageInput, VideoRequest, parse_dimension

    width, height = parse_dimension(resolution, "--resolution")
    if duration is None:
        duration = _default_duration(model)
    fields = dict(text=prompt, duration_s=duration, fps=fps, width=width, height=height, seed=seed, fit=fit)
    if image:
        fields["image"] = ImageInput.from_source(Path(image), "--image")
    request = VideoRequest(**fields)
    if dry_run:
        from .cli_batch import print_estimate

        return print_estimate([(model, request)], endpoint, as_json)
    _submit_and_follow(request, model, output, token, endpoint, no_wait, as_json)


def lint_request(request, *, errors: bool = True) -> list[str]:
    """Lint warnings for a request, by its task type, as lines to print.

    ``errors=False`` leaves out what the request check itself refuses (length), so a bad
    prompt gives one line, not two.
    """
    from .prompts import lint_prompt, lint_shots

    if request.task_type == "MULTI_SHOT_MANUAL":
        texts = request.shot_texts()
        found = [(f"shot {i + 1} " if len(texts) > 1 else "", w) for i, w in lint_shots(texts)]
    else:
        found = [("", w) for w in lint_prompt(request.text or "", task_type=request.task_type, duration_s=request.duration_s)]
    return [f"{where}{w}" for where, w in found if errors or w.severity != "error"]


def _default_duration(model: str) -> int:
    """6 s, Nova Reel's length, unless the model's shots are shorter (Wan 2.1: 5 s)."""
    from .models import get_model

    try:
        allowed = get_model(model).limits.text_video_durations
    except ReelforgeError:
        return 6  # an unknown id is reported by the request check, with the known ones
    return 6 if allowed is None or 6 in allowed else max(d for d in allowed if d <= 6)


def _submit_and_follow(request, model, output, token, endpoint, no_wait, as_json) -> None:
    """The pre-flight lint, then submit, then follow the job with a progress bar (or return at once)."""
    for line in lint_request(request, errors=False):
        click.echo(f"lint: {line}", err=True)
    client = _client(endpoint)
    if not endpoint and no_wait:
        client._backend.workers = 0  # the background worker runs it, so this process can exit
    job = client.start(request, model=model, output=output, client_token=token)
    note = _engine_note(model) if not endpoint else None
    if note:
        click.echo(note, err=True)
    if no_wait:
        click.echo(job.id)
        click.echo(f"follow it with: reelforge jobs show {job.id}", err=True)
        return
    _follow(job)
    if as_json:
        click.echo(json.dumps(_job_dict(job.record), indent=2))
    else:
        path = job.video_path
        click.echo(str(path) if path else job.output_uri + "/output.mp4")


def _follow(job, timeout: float | None = None) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .errors import JobFailedError

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, transient=True, console=_stderr_console()) as bar:
        task = bar.add_task(f"job {job.id}", total=1.0)

        def update(rec: JobRecord) -> None:
            bar.update(task, completed=rec.progress, description=f"job {rec.id} {rec.stage}")

        try:
            job.wait(timeout, on_progress=update)
        except JobFailedError as exc:
            where = "the server's log" if job.client.endpoint else config.log_path()
            raise CLIError(f"{exc} (details: {where})") from None
        except KeyboardInterrupt:
            bar.stop()
            _hand_off(job)


def _hand_off(job) -> None:
    """Ctrl-C while following: stop watching, but let the job finish (cancel is a separate, explicit step)."""
    if job.client.endpoint is None:
        backend = job.client._backend
        backend.runtime.release()  # units this process was running go back to the queue at once
        backend.ensure_worker()
        where = "in the background worker"
    else:
        where = "on the server"
    click.echo(
        f"stopped watching; job {job.id} goes on {where}: reelforge jobs show {job.id} "
        f"(to stop it: reelforge jobs cancel {job.id})",
        err=True,
    )
    raise click.exceptions.Exit(130)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _job_dict(rec: JobRecord) -> dict:
    from .client import iso

    return {
        "id": rec.id,
        "arn": rec.arn,
        "status": rec.status.value,
        "progress": round(rec.progress, 3),
        "stage": rec.stage,
        "model": rec.model_id,
        "submitted": iso(rec.submit_time),
        "started": iso(rec.start_time),
        "ended": iso(rec.end_time),
        "output": rec.output_uri,
        "failure": rec.failure_message,
        "attempts": rec.attempts,
        "request": rec.model_input,
        "metadata": rec.metadata,
    }


@cli.group()
def jobs() -> None:
    """List, inspect, cancel and download jobs."""


@jobs.command("list")
@click.option("--status", type=click.Choice([s.value for s in JobStatus], case_sensitive=False))
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--endpoint", envvar="REELFORGE_ENDPOINT")
@click.option("--json", "as_json", is_flag=True)
def jobs_list(status, limit, endpoint, as_json):
    """Recent jobs, newest first."""
    from .client import iso

    found = _client(endpoint).jobs(status=status, limit=limit)
    if as_json:
        click.echo(json.dumps([_job_dict(j.record) for j in found], indent=2))
        return
    if not found:
        click.echo("no jobs yet: reelforge generate \"a prompt\"", err=True)
        return
    import shutil

    width = shutil.get_terminal_size((100, 24)).columns
    click.echo(f"{'id':<12}  {'status':<9} {'done':>4}  {'submitted UTC':<11}  {'model':<21}  prompt")
    for j in found:
        rec = j._cached or j.record
        submitted = iso(rec.submit_time)[5:16].replace("T", " ")
        line = f"{rec.id:<12}  {rec.status.value:<9} {rec.progress:>4.0%}  {submitted:<11}  {rec.model_id:<21}  {' | '.join(_texts(rec))}"
        click.echo(line if len(line) <= width else line[: width - 1] + "…")


def _texts(rec: JobRecord) -> list[str]:
    from .request import VideoRequest

    try:
        return VideoRequest.from_model_input(rec.model_input).shot_texts()
    except ReelforgeError:
        return []


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _console():
    from rich.console import Console

    return Console()


@jobs.command("show")
@click.argument("job_id")
@click.option("--endpoint", envvar="REELFORGE_ENDPOINT")
def jobs_show(job_id, endpoint):
    """Everything about one job, as JSON."""
    click.echo(json.dumps(_job_dict(_client(endpoint).get(job_id).record), indent=2))


@jobs.command("wait")
@click.argument("job_id")
@click.option("--timeout", type=click.FloatRange(min=0), metavar="SECONDS", help="Give up waiting after this long (the job keeps running) [default: wait until it ends].")
@click.option("--endpoint", envvar="REELFORGE_ENDPOINT")
@click.option("--json", "as_json", is_flag=True, help="Print the finished job as JSON instead of its video's path.")
def jobs_wait(job_id, timeout, endpoint, as_json):
    """Wait for a job to end, with a progress bar; exit 0 when it completed, 1 when it failed or was canceled."""
    job = _client(endpoint).get(job_id)
    _follow(job, timeout)
    if as_json:
        click.echo(json.dumps(_job_dict(job.record), indent=2))
    else:
        path = job.video_path
        click.echo(str(path) if path else job.output_uri + "/output.mp4")


@jobs.command("cancel")
@click.argument("job_id")
@click.option("--endpoint", envvar="REELFORGE_ENDPOINT")
def jobs_cancel(job_id, endpoint):
    """Cancel a queued or running job."""
    job = _client(endpoint).get(job_id)
    before = job.status
    if before.done:
        click.echo(f"job {job.id} already ended {before.value}; nothing to cancel")
        return
    after = job.cancel().status
    if after is JobStatus.CANCELED:
        click.echo(f"job {job.id} canceled")
    else:
        click.echo(f"job {job.id} is {after.value.lower()}: asked to stop, it ends CANCELED at its next frame")


@jobs.command("download")
@click.argument("job_id")
@click.option("-o", "--output", default=".", show_default=True, help="Folder or file name.")
@click.option("--shots", is_flag=True, help="Also download shot_0001.mp4... of a multi-shot job.")
@click.option("--endpoint", envvar="REELFORGE_ENDPOINT")
def jobs_download(job_id, output, shots, endpoint):
    """Save a finished job's video."""
    click.echo(str(_client(endpoint).get(job_id).download(output, shots=shots)))


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def models(as_json):
    """Model ids and the engine behind each."""
    from rich.table import Table

    from .models import all_models, engine_for

    rows = []
    for spec in all_models():
        engine_id, _ = engine_for(spec)
        lim = spec.limits
        sizes = ", ".join(f"{w}x{h}" for w, h in lim.sizes) if lim.sizes else f"even, up to {lim.max_side}"
        fps = ",".join(map(str, lim.fps))
        rows.append(dict(model=spec.model_id, engine=engine_id, sizes=sizes, fps=fps, about=spec.summary))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['model']}  ({r['engine']} engine; {r['sizes']}; fps {r['fps']})")
        click.echo(f"    {r['about']}")


@cli.command()
@click.option("--until-idle", is_flag=True, help="Exit as soon as no job is queued.")
@click.option("--idle-exit", type=click.FloatRange(min=0), metavar="SECONDS", help="Exit once no job has been queued for this long [default: run until stopped].")
@click.option("--background", is_flag=True, help="Run as the data dir's background worker, the one Client.start starts: at most one runs; it exits REELFORGE_WORKER_IDLE_S seconds (default 120) after the queue empties.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True, help="Units of work run at once by this process.")
def worker(until_idle, idle_exit, background, threads):
    """Run queued jobs from the job log. Ctrl-C or SIGTERM puts running jobs back in the queue at once."""
    import signal

    from .background import SINGLETON, FileLock
    from .client import embedded_runtime

    runtime = embedded_runtime()
    if background:
        singleton = FileLock(runtime.folder / SINGLETON, shared=False) if runtime.folder is not None else None
        if singleton is None or not singleton.acquire():
            return  # another background worker has this data dir (the lock stays held until we exit)
        singleton.write_pid()
        idle_exit = runtime.timings.idle_exit_s
    if until_idle:
        idle_exit = 0.0

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    if not background:
        more = "" if idle_exit is None else f"; exits after {idle_exit:g} s with nothing queued"
        click.echo(f"worker {runtime.worker_id} running {threads} thread(s){more}; Ctrl-C stops", err=True)
    try:
        if threads > 1:
            runtime.start_workers(threads - 1)
        runtime.run(idle_exit)
        runtime.stop(timeout=None)  # idle: let the other threads end the units they hold
    except KeyboardInterrupt:
        released = runtime.release()
        runtime.stop(timeout=5)
        if not background:
            click.echo(f"worker stopped; {len(released)} running job unit(s) went back to the queue", err=True)


@cli.command()
@click.argument("prompt")
@click.option("--task-type", type=click.Choice(["TEXT_VIDEO", "MULTI_SHOT_AUTOMATED", "MULTI_SHOT_MANUAL"]), default="TEXT_VIDEO")
@click.option("--duration", type=int)
def lint(prompt, task_type, duration):
    """Check a prompt against Nova Reel's prompting rules."""
    from .prompts import lint_prompt

    warnings = lint_prompt(prompt, task_type=task_type, duration_s=duration)
    for w in warnings:
        click.echo(str(w))
    if not warnings:
        click.echo("no warnings")
    if any(w.severity == "error" for w in warnings):
        sys.exit(1)


def main() -> None:
    cli(prog_name="reelforge")


# Commands kept in modules of their own; they import helpers from this one, so they come last.
from .cli_batch import batch, shots  # noqa: E402
from .cli_serve import serve  # noqa: E402

for _command in (shots, batch, serve):
    cli.add_command(_command)

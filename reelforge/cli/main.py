"""The `reelforge` command. The only module that talks to the terminal."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from reelforge import config
from reelforge.errors import ReelforgeError
from reelforge.jobs.record import JobRecord, JobStatus

log = logging.getLogger("reelforge.cli")


class CLIError(click.ClickException):
    """One readable line on stderr and exit status 1."""


def _setup_logging() -> None:
    """Tracebacks and job history go to the log file, never to the terminal.

    The only place reelforge configures logging (the package itself has a NullHandler); a
    process that runs several commands (tests, embedding) gets the log of the current data dir.
    """
    path = os.path.abspath(config.log_path())
    root = logging.getLogger("reelforge")
    for old in [h for h in root.handlers if getattr(h, "reelforge_cli", False)]:
        if old.baseFilename == path:
            return
        root.removeHandler(old)
        old.close()
    handler = _LogFile(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


class _LogFile(logging.FileHandler):
    """The log file, made on its first record (a command that logs nothing leaves no folder behind)."""

    reelforge_cli = True

    def __init__(self, path: str):
        super().__init__(path, delay=True)

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    # An unusable data dir or a full disk is reported by the command itself, never by a logging traceback.
    def emit(self, record) -> None:
        try:
            super().emit(record)
        except OSError:
            pass

    def handleError(self, record) -> None:
        pass


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return self._invoke(ctx)
        except click.ClickException as exc:  # the line the user reads is kept in the log too
            log.error("reelforge %s: %s", ctx.invoked_subcommand or "", exc.format_message())
            raise

    def _invoke(self, ctx):
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


ENDPOINT_HELP = (
    "URL of a reelforge server (or 'bedrock' for Amazon Bedrock itself) to send the command to "
    "[default: run here, with this machine's job log; env REELFORGE_ENDPOINT]."
)
OUTPUT_HELP = "Output folder or s3://bucket/prefix [default: the data dir's outputs; with --endpoint, the server's default output]."
TOKEN_HELP = "Client request token: the same token never starts a second job [default: none, every run starts a job]."


def endpoint_option(command):
    """--endpoint, worded the same on every command that takes it."""
    return click.option("--endpoint", envvar="REELFORGE_ENDPOINT", metavar="URL", help=ENDPOINT_HELP)(command)


def _client(endpoint: str | None):
    from reelforge.client.client import Client

    return Client(endpoint) if endpoint else Client()


def _engine_note(model: str) -> str | None:
    """A note when a Nova Reel id, which asks for a generative model, is served here by one that is not.

    Nothing is said when the model id was picked for its engine (reelforge.animatic-v1): the user chose it.
    """
    from reelforge.engines import get_engine_class
    from reelforge.engines.catalog import engine_for, get_model

    spec = get_model(model)
    engine_id, _ = engine_for(spec)
    engine = get_engine_class(engine_id)
    if engine.generative or not spec.bedrock_id:
        return None
    what = f"the {engine_id} engine" + (f", a {engine.summary}" if engine.summary else ", which is not a generative model")
    return (
        f"Note: {model} is rendered here by {what}. For generated video set REELFORGE_NOVA_BACKEND or use "
        "--model reelforge.ltx-video (pip install 'reelforge[diffusers]'); `reelforge models` lists them."
    )


@cli.command()
@click.argument("prompt")
@click.option("--image", type=click.Path(dir_okay=False), help="Starting image (PNG or JPEG), the video's first frame [default: none].")
@click.option("--fit", type=click.Choice(["crop", "pad"]), help="Bring an image of another size to the video size: crop fills, pad adds bars [default: none, a wrong size is refused].")
@click.option("--seed", type=int, help="Seed (0-2147483646); same prompt and seed, same video [default: 42, Nova Reel's].")
@click.option("--duration", "duration", type=int, help="Seconds [default: 6, or the model's longest shot if shorter].")
@click.option("--fps", type=int, default=24, show_default=True, help="Frames per second (`reelforge models` lists each model's).")
@click.option("--resolution", default="1280x720", show_default=True, help="WIDTHxHEIGHT.")
@click.option("--model", default=config.DEFAULT_MODEL, show_default=True, help="Model id (`reelforge models`).")
@click.option("-o", "--output", help=OUTPUT_HELP)
@click.option("--token", help=TOKEN_HELP)
@endpoint_option
@click.option("--no-wait", is_flag=True, help="Print the job id and return; the job runs on.")
@click.option("--json", "as_json", is_flag=True, help="Print the finished job as JSON.")
@click.option("--dry-run", is_flag=True, help="Check the request and estimate cost and time; submit nothing.")
@click.option("--webhook", metavar="URL|NAME", help="Notify this URL of the job's events, signed with REELFORGE_WEBHOOK_SECRET (docs/webhooks.md); with --endpoint, the name of an endpoint the server registered [default: none].")
@click.option("--webhook-events", metavar="EVENTS", help="What --webhook hears, comma-separated: job.started, job.completed, job.failed, job.canceled, job.progress [default: all but job.progress].")
@click.option("--no-audio", is_flag=True, help="A silent video, even from a model that makes sound [default: keep the model's sound].")
def generate(prompt, image, fit, seed, duration, fps, resolution, model, output, token, endpoint, no_wait, as_json, dry_run, webhook, webhook_events, no_audio):
    """Make a video from PROMPT (the text of the video) and print where it is."""
    from reelforge.request.model import ImageInput, VideoRequest, parse_dimension

    width, height = parse_dimension(resolution, "--resolution")
    if duration is None:
        duration = _default_duration(model)
    fields = dict(text=prompt, duration_s=duration, fps=fps, width=width, height=height, seed=seed, fit=fit)
    if image:
        fields["image"] = ImageInput.from_source(Path(image), "--image")
    request = VideoRequest(**fields)
    if dry_run:
        from reelforge.cli.batch import print_estimate

        return print_estimate([(model, request)], endpoint, as_json)
    _submit_and_follow(request, model, output, token, endpoint, no_wait, as_json, webhook=webhook, webhook_events=webhook_events, audio=not no_audio)


def lint_request(request, *, errors: bool = True) -> list[str]:
    """Lint warnings for a request, by its task type, as lines to print.

    ``errors=False`` leaves out what the request check itself refuses (length), so a bad
    prompt gives one line, not two.
    """
    from reelforge.request.prompts import lint_prompt, lint_shots

    if request.task_type == "MULTI_SHOT_MANUAL":
        texts = request.shot_texts()
        found = [(f"shot {i + 1} " if len(texts) > 1 else "", w) for i, w in lint_shots(texts)]
    else:
        found = [("", w) for w in lint_prompt(request.text or "", task_type=request.task_type, duration_s=request.duration_s)]
    return [f"{where}{w}" for where, w in found if errors or w.severity != "error"]


def _default_duration(model: str) -> int:
    """6 s, Nova Reel's length, unless the model's shots are shorter (Wan 2.1: 5 s)."""
    from reelforge.engines.catalog import get_model

    try:
        allowed = get_model(model).limits.text_video_durations
    except ReelforgeError:
        return 6  # an unknown id is reported by the request check, with the known ones
    return 6 if allowed is None or 6 in allowed else max(d for d in allowed if d <= 6)


def _submit_and_follow(request, model, output, token, endpoint, no_wait, as_json, webhook=None, webhook_events=None, audio: bool = True) -> None:
    """The pre-flight lint, then submit, then follow the job with a progress bar (or return at once)."""
    for line in lint_request(request, errors=False):
        click.echo(f"lint: {line}", err=True)
    client = _client(endpoint)
    if not endpoint and no_wait:
        client._backend.workers = 0  # the background worker runs it, so this process can exit
    job = client.start(request, model=model, output=output, client_token=token, webhook=webhook, webhook_events=webhook_events, audio=audio)
    from reelforge.server.gallery.views import job_warnings

    for line in job_warnings(job.record):
        click.echo(f"warning: {line}", err=True)
    note = _engine_note(model) if not endpoint else None  # a server decides its own engines
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

    from reelforge.errors import JobFailedError

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
    from reelforge.client.client import iso

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
        "audio": rec.metadata.get("audio"),  # the video's sound track (codec, sampleRate, channels), null when silent
        "keepAudio": rec.audio,  # false: asked for a silent video (--no-audio)
        "request": rec.model_input,
        "metadata": rec.metadata,
    }


@cli.group()
def jobs() -> None:
    """List, inspect, cancel, download and prune jobs."""


@jobs.command("list")
@click.option("--status", type=click.Choice([s.value for s in JobStatus], case_sensitive=False), help="Only jobs with this status [default: any].")
@click.option("--model", metavar="MODEL_ID", help="Only jobs of this model id [default: any].")
@click.option("-q", "--q", "--search", "q", metavar="TEXT", help="Only jobs whose prompt or shot texts contain TEXT, case-blind (3 characters or more) [default: all].")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="Jobs per page.")
@click.option("--after", "--page", "after", metavar="TOKEN", help="Show the page after the one that printed TOKEN [default: the newest jobs].")
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print the page's jobs as a JSON list.")
def jobs_list(status, model, q, limit, after, endpoint, as_json):
    """Jobs, newest first, a page at a time (the line after the list says how to get the next one)."""
    from reelforge.client.client import iso

    status = status.upper() if status else None
    page = _client(endpoint).jobs(status=status, model=model, q=q, limit=limit, after=after)
    if not page:
        if as_json:
            click.echo("[]")
        if after:
            click.echo("no more jobs", err=True)
        elif status or model or q:
            of = (f" of {model}" if model else "") + (f" matching {q!r}" if q else "")
            click.echo(f"no {status + ' ' if status else ''}jobs{of}", err=True)
        else:
            click.echo("no jobs yet: reelforge generate \"a prompt\"", err=True)
        return
    if as_json:
        click.echo(json.dumps([_job_dict(j.record) for j in page], indent=2))
    else:
        import shutil

        width = shutil.get_terminal_size((100, 24)).columns
        click.echo(f"{'id':<12}  {'status':<9} {'done':>4}  {'submitted UTC':<11}  {'model':<21}  prompt")
        for j in page:
            rec = j._cached or j.record
            submitted = iso(rec.submit_time)[5:16].replace("T", " ")
            line = f"{rec.id:<12}  {rec.status.value:<9} {rec.progress:>4.0%}  {submitted:<11}  {rec.model_id:<21}  {' | '.join(j.prompts)}"
            click.echo(line if len(line) <= width else line[: width - 1] + "…")
    click.echo(_page_line(page, click.get_current_context()), err=True)


def _page_line(page, ctx) -> str:
    """'showing 20 of 33 jobs; next page: reelforge jobs list --after TOKEN ...' (the same filters again)."""
    import shlex

    span = f"{page.offset + 1}-{page.offset + len(page)}" if page.offset else str(len(page))
    of = "" if page.total is None else f" of {page.total}{'+' if page.total_is_lower_bound else ''}"
    line = f"showing {span}{of} job{'s' if (page.total or len(page)) != 1 else ''}"
    if page.next_token is None:
        return line
    words = ["reelforge", "jobs", "list", "--after", page.next_token]
    for name in ("status", "model", "q", "limit", "endpoint"):
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            words += [f"--{name}", str(ctx.params[name])]
    if ctx.params.get("as_json"):
        words.append("--json")
    return f"{line}; next page: {shlex.join(words)}"


def _console():
    from rich.console import Console

    return Console()


@jobs.command("show")
@click.argument("job_id")
@endpoint_option
def jobs_show(job_id, endpoint):
    """Everything about the job JOB_ID (its id or ARN), as JSON."""
    job = _client(endpoint).get(job_id)
    click.echo(json.dumps({**_job_dict(job.record), "webhooks": job.webhooks}, indent=2))


@jobs.command("wait")
@click.argument("job_id")
@click.option("--timeout", type=click.FloatRange(min=0), metavar="SECONDS", help="Give up waiting after this long (the job keeps running) [default: wait until it ends].")
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print the finished job as JSON instead of its video's path.")
def jobs_wait(job_id, timeout, endpoint, as_json):
    """Wait for the job JOB_ID (its id or ARN) to end, with a progress bar; exit 0 when it completed, 1 when it failed or was canceled."""
    job = _client(endpoint).get(job_id)
    _follow(job, timeout)
    if as_json:
        click.echo(json.dumps(_job_dict(job.record), indent=2))
    else:
        path = job.video_path
        click.echo(str(path) if path else job.output_uri + "/output.mp4")


@jobs.command("cancel")
@click.argument("job_id")
@endpoint_option
def jobs_cancel(job_id, endpoint):
    """Cancel the queued or running job JOB_ID (its id or ARN)."""
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


@jobs.command("prune")
@click.option("--older-than", "older_than", required=True, metavar="DURATION", help="Prune jobs that ended at least this long ago: a whole number and s, m, h, d or w (12h, 30d, 2w) [required: no default, nothing is pruned without it].")
@click.option("--dry-run", is_flag=True, help="List the ids that would be pruned; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print {ids, failed} as JSON.")
def jobs_prune(older_than, dry_run, as_json):
    """Remove the records and files of ended jobs (COMPLETED, FAILED, CANCELED) older than --older-than.

    Queued and running jobs are never touched. Each pruned job leaves a tombstone (id, client token,
    request fingerprint, final status), so a repeated token or batch line never starts it again.
    Works on this machine's job log (the data dir's, or REELFORGE_DATABASE_URL); ids go to stdout.
    """
    from reelforge.jobs.open import open_store
    from reelforge.jobs.retention import parse_duration, prune

    try:
        age = parse_duration(older_than, "--older-than")
    except ValueError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1], param_hint="--older-than") from None
    report = prune(open_store(config.job_store_location()), age, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "ids": report.ids, "failed": report.failed}))
    else:
        for job_id in report.ids:
            click.echo(job_id)
        verb = "would prune" if dry_run else "pruned"
        click.echo(f"{verb} {len(report.ids)} job(s) that ended over {older_than} ago", err=True)
        for job_id, why in report.failed.items():
            click.echo(f"job {job_id}: files not removed yet ({why}); run prune again", err=True)
    if report.failed:
        raise SystemExit(1)


@jobs.command("download")
@click.argument("job_id")
@click.option("-o", "--output", default=".", show_default=True, help="Folder (saved as JOB_ID.mp4) or file name.")
@click.option("--shots", is_flag=True, help="Also download each shot of a multi-shot job, as JOB_ID_shot_0001.mp4...")
@endpoint_option
def jobs_download(job_id, output, shots, endpoint):
    """Save the video of the finished job JOB_ID (its id or ARN)."""
    click.echo(str(_client(endpoint).get(job_id).download(output, shots=shots)))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def models(as_json):
    """Model ids, the engine behind each, and what each still needs to run here (an extra, weights).

    Forwarded ids (--forward / REELFORGE_FORWARD) show where they go; Bedrock ids show their lifecycle
    (documented dates, or the live reading for a forwarded id, read with AWS credentials).
    """
    from reelforge.engines import get_engine_class
    from reelforge.engines.forward import Forwards
    from reelforge.jobs.lifecycle import DOCUMENTED, LifecycleReader
    from reelforge.engines.catalog import add_forwarded, all_models, engine_for

    forwards = Forwards.from_env()
    for f in forwards.entries.values():
        add_forwarded(f.model_id, f.kind)
    reader = LifecycleReader() if forwards else None
    rows = []
    for spec in all_models():
        forward = forwards.get(spec.model_id)
        engine_id, options = (forward.kind, {}) if forward else engine_for(spec)
        try:  # looks for packages and files; loads nothing
            get_engine_class(engine_id).check_available(options)
            missing = None
        except ReelforgeError as exc:
            missing = str(exc)
        lim = spec.limits
        sizes = lim.allowed_sizes_text()
        fps = ",".join(map(str, lim.fps))
        row = dict(model=spec.model_id, engine=engine_id, sizes=sizes, fps=fps, about=spec.summary, ready=missing is None, needs=missing)
        if forward:
            row["forward"] = {"url": forward.url, "upstreamModel": forward.upstream_model, "concurrency": forward.concurrency}
        found = reader.read(forward) if forward and forward.kind == "bedrock" else None
        found = found or DOCUMENTED.get(spec.model_id)
        if found:
            row["lifecycle"] = {"state": found.state(), "status": found.status, "endOfLife": found.end_of_life,
                                "source": found.source, "text": found.describe(), "servedHere": forward is None}
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['model']}  ({r['engine']} engine; {r['sizes']}; fps {r['fps']})")
        click.echo(f"    {r['about']}")
        if r.get("forward"):
            click.echo(f"    forwarded to {r['forward']['url']} as {r['forward']['upstreamModel']} (up to {r['forward']['concurrency']} at once)")
        if r.get("lifecycle"):
            life = r["lifecycle"]
            here = "; served here by a local model, which has no end of life" if life["servedHere"] and life["state"] != "active" else ""
            click.echo(f"    {'warning: ' if life['state'] != 'active' else ''}on Amazon Bedrock: {life['text']}{here}")
        if r["needs"]:
            click.echo(f"    not ready here: {r['needs']}")


@cli.command()
@click.option("--until-idle", is_flag=True, help="Exit as soon as no job is queued.")
@click.option("--idle-exit", type=click.FloatRange(min=0), metavar="SECONDS", help="Exit once no job has been queued for this long [default: run until stopped].")
@click.option("--background", is_flag=True, help="Run as the data dir's background worker, the one Client.start starts: at most one runs; it exits REELFORGE_WORKER_IDLE_S seconds (default 120) after the queue empties.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True, help="Units of work run at once by this process.")
@click.option("--forward", "forwards", multiple=True, metavar="ENTRY", help="Credentials and limits for forwarded model ids (same form as serve --forward); where a job goes was fixed when it was recorded [default: REELFORGE_FORWARD's entries].")
@click.option("--gpus", metavar="DEVICES", help="Run one worker process per GPU, each with CUDA_VISIBLE_DEVICES set to its device (torch sees it as cuda:0) and the other options: 'all' (every GPU torch sees) or a list such as 0,1 or GPU-UUIDs; indexes count within this process's CUDA_VISIBLE_DEVICES when it is set. A worker that exits is reported, not restarted [default: one worker, on the GPUs this process sees].")
def worker(until_idle, idle_exit, background, threads, forwards, gpus):
    """Run queued jobs from the job log. Ctrl-C or SIGTERM puts running jobs back in the queue at once.

    Each worker keeps the models it has loaded and prefers jobs for them; a new job whose model an
    idle worker holds is left to that worker for REELFORGE_AFFINITY_S (10 s). See docs/scale-out.md.
    """
    import signal

    from reelforge.jobs.background import SINGLETON, FileLock
    from reelforge.cli.serve import parse_forwards
    from reelforge.client.client import embedded_runtime
    from reelforge.engines.forward import ENV

    if gpus is not None:
        _gpu_workers(gpus, until_idle=until_idle, idle_exit=idle_exit, background=background, threads=threads, forwards=forwards)
        return
    if forwards:
        os.environ[ENV] = " ".join(f.entry for f in parse_forwards(forwards).entries.values())
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
        device = f" on GPU {config.gpu()}" if config.gpu() else ""
        click.echo(f"worker {runtime.worker_id} running {threads} thread(s){device}{more}; Ctrl-C stops", err=True)
    try:
        if threads > 1:
            runtime.start_workers(threads - 1)
        runtime.run(idle_exit)
        runtime.stop(timeout=None)  # idle: let the other threads end the units they hold
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the release short
            signal.signal(sig, signal.SIG_IGN)
        released = runtime.release()
        runtime.stop(timeout=5)
        if not background:
            click.echo(f"worker stopped; {len(released)} running job unit(s) went back to the queue", err=True)


def _gpu_workers(value: str, *, until_idle, idle_exit, background, threads, forwards) -> None:
    """``worker --gpus``: start one worker per device, watch them, exit 1 when one failed (gpus.py)."""
    from reelforge.cli import gpus

    if background:
        raise CLIError("--gpus cannot be used with --background (the data dir's one background worker); run reelforge worker --gpus yourself")
    devices = gpus.parse_gpus(value, os.environ.get("CUDA_VISIBLE_DEVICES"))
    args = ["--threads", str(threads)] + ["--until-idle"] * until_idle + (["--idle-exit", str(idle_exit)] if idle_exit is not None else [])
    args += [a for f in forwards for a in ("--forward", f)]
    children = gpus.start(devices, args)
    started = ", ".join(c.describe() for c in children)
    log.info("reelforge worker --gpus: %s", started)
    click.echo(f"{len(children)} worker(s), one per GPU: {started}; Ctrl-C or SIGTERM stops them all", err=True)
    code = gpus.supervise(children, lambda line: click.echo(line, err=True))
    if code:
        click.get_current_context().exit(code)


@cli.command()
@click.argument("prompt")
@click.option("--task-type", type=click.Choice(["TEXT_VIDEO", "MULTI_SHOT_AUTOMATED", "MULTI_SHOT_MANUAL"]), default="TEXT_VIDEO",
              show_default=True, help="The request the prompt is for; a long MULTI_SHOT_AUTOMATED prompt has rules of its own.")
@click.option("--duration", type=int, help="Seconds of a MULTI_SHOT_AUTOMATED video [default: none given].")
@click.option("--model", default=config.DEFAULT_MODEL, show_default=True,
              help="The model the prompt is for; on the previz (reelforge.animatic-v2) it also says what the previz will show.")
def lint(prompt, task_type, duration, model):
    """Check PROMPT against Nova Reel's prompting rules; exit 1 on an error."""
    from reelforge.request.prompts import lint_prompt
    from reelforge.workflows.lint import previz_notes

    warnings = lint_prompt(prompt, task_type=task_type, duration_s=duration)
    for w in warnings:
        click.echo(str(w))
    if not warnings:
        click.echo("no warnings")
    for line in previz_notes(model, [prompt]):
        click.echo(line)
    if any(w.severity == "error" for w in warnings):
        sys.exit(1)


@cli.group()
def webhooks() -> None:
    """Signed webhook notifications (docs/webhooks.md)."""


@webhooks.command("retry")
@click.argument("ref", metavar="DELIVERY_ID|JOB_ID")
def webhooks_retry(ref):
    """Send DELIVERY_ID|JOB_ID again now: one delivery (msg_..., whatever its state), or every failed
    delivery of a job; same webhook-id, same body. A running serve or worker on this job log sends them."""
    from reelforge.client.client import embedded_runtime
    from reelforge.errors import JobNotFoundError

    runtime = embedded_runtime()
    ids = runtime.store.retry_deliveries(ref)
    if not ids:
        if not ref.startswith("msg_"):
            runtime.get(ref)  # JobNotFoundError for no such job
            click.echo(f"job {ref} has no failed deliveries", err=True)
            return
        if runtime.store.delivery(ref) is None:
            raise JobNotFoundError(ref)
    for delivery_id in ids:
        click.echo(delivery_id)
    click.echo(f"{len(ids)} deliver{'y' if len(ids) == 1 else 'ies'} due now; a running serve or worker sends them", err=True)


@webhooks.command("secret")
def webhooks_secret():
    """Print a new signing secret (whsec_ and 32 random bytes) for --webhook-secret / REELFORGE_WEBHOOK_SECRET."""
    from reelforge.jobs.webhooks import new_secret

    click.echo(new_secret())


def main() -> None:
    cli(prog_name="reelforge")


# Commands kept in modules of their own; they import helpers from this one, so they come last.
from reelforge.cli.batch import batch, shots  # noqa: E402
from reelforge.cli.serve import serve  # noqa: E402

for _command in (shots, batch, serve):
    cli.add_command(_command)

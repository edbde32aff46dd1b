"""Submitting one job and following it with a progress bar (generate, shots, jobs wait); Ctrl-C hands it off."""

from __future__ import annotations

import json

import click

from reelforge import config
from reelforge.cli.common import CLIError, client_for, engine_note, job_dict, lint_request, stderr_console
from reelforge.jobs.record import JobRecord


def submit_and_follow(request, model, output, token, endpoint, no_wait, as_json, webhook=None, webhook_events=None, audio: bool = True) -> None:
    """The pre-flight lint, then submit, then follow the job with a progress bar (or return at once)."""
    for line in lint_request(request, errors=False):
        click.echo(f"lint: {line}", err=True)
    # --no-wait here: the background worker runs it, so this process can exit
    client = client_for(endpoint, workers=0 if no_wait else None)
    job = client.start(request, model=model, output=output, client_token=token, webhook=webhook, webhook_events=webhook_events, audio=audio)
    from reelforge.server.gallery.views import job_warnings

    for line in job_warnings(job.record):
        click.echo(f"warning: {line}", err=True)
    note = engine_note(model) if not endpoint else None  # a server decides its own engines
    if note:
        click.echo(note, err=True)
    if no_wait:
        click.echo(job.id)
        click.echo(f"follow it with: reelforge jobs show {job.id}", err=True)
        return
    follow(job)
    print_finished(job, as_json)


def print_finished(job, as_json: bool) -> None:
    """The ended job as JSON, or where its video is."""
    if as_json:
        click.echo(json.dumps(job_dict(job.record), indent=2))
    else:
        path = job.video_path
        click.echo(str(path) if path else job.output_uri + "/output.mp4")


def follow(job, timeout: float | None = None) -> None:
    """Wait for ``job`` with a progress bar on stderr; a failure becomes a CLIError, Ctrl-C a hand-off."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from reelforge.errors import JobFailedError

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, transient=True, console=stderr_console()) as bar:
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
            hand_off(job)


def hand_off(job) -> None:
    """Ctrl-C while following: stop watching, but let the job finish (cancel is a separate, explicit step)."""
    job.client.backend.hand_off()
    where = "in the background worker" if job.client.endpoint is None else "on the server"
    click.echo(
        f"stopped watching; job {job.id} goes on {where}: reelforge jobs show {job.id} "
        f"(to stop it: reelforge jobs cancel {job.id})",
        err=True,
    )
    raise click.exceptions.Exit(130)

"""`reelforge jobs ...`: list, show, wait for, cancel, prune and download jobs."""

from __future__ import annotations

import json

import click

from reelforge import config
from reelforge.cli.common import client_for, endpoint_option, job_dict
from reelforge.cli.follow import follow, print_finished
from reelforge.jobs.record import JobStatus


@click.group()
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
    page = client_for(endpoint).jobs(status=status, model=model, q=q, limit=limit, after=after)
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
        click.echo(json.dumps([job_dict(j.record) for j in page], indent=2))
    else:
        import shutil

        width = shutil.get_terminal_size((100, 24)).columns
        click.echo(f"{'id':<12}  {'status':<9} {'done':>4}  {'submitted UTC':<11}  {'model':<21}  prompt")
        for j in page:
            rec = j.last_record
            submitted = iso(rec.submit_time)[5:16].replace("T", " ")
            line = f"{rec.id:<12}  {rec.status.value:<9} {rec.progress:>4.0%}  {submitted:<11}  {rec.model_id:<21}  {' | '.join(j.prompts)}"
            click.echo(line if len(line) <= width else line[: width - 1] + "…")
    click.echo(page_line(page, click.get_current_context()), err=True)


def page_line(page, ctx) -> str:
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


@jobs.command("show")
@click.argument("job_id")
@endpoint_option
def jobs_show(job_id, endpoint):
    """Everything about the job JOB_ID (its id or ARN), as JSON."""
    job = client_for(endpoint).get(job_id)
    click.echo(json.dumps({**job_dict(job.record), "webhooks": job.webhooks}, indent=2))


@jobs.command("wait")
@click.argument("job_id")
@click.option("--timeout", type=click.FloatRange(min=0), metavar="SECONDS", help="Give up waiting after this long (the job keeps running) [default: wait until it ends].")
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print the finished job as JSON instead of its video's path.")
def jobs_wait(job_id, timeout, endpoint, as_json):
    """Wait for the job JOB_ID (its id or ARN) to end, with a progress bar; exit 0 when it completed, 1 when it failed or was canceled."""
    job = client_for(endpoint).get(job_id)
    follow(job, timeout)
    print_finished(job, as_json)


@jobs.command("cancel")
@click.argument("job_id")
@endpoint_option
def jobs_cancel(job_id, endpoint):
    """Cancel the queued or running job JOB_ID (its id or ARN)."""
    job = client_for(endpoint).get(job_id)
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
    click.echo(str(client_for(endpoint).get(job_id).download(output, shots=shots)))

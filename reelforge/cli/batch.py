"""`reelforge shots FILE`, `reelforge batch FILE` and the dry-run estimate table (also `generate --dry-run`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from reelforge import config
from reelforge.cli.main import (
    OUTPUT_HELP, TOKEN_HELP, CLIError, _console, _engine_note, _stderr_console, _submit_and_follow, endpoint_option, lint_request,
)
from reelforge.workflows.estimate import (
    BEDROCK_CONCURRENCY_QUOTA,
    Estimate,
    estimate,
    format_duration,
    format_usd,
    is_aws_endpoint,
    makespan_s,
    total,
)


# --- estimates ---------------------------------------------------------------------------------
def _job_log():
    """The job log to learn timings from, only if one exists: a dry run must create nothing."""
    import os

    from reelforge.jobs.open import open_store

    if os.environ.get("REELFORGE_DATABASE_URL"):
        return open_store(config.job_store_location())
    path = config.job_log_path()
    return open_store(path) if path.exists() else None


def print_estimate(requests, endpoint=None, as_json=False, concurrency: int | None = None) -> None:
    """Print a dry-run table for (model id, request) pairs; nothing is submitted or recorded."""
    store = None if endpoint else _job_log()
    rows: list[Estimate] = []
    per_job: dict[str, list[float | None]] = {}
    for model_id, request in requests:
        for r in estimate(request, model_id, endpoint=endpoint, store=store):
            rows.append(r)
            per_job.setdefault(r.where, []).append(r.time_s)
    summed = total(rows)
    walls = {}
    if concurrency:
        for where, times in per_job.items():
            walls[where] = None if any(t is None for t in times) else makespan_s(times, concurrency)
    if as_json:
        doc = {"dry_run": True, "submitted": 0, "estimates": [r.to_dict() for r in summed]}
        if concurrency:
            doc.update(concurrency=concurrency, wall_time_s=walls)
        click.echo(json.dumps(doc, indent=2))
        return
    from rich.table import Table

    table = Table(box=None, title="Estimate (dry run)")
    for name in ("model", "where", "jobs", "video", "time", "cost (USD)"):
        table.add_column(name, no_wrap=True, justify="left" if name in ("model", "where") else "right")
    for r in summed:
        table.add_row(r.model_id, r.where, str(r.jobs), f"{r.seconds} s", format_duration(r.time_s), format_usd(r.cost_usd))
    _console().print(table)
    notes = {}
    for r in summed:
        notes.setdefault(f"cost {r.where}: {r.cost_basis}", None)
        notes.setdefault(f"time {r.where}: {r.time_basis}", None)
    for where, wall in walls.items():
        notes.setdefault(f"wall time {where}, {concurrency} at a time: {format_duration(wall)} (ideal)", None)
    for note in notes:
        click.echo(note)
    click.echo("dry run: nothing was submitted")


# --- shots ------------------------------------------------------------------------------------------
@click.command(epilog="File format: docs/storyboards-and-batches.md, or the docstring of reelforge.storyboard.")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", help=f"Model id; wins over the file's 'model:' [default: the file's, else {config.DEFAULT_MODEL}].")
@click.option("-o", "--output", help=OUTPUT_HELP)
@click.option("--token", help=TOKEN_HELP)
@endpoint_option
@click.option("--no-wait", is_flag=True, help="Print the job id and return; the job runs on.")
@click.option("--dry-run", is_flag=True, help="Check the storyboard and estimate cost and time; submit nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the finished job (or the estimate) as JSON.")
def shots(file, model, output, token, endpoint, no_wait, dry_run, as_json):
    """Make one multi-shot video from the storyboard FILE (YAML or JSON) and print where it is."""
    from reelforge.workflows.storyboard import load_storyboard

    board = load_storyboard(file, model=model)
    if dry_run:
        for line in lint_request(board.request):
            click.echo(f"lint: {line}", err=True)
        print_estimate([(board.model_id, board.request)], endpoint, as_json)
        return
    _submit_and_follow(board.request, board.model_id, output, token, endpoint, no_wait, as_json)


# --- batch ------------------------------------------------------------------------------------------
@click.command(epilog="Each line: prompt (required), model, duration, fps, resolution, seed, image, fit. "
               "Format: docs/storyboards-and-batches.md.")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", help=f"Model id for lines without 'model' [default: {config.DEFAULT_MODEL}].")
@click.option("--duration", type=int, help="Seconds, for lines without 'duration' [default: 6].")
@click.option("--fps", type=int, help="Frames per second, for lines without 'fps' [default: 24].")
@click.option("--resolution", help="WIDTHxHEIGHT, for lines without 'resolution' [default: 1280x720].")
@click.option("--seed", type=int, help="Seed, for lines without 'seed' [default: 42, Nova Reel's].")
@click.option("-o", "--output", help=OUTPUT_HELP)
@click.option("-c", "--concurrency", type=click.IntRange(1, 256), help="Jobs in flight at once [default: 4; on Amazon Bedrock the model's default quota].")
@endpoint_option
@click.option("--report", type=click.Path(dir_okay=False), help="Report file, .csv or .json [default: FILE.report.csv, e.g. prompts.jsonl.report.csv].")
@click.option("--retry-failed", type=click.IntRange(0, 10), default=0, show_default=True, help="Resubmit lines whose earlier job failed, up to N times.")
@click.option("--dry-run", is_flag=True, help="Check every line and estimate cost and time; submit nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the results (or the estimate) as JSON.")
def batch(file, model, duration, fps, resolution, seed, output, concurrency, endpoint, report, retry_failed, dry_run, as_json):
    """Make one video per line of FILE (.jsonl or .csv); a rerun resumes where it stopped."""
    from reelforge.workflows.batch import BatchRunner, default_report_path, read_batch, write_report

    defaults = dict(model=model, duration=duration, fps=fps, resolution=resolution, seed=seed)
    items = read_batch(file, defaults=defaults, output=output, endpoint=endpoint, store=None if endpoint else _job_log())
    if concurrency is None:
        concurrency = 4
        if is_aws_endpoint(endpoint):
            concurrency = min(BEDROCK_CONCURRENCY_QUOTA.get(i.model_id, 3) for i in items)
    for item in items:
        for line in lint_request(item.request):
            click.echo(f"lint: line {item.line}: {line}", err=True)
    if dry_run:
        print_estimate([(i.model_id, i.request) for i in items], endpoint, as_json, concurrency)
        return
    from reelforge.client.client import Client

    client = Client(endpoint) if endpoint else Client(workers=concurrency)
    if endpoint:
        client._backend.ping()  # an unreachable server is one error now, not one per line
    report_path = Path(report) if report else default_report_path(file)
    runner = BatchRunner(client, items, concurrency=concurrency, output=output, batch_name=Path(file).name, retry_failed=retry_failed)
    started = time.monotonic()
    try:
        results = _run_with_progress(runner, items, concurrency)
    except KeyboardInterrupt:
        c = runner.counts
        click.echo(f"interrupted after {c.done + c.failed} of {c.total} lines; run the same command again to resume", err=True)
        raise click.exceptions.Exit(130) from None
    wall = time.monotonic() - started
    if not endpoint:  # once per model id, and only for what this run submitted
        submitted = dict.fromkeys(i.model_id for i, r in zip(items, results) if r.run == "submitted")
        for note in filter(None, map(_engine_note, submitted)):
            click.echo(note, err=True)
    write_report(results, report_path)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        _summary(results, runner, wall, report_path)
    bad = [r for r in results if r.status != "COMPLETED"]
    if bad:
        raise CLIError(f"{len(bad)} of {len(results)} lines did not complete (first: line {bad[0].line}: {bad[0].error or bad[0].status}); report: {report_path}")


def _run_with_progress(runner, items, concurrency):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    times = {i.line: i.estimated_time_s for i in items}
    started = time.monotonic()
    columns = (TextColumn("batch"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[counts]}"),
               TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"))
    with Progress(*columns, console=_stderr_console(), transient=True) as bar:
        task = bar.add_task("batch", total=len(items), counts="", eta="…")
        ended: set[int] = set()

        def update(c, result) -> None:
            if result is not None:
                ended.add(result.line)
            fresh = c.done + c.failed - c.skipped  # finished in this run: what the rate is measured on
            left = c.total - c.done - c.failed
            if fresh > 0:
                eta = (time.monotonic() - started) / fresh * left
            else:
                rest = [times[i.line] for i in items if i.line not in ended]
                eta = None if any(t is None for t in rest) else makespan_s(rest, c.limit)
            counts = f"done {c.done} · failed {c.failed} · running {c.running} · queued {c.queued}"
            if c.throttled:
                counts += f" · throttled {c.throttled} (limit {c.limit})"
            bar.update(task, completed=c.done + c.failed, counts=counts, eta=format_duration(eta) if left else "0 s")

        runner.on_update = update
        return runner.run()


def _summary(results, runner, wall, report_path) -> None:
    from rich.table import Table

    by_status: dict[str, list] = {}
    for r in results:
        by_status.setdefault(r.status, []).append(r)
    table = Table("status", "lines", "video", "est. cost (USD)", "this run", box=None, title="Batch summary")
    for status, rows in by_status.items():
        costs = [r.estimated_cost_usd for r in rows]
        cost = None if any(c is None for c in costs) else round(sum(costs), 2)
        runs: dict[str, int] = {}
        for r in rows:
            runs[r.run or "not submitted"] = runs.get(r.run or "not submitted", 0) + 1
        table.add_row(status, str(len(rows)), f"{sum(r.seconds for r in rows)} s", format_usd(cost), ", ".join(f"{n} {k}" for k, n in runs.items()))
    _console().print(table)
    for r in [r for r in results if r.status != "COMPLETED"][:5]:
        click.echo(f"line {r.line}: {r.status}: {r.error or ''}".rstrip(": "), err=True)
    extra = f"; throttled {runner.counts.throttled} times, limit {runner.counts.limit}" if runner.counts.throttled else ""
    click.echo(f"{len(results)} lines in {format_duration(wall)}{extra}; report: {report_path}")

"""The dry-run estimate table of cost and time (`generate --dry-run`, `shots --dry-run`, `batch --dry-run`)."""

from __future__ import annotations

import json
from typing import cast

import click

from reelforge import config
from reelforge.cli.common import console
from reelforge.workflows.estimate import Estimate, estimate, format_duration, format_usd, makespan_s, total


def job_log_if_any():
    """The job log to learn timings from, only if one exists: a dry run must create nothing."""
    import os

    from reelforge.jobs.open import open_store

    if os.environ.get("REELFORGE_DATABASE_URL"):
        return open_store(config.job_store_location())
    path = config.job_log_path()
    return open_store(path) if path.exists() else None


def print_estimate(requests, endpoint=None, as_json=False, concurrency: int | None = None) -> None:
    """Print a dry-run table for (model id, request) pairs; nothing is submitted or recorded."""
    store = None if endpoint else job_log_if_any()
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
            walls[where] = None if any(t is None for t in times) else makespan_s(cast(list[float], times), concurrency)
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
    console().print(table)
    notes: dict[str, None] = {}
    for r in summed:
        notes.setdefault(f"cost {r.where}: {r.cost_basis}", None)
        notes.setdefault(f"time {r.where}: {r.time_basis}", None)
    for where, wall in walls.items():
        notes.setdefault(f"wall time {where}, {concurrency} at a time: {format_duration(wall)} (ideal)", None)
    for note in notes:
        click.echo(note)
    click.echo("dry run: nothing was submitted")

"""Retention: remove the records and files of jobs that ended long enough ago, keeping tombstones.

``reelforge jobs prune --older-than 30d`` runs one round; ``reelforge serve --retain 30d`` (and any
worker started with REELFORGE_RETAIN set) runs one every ``prune_every_s``. Only ended jobs are
pruned (COMPLETED, FAILED, CANCELED, aged by their end time, with no shot unit still stopping);
queued and running jobs never are.

The order, so that a crash anywhere leaves a state the next round finishes and no reader ever
sees half a job (docs/architecture.md, "Retention"):

1. one transaction replaces the job's rows (the job and its shot units) by a tombstone that keeps
   its id, ARN, client token, request fingerprint and final status, and still names its files:
   from this commit on every wire answers "expired", and a repeated token gets the old job back;
2. the job's folder (local or S3) is removed;
3. the tombstone forgets the folder.

A round first finishes the tombstones that still name files (a round cut between 1 and 3), then
prunes what has aged; ``dry_run`` lists exactly those ids and changes nothing.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field

from reelforge.config import env_number
from reelforge.errors import ConfigError, ReelforgeError
from reelforge.jobs.record import JobStore
from reelforge.storage import storage_for

log = logging.getLogger("reelforge.retention")

_DURATION = re.compile(r"([1-9][0-9]{0,8})(s|m|h|d|w)", re.ASCII)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION_FORMS = "a whole number and a unit: s, m, h, d or w (e.g. 90m, 12h, 30d, 2w)"


def parse_duration(text: str, name: str) -> float:
    """Seconds in ``12h``, ``30d``, ``2w``; ValueError naming ``name`` and the allowed forms otherwise."""
    m = _DURATION.fullmatch(str(text).strip().lower())
    if m is None:
        raise ValueError(f"{name}: {str(text)[:40]!r} is not a duration; write {DURATION_FORMS}")
    return float(int(m.group(1)) * _UNIT_S[m.group(2)])


def describe(seconds: float) -> str:
    """``2592000`` as ``30d``: the largest unit that divides it."""
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT_S[unit] == 0:
            return f"{int(seconds // _UNIT_S[unit])}{unit}"
    return f"{int(seconds)}s"


def retain_from_env(environ=None) -> float | None:
    """REELFORGE_RETAIN as seconds (None when unset: nothing is pruned); ConfigError when unusable."""
    raw = (environ if environ is not None else os.environ).get("REELFORGE_RETAIN", "").strip()
    if not raw:
        return None
    try:
        return parse_duration(raw, "REELFORGE_RETAIN")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def prune_every_s(retain_s: float, environ=None) -> float:
    """How often a server prunes: REELFORGE_PRUNE_EVERY_S, else hourly (more often for a retention under 4 h)."""
    return env_number("REELFORGE_PRUNE_EVERY_S", min(3600.0, max(1.0, retain_s / 4)), 0.05)


@dataclass
class PruneReport:
    ids: list[str] = field(default_factory=list)  # pruned (or, in a dry run, to be pruned), in order
    failed: dict[str, str] = field(default_factory=dict)  # id -> why its files could not be removed (a later round retries)


def prune(store: JobStore, older_than_s: float, *, dry_run: bool = False, now: float | None = None) -> PruneReport:
    """One round: finish interrupted prunes, then prune jobs that ended more than ``older_than_s`` ago."""
    cutoff = (time.time() if now is None else now) - older_than_s
    report = PruneReport()
    for unfinished in store.unfinished_prunes():
        report.ids.append(unfinished.id)
        if not dry_run:
            _remove_files(store, unfinished, report)
    after = None
    while True:
        page = store.prunable(cutoff, after=after)
        if not page:
            break
        after = page[-1]
        for _, job_id in page:
            if dry_run:
                report.ids.append(job_id)
                continue
            gone = store.prune(job_id, cutoff)
            if gone is not None:  # None: it changed meanwhile (another pruner took it)
                report.ids.append(gone.id)
                _remove_files(store, gone, report)
    if report.ids and not dry_run:
        store.forget_pruned_search()
        log.info("pruned %d job(s) that ended before %s", len(report.ids), time.strftime("%Y-%m-%d %H:%M", time.gmtime(cutoff)))
    return report


def _remove_files(store: JobStore, gone, report: PruneReport) -> None:
    if gone.storage_uri:
        try:
            storage_for(gone.storage_uri).remove_tree(gone.storage_uri)
        except ReelforgeError as exc:  # StorageError, or UnreachableError: storage is away for now
            report.failed[gone.id] = str(exc)
            log.warning("job %s: its files could not be removed yet (%s); the next prune tries again", gone.id, exc)
            return
    store.files_pruned(gone.id)

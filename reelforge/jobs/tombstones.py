"""Pruned jobs in SQL: their tombstones, and the queries retention (jobs/retention.py) drives."""

from __future__ import annotations

import time

from reelforge.jobs.record import JobStatus, PrunedJob
from reelforge.jobs.sqlbase import SQLBase

TOMBSTONE_COLUMNS = ("id", "arn", "model_id", "client_token", "fingerprint", "status", "wire", "submit_time", "end_time", "pruned_time", "storage_uri")


class Tombstoned(Exception):
    """Inside ``create``: the token belongs to a pruned job (raised to roll the insert back)."""

    def __init__(self, job: PrunedJob):
        self.job = job


def pruned_job(row) -> PrunedJob:
    d = dict(row)
    d["status"] = JobStatus(d["status"])
    # The request, files and metadata are gone; storage_uri names the files while they are still to remove.
    return PrunedJob(
        model_input={}, output_uri="", storage_uri=d.pop("storage_uri") or "", stage="expired",
        progress=1.0 if d["status"] is JobStatus.COMPLETED else 0.0, last_modified=d["pruned_time"], **d,
    )



class TombstoneQueries(SQLBase):
    """What the log keeps of pruned jobs, and the prune itself."""

    def _refuse_tombstoned(self, db, token: str) -> None:
        row = db.execute("SELECT * FROM job_tombstones WHERE client_token = ?", (token,)).fetchone()
        if row is not None:
            raise Tombstoned(pruned_job(row))

    def token_recorded(self, client_token: str) -> bool:
        """Whether a job, or the tombstone of a pruned one, holds this client token (admission lets it through: create answers it)."""
        def body(_):
            with self._conn() as db:
                return db.execute("SELECT 1 FROM jobs WHERE client_token = ? UNION ALL SELECT 1 FROM job_tombstones WHERE client_token = ? LIMIT 1",
                                  (client_token, client_token)).fetchone()

        return self._attempt(body) is not None

    def tombstone(self, job_id: str) -> PrunedJob | None:
        """The tombstone of a job retention removed, or None."""

        def body(_):
            with self._conn() as db:
                return db.execute("SELECT * FROM job_tombstones WHERE id = ?", (job_id,)).fetchone()

        row = self._attempt(body)
        return pruned_job(row) if row is not None else None

    # --- retention ---------------------------------------------------------------------------
    _PRUNABLE = (
        "parent_id IS NULL AND status IN ('COMPLETED', 'FAILED', 'CANCELED') AND end_time < ?"
        # a failed job's other shots may still be stopping: their worker could write files yet
        " AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.parent_id = jobs.id AND c.status IN ('QUEUED', 'RUNNING'))"
        # a notification still being tried keeps its job (its body is made from the record); it waits for the next round
        " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.job_id = jobs.id AND d.state = 'pending')"
    )

    def prunable(self, ended_before: float, *, after: tuple[float, str] | None = None, limit: int = 500) -> list[tuple[float, str]]:
        where, args = self._PRUNABLE, [ended_before, *(after or ())]
        if after is not None:
            where += " AND (end_time, id) > (?, ?)"
        rows = self._read([(f"SELECT end_time, id FROM jobs WHERE {where} ORDER BY end_time, id LIMIT ?", args + [limit])])
        return [(r["end_time"], r["id"]) for r in rows]

    def prune(self, job_id: str, ended_before: float) -> PrunedJob | None:
        def body(_):
            now = time.time()
            with self._tx() as db:
                self._lock(db, job_id)
                row = db.execute(f"SELECT * FROM jobs WHERE id = ? AND {self._PRUNABLE}", (job_id, ended_before)).fetchone()
                if row is None:
                    return None
                kept = [row[c] for c in TOMBSTONE_COLUMNS[:-2]] + [now, row["storage_uri"]]
                # ON CONFLICT: a retry after a lost reply finds its own tombstone there already.
                db.execute(
                    f"INSERT INTO job_tombstones ({', '.join(TOMBSTONE_COLUMNS)}) VALUES ({', '.join('?' * len(TOMBSTONE_COLUMNS))})"
                    " ON CONFLICT DO NOTHING",
                    kept,
                )
                db.execute("DELETE FROM jobs WHERE parent_id = ?", (job_id,))
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
                db.execute("DELETE FROM webhook_deliveries WHERE job_id = ?", (job_id,))  # all ended: see _PRUNABLE
                return db.execute("SELECT * FROM job_tombstones WHERE id = ?", (job_id,)).fetchone()

        row = self._attempt(body)
        return pruned_job(row) if row is not None else None

    def unfinished_prunes(self) -> list[PrunedJob]:
        rows = self._read([("SELECT * FROM job_tombstones WHERE storage_uri IS NOT NULL ORDER BY pruned_time, id", [])])
        return [pruned_job(r) for r in rows]

    def files_pruned(self, job_id: str) -> None:
        def body(_):
            with self._tx() as db:
                db.execute("UPDATE job_tombstones SET storage_uri = NULL WHERE id = ?", (job_id,))

        self._attempt(body)

    def forget_pruned_search(self) -> None:
        """After a prune round: drop pruned jobs from a search index that is not a column's (SQLite's FTS table)."""


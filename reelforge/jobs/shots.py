"""Multi-shot jobs in SQL: their shot units, and how a job waiting for them moves on (settles)."""

from __future__ import annotations

import time

from reelforge.jobs.record import JobRecord, JobStatus
from reelforge.jobs.sqlbase import COLUMNS, SQLBase, fence_condition, row_values


class ShotQueries(SQLBase):
    """Splitting a claimed job into shot units, rolling their progress up, and settling the job."""

    def split(self, parent_id: str, worker_id: str, shots: list[JobRecord], *, fence: int | None = None) -> bool:
        fenced, fence_args = fence_condition(fence)

        def body(_):
            now = time.time()
            with self._tx() as db:
                self._lock(db, parent_id)
                owned = db.execute(
                    "UPDATE jobs SET worker_id = NULL, lease_until = NULL, stage = ?, last_modified = ?"
                    f" WHERE id = ? AND worker_id = ? AND status = 'RUNNING'{fenced} RETURNING cancel_requested",
                    [f"rendering {len(shots)} shots", now, parent_id, worker_id, *fence_args],
                ).fetchone()
                if owned is None:
                    return False  # another worker has the job now (or it ended): its shots are not ours to add
                for rec in shots:
                    if owned["cancel_requested"]:
                        rec.status, rec.stage, rec.end_time, rec.failure_message = JobStatus.CANCELED, "canceled", now, "Canceled."
                    values = row_values(rec)
                    db.execute(
                        f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                        [values[c] for c in COLUMNS],
                    )
                self._announce(db)
                self._settle(db, parent_id, now)
            return True

        return self._attempt(body)

    def children(self, parent_id: str) -> list[JobRecord]:
        def body(_):
            with self._conn() as db:
                return db.execute("SELECT * FROM jobs WHERE parent_id = ? ORDER BY shot_index", (parent_id,)).fetchall()

        return [self._row(r) for r in self._attempt(body)]

    def settle(self, parent_id: str) -> None:
        def body(_):
            with self._tx() as db:
                self._lock(db, parent_id)
                self._settle(db, parent_id, time.time())

        self._attempt(body)

    @staticmethod
    def _roll_up(db, parent_id: str, now: float) -> None:
        db.execute(
            "UPDATE jobs SET progress = 0.97 * (SELECT AVG(progress) FROM jobs WHERE parent_id = ?),"
            " stage = 'rendering shots: ' || (SELECT COUNT(*) FROM jobs WHERE parent_id = ? AND status = 'COMPLETED')"
            " || '/' || (SELECT COUNT(*) FROM jobs WHERE parent_id = ?) || ' done', last_modified = ?"
            " WHERE id = ? AND status = 'RUNNING' AND worker_id IS NULL",
            (parent_id, parent_id, parent_id, now, parent_id),
        )

    def _settle(self, db, parent_id: str, now: float) -> None:
        parent = db.execute("SELECT status, worker_id, cancel_requested FROM jobs WHERE id = ?", (parent_id,)).fetchone()
        if parent is None or parent["status"] != "RUNNING" or parent["worker_id"] is not None:
            return  # not a job waiting for its shots
        rows = db.execute("SELECT shot_index, status, failure_message FROM jobs WHERE parent_id = ? ORDER BY shot_index", (parent_id,)).fetchall()
        if not rows:
            return
        states = [r["status"] for r in rows]
        failed = [r for r in rows if r["status"] == "FAILED"]
        if failed:
            r = failed[0]
            msg = f"shot {r['shot_index'] + 1} failed: {r['failure_message']}"
            db.execute("UPDATE jobs SET status = 'CANCELED', stage = 'canceled', end_time = ?, last_modified = ?, failure_message = 'Canceled: another shot failed.' WHERE parent_id = ? AND status = 'QUEUED'", (now, now, parent_id))
            db.execute("UPDATE jobs SET cancel_requested = 1 WHERE parent_id = ? AND status = 'RUNNING'", (parent_id,))
            db.execute("UPDATE jobs SET status = 'FAILED', stage = 'failed', end_time = ?, last_modified = ?, failure_message = ? WHERE id = ?", (now, now, msg[:2048], parent_id))
        elif "RUNNING" in states or "QUEUED" in states:
            self._roll_up(db, parent_id, now)
        elif all(s == "COMPLETED" for s in states) and not parent["cancel_requested"]:
            db.execute("UPDATE jobs SET status = 'QUEUED', stage = 'joining shots', progress = 0.97, last_modified = ? WHERE id = ?", (now, parent_id))
            self._announce(db)
        else:
            db.execute("UPDATE jobs SET status = 'CANCELED', stage = 'canceled', end_time = ?, last_modified = ?, failure_message = 'Canceled.' WHERE id = ?", (now, now, parent_id))

    def request_cancel(self, job_id: str) -> JobRecord:
        def body(_):
            now = time.time()
            with self._tx() as db:
                # A shot unit is part of a job: canceling it cancels the job, which the caller gets back.
                target = self._lock_parent_of(db, job_id) or job_id
                self._lock(db, target)
                db.execute(
                    "UPDATE jobs SET status = 'CANCELED', stage = 'canceled', end_time = ?, last_modified = ?,"
                    " failure_message = 'Canceled before it started.' WHERE id = ? AND status = 'QUEUED'",
                    (now, now, target),
                )
                db.execute("UPDATE jobs SET cancel_requested = 1, last_modified = ? WHERE id = ? AND status = 'RUNNING'", (now, target))
                db.execute(
                    "UPDATE jobs SET status = 'CANCELED', stage = 'canceled', end_time = ?, last_modified = ?,"
                    " failure_message = 'Canceled.' WHERE parent_id = ? AND status = 'QUEUED'",
                    (now, now, target),
                )
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE parent_id = ? AND status = 'RUNNING'", (target,))
                self._settle(db, target, now)
            return target

        return self.get(self._attempt(body))


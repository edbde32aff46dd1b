"""The SQL job log both dialects share: recording jobs, claims, leases, attempts and recovery.

SQLJobStore gathers the query groups (pages.py: listings and search; shots.py: multi-shot jobs;
tombstones.py: pruned jobs; outbox.py: webhook deliveries) over sqlbase.py's rows and dialect hooks;
sqlite.py (the embedded default) and postgres.py (many machines) supply the dialects, schema.py the
migrations, open.py the choice between them. Both run the same statements (written with ``?`` placeholders); they differ in connections,
transactions, column types and in how a worker claims a job: SQLite serialises writers with
``BEGIN IMMEDIATE``, PostgreSQL uses ``FOR UPDATE SKIP LOCKED`` and row locks on the job whose
shots are settling, so many workers on many machines never take the same job.

Every claim raises the job's ``fence`` (a claim number), and every write a worker makes names
the fence it holds: a worker that lost its lease (frozen, cut off, presumed dead) can never
write over the attempt that followed. ``attempts`` counts only the claims in which the engine
actually started (``begin_attempt``), so workers that die before starting cost a job nothing.

PostgreSQL connections come from one pool per process; a statement that fails because the
connection dropped is retried on a fresh one (every statement here is safe to repeat, see
``_attempt``), no statement waits more than a few seconds on a lock, and a session left idle
inside a transaction (a frozen process) is ended by the server, so one stuck worker cannot
stall the others. Idle workers are woken by LISTEN/NOTIFY when a job becomes claimable.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

from reelforge.errors import ConflictError, JobExpiredError, JobNotFoundError, JobStoreError
from reelforge.jobs.outbox import OutboxQueries
from reelforge.jobs.pages import ListingQueries
from reelforge.jobs.record import Beat, JobRecord, JobStatus, options_text
from reelforge.jobs.shots import ShotQueries
from reelforge.jobs.sqlbase import COLUMNS, fence_condition, row_values
from reelforge.jobs.tombstones import Tombstoned, TombstoneQueries

CHANNEL = "reelforge_jobs"  # PostgreSQL NOTIFY channel: a job became claimable

# Which unit a claim takes. It chooses among the oldest claimable units (the head of the queue; a shot
# unit is only worth running while its job still waits for shots), by model affinity (docs/scale-out.md):
#   - a unit queued less than affinity_s ago whose model another live worker holds loaded, with a free
#     slot, is left to that worker (unless this one holds it too);
#   - first a unit queued longer than that whose model no other live worker holds (nothing starves),
#     then the oldest for a model this worker holds, then the oldest of the rest.
# A model is an engine and its options, as the worker's EngineCache keys it; "live": seen within a lease.
# The head is read in queue order and its rows by primary key, so a claim costs the same at any backlog.
# On PostgreSQL a claim skips head rows other claims hold locked: with more than CLAIM_HEAD workers
# claiming in the same instant, some find none free and look again at the next notification.
CLAIM_HEAD = 64
_HELD = "SELECT 1 FROM worker_engines h WHERE h.engine = j.engine AND h.engine_options = j.engine_options"


def claim_next(recheck: str = "", lock: str = "") -> str:
    """The claim's choice (its arguments: SQLJobStore._claim_args). ``recheck`` is tested again on the row
    chosen (PostgreSQL re-reads a row that another claim changed meanwhile); ``lock`` locks it."""
    return (
        "SELECT id FROM jobs j WHERE id IN (SELECT id FROM jobs q WHERE status = 'QUEUED' AND"
        " (parent_id IS NULL OR EXISTS (SELECT 1 FROM jobs p WHERE p.id = q.parent_id AND p.status = 'RUNNING'))"
        f" ORDER BY submit_time, id LIMIT {CLAIM_HEAD}){recheck}"
        f" AND NOT (j.last_modified > ? AND NOT EXISTS ({_HELD} AND h.worker_id = ?) AND EXISTS ({_HELD}"
        " AND h.worker_id <> ? AND h.seen > ?"
        " AND h.slots > (SELECT COUNT(*) FROM jobs r WHERE r.status = 'RUNNING' AND r.worker_id LIKE h.worker_id || ?)))"
        f" ORDER BY CASE WHEN j.last_modified <= ? AND NOT EXISTS ({_HELD} AND h.worker_id <> ? AND h.seen > ?) THEN 0"
        f" WHEN EXISTS ({_HELD} AND h.worker_id = ?) THEN 1 ELSE 2 END, submit_time, id LIMIT 1{lock}"
    )



class SQLJobStore(ShotQueries, ListingQueries, TombstoneQueries, OutboxQueries):
    """The job log in SQL; subclasses supply connections, transactions and their dialect's few differences."""

    _CLAIM_NEXT = claim_next()

    def _claim_args(self, worker_id: str, now: float) -> list:
        process = worker_id.partition("/")[0]  # a claim's owner is PROCESS/THREAD#N; holdings are the process's
        young, live = now - self.timings.affinity_s, now - self.timings.lease_s
        return [young, process, process, live, "/%", young, process, live, process]

    # --- interface -------------------------------------------------------------------------
    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        values = row_values(record)
        columns = COLUMNS + ("search_text",)

        def body(retrying: bool) -> tuple[JobRecord, bool]:
            existing: JobRecord
            try:
                with self._tx() as db:
                    # One write: a repeated token (or our own insert, when a retry follows a lost reply) inserts nothing.
                    row = db.execute(
                        f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
                        " ON CONFLICT DO NOTHING RETURNING id",
                        [values[c] for c in columns],
                    ).fetchone()
                    if row is not None:
                        # Checked after the insert: a prune deletes a job's row only after its tombstone is
                        # committed, so a token that the insert found free is either new or tombstoned here.
                        if record.client_token is not None:
                            self._refuse_tombstoned(db, record.client_token)
                        if values["search_text"] is not None:
                            self._index_search(db, record.id, values["search_text"])
                        self._announce(db)
                        return record, True
                    found = db.execute(
                        "SELECT * FROM jobs WHERE id = ? OR client_token = ?", (record.id, record.client_token)
                    ).fetchone()
                    if found is None and record.client_token is not None:  # pruned between the two statements
                        self._refuse_tombstoned(db, record.client_token)
            except Tombstoned as gone:  # the insert is rolled back
                existing = gone.job
            else:
                if found is None:
                    raise JobStoreError(f"job {record.id} could not be recorded; try again")
                existing = self._row(found)
                if existing.id == record.id:
                    return existing, True
            if existing.fingerprint != record.fingerprint:
                raise ConflictError(
                    f"clientRequestToken {record.client_token!r} was already used for job {existing.id} "
                    "with a different request; use a new token for a new request"
                )
            return existing, False

        return self._attempt(body)

    def get(self, job_id: str) -> JobRecord:
        def body(_):
            with self._conn() as db:
                return db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()

        row = self._attempt(body)
        if row is None:
            gone = self.tombstone(job_id)
            if gone is not None:
                raise JobExpiredError(job_id, gone)
            raise JobNotFoundError(job_id)
        return self._row(row)

    def claim(self, worker_id: str, lease_s: float) -> JobRecord | None:
        def body(retrying: bool):
            now = time.time()
            with self._tx() as db:
                if retrying:
                    # The reply to an earlier try may have been lost after its commit: that claim is ours.
                    row = db.execute("SELECT * FROM jobs WHERE worker_id = ? AND status = 'RUNNING' LIMIT 1", (worker_id,)).fetchone()
                    if row is not None:
                        return row
                return db.execute(
                    "UPDATE jobs SET status = 'RUNNING', worker_id = ?, lease_until = ?, fence = fence + 1,"
                    " start_time = COALESCE(start_time, ?), last_modified = ?, stage = 'starting'"
                    f" WHERE id = ({self._CLAIM_NEXT}) RETURNING *",
                    [worker_id, now + lease_s, now, now, *self._claim_args(worker_id, now)],
                ).fetchone()

        row = self._attempt(body)
        return self._row(row) if row is not None else None

    def hold(self, worker_id: str, engines: list[tuple[str, dict[str, Any]]], slots: int) -> None:
        def body(_):
            with self._tx() as db:
                self._relaxed(db)  # a holding lost to a power cut only costs a model its affinity until the next beat
                db.execute("DELETE FROM worker_engines WHERE worker_id = ?", (worker_id,))
                for engine, options in engines:
                    db.execute(
                        "INSERT INTO worker_engines (worker_id, engine, engine_options, slots, seen) VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT DO NOTHING", (worker_id, engine, options_text(options), slots, time.time()),
                    )

        self._attempt(body)

    def _forget_workers(self, is_dead) -> None:
        """Remove the holdings of worker processes that are gone: not seen for a lease, or dead on this machine."""

        def scan(_):
            with self._conn() as db:
                return db.execute("SELECT worker_id, MAX(seen) AS seen FROM worker_engines GROUP BY worker_id").fetchall()

        stale = time.time() - self.timings.lease_s
        gone = [(r["worker_id"], r["seen"]) for r in self._attempt(scan) if r["seen"] < stale or (is_dead is not None and is_dead(r["worker_id"]))]
        for worker_id, seen in gone:

            def forget(_, worker_id=worker_id, seen=seen):
                with self._tx() as db:  # unless it said it holds them again meanwhile
                    db.execute("DELETE FROM worker_engines WHERE worker_id = ? AND seen <= ?", (worker_id, seen))

            self._attempt(forget)

    def begin_attempt(self, job_id: str, worker_id: str, fence: int) -> int | None:
        """Count the claim ``fence`` as an attempt (once, however often called); None when it is not ours."""

        def body(_):
            with self._tx() as db:
                return db.execute(
                    "UPDATE jobs SET attempts = attempts + CASE WHEN counted_fence = fence THEN 0 ELSE 1 END,"
                    " counted_fence = fence, last_modified = ?"
                    " WHERE id = ? AND worker_id = ? AND fence = ? AND status = 'RUNNING' RETURNING attempts",
                    (time.time(), job_id, worker_id, fence),
                ).fetchone()

        row = self._attempt(body)
        return row["attempts"] if row is not None else None

    def heartbeat(self, job_id, worker_id, lease_s, progress, stage, *, fence: int | None = None) -> Beat:
        fenced, fence_args = fence_condition(fence)

        def body(_):
            now = time.time()
            with self._tx() as db:
                row = db.execute(
                    "UPDATE jobs SET lease_until = ?, progress = ?, stage = ?, last_modified = ?"
                    f" WHERE id = ? AND worker_id = ? AND status = 'RUNNING'{fenced} RETURNING cancel_requested, parent_id",
                    [now + lease_s, progress, stage, now, job_id, worker_id, *fence_args],
                ).fetchone()
            if row is not None and row["parent_id"] is not None:
                with self._tx() as db:  # a statement of its own: the unit's row lock is already released
                    self._roll_up(db, row["parent_id"], now)
            return row

        row = self._attempt(body)
        if row is None:
            return Beat.LOST  # recovered elsewhere, released, or ended: this worker must stop
        return Beat.CANCEL if row["cancel_requested"] else Beat.OK

    def save_checkpoint(self, job_id: str, worker_id: str, data: dict[str, Any], *, fence: int | None = None) -> bool:
        """Merge ``data`` into the job's ``metadata.checkpoint`` (kept for its next attempt), only while this claim holds it."""
        fenced, fence_args = fence_condition(fence)

        def body(_):
            with self._tx() as db:
                self._lock(db, job_id)
                row = db.execute(
                    f"SELECT metadata FROM jobs WHERE id = ? AND worker_id = ? AND status = 'RUNNING'{fenced}",
                    [job_id, worker_id, *fence_args],
                ).fetchone()
                if row is None:
                    return False
                metadata = json.loads(row["metadata"])
                metadata["checkpoint"] = {**metadata.get("checkpoint", {}), **data}
                db.execute("UPDATE jobs SET metadata = ?, last_modified = ? WHERE id = ?", [json.dumps(metadata), time.time(), job_id])
            return True

        return self._attempt(body)

    def finish(self, job_id, worker_id, status, *, failure_message=None, metadata=None, fence: int | None = None) -> bool:
        sets = "status = ?, failure_message = ?, end_time = ?, last_modified = ?, lease_until = NULL, stage = ?"
        if status is JobStatus.COMPLETED:
            sets += ", progress = 1.0"
        if metadata is not None:
            sets += ", metadata = ?"
        cond = "id = ? AND status IN ('QUEUED', 'RUNNING')" + (" AND worker_id = ?" if worker_id is not None else "") + fence_condition(fence)[0]

        def body(_):
            now = time.time()
            args: list[Any] = [status.value, failure_message, now, now, status.value.lower()]
            args += [json.dumps(metadata)] if metadata is not None else []
            args += [job_id] + ([worker_id] if worker_id is not None else []) + fence_condition(fence)[1]
            with self._tx() as db:
                self._lock_parent_of(db, job_id)  # shots finishing together settle their job one at a time
                row = db.execute(f"UPDATE jobs SET {sets} WHERE {cond} RETURNING parent_id", args).fetchone()
                if row is not None and row["parent_id"] is not None:
                    self._settle(db, row["parent_id"], now)
            return row is not None

        return self._attempt(body)

    def retry(self, job_id: str, worker_id: str, reason: str, *, fence: int | None = None) -> None:
        """Put a claimed job back in the queue (its attempt count stays, so retries are bounded)."""

        fenced, fence_args = fence_condition(fence)

        def body(_):
            with self._tx() as db:
                db.execute(
                    "UPDATE jobs SET status = 'QUEUED', worker_id = NULL, lease_until = NULL, progress = 0, stage = ?,"
                    f" last_modified = ? WHERE id = ? AND worker_id = ? AND status = 'RUNNING'{fenced}",
                    [f"retrying after: {reason}"[:500], time.time(), job_id, worker_id, *fence_args],
                )
                self._announce(db)

        self._attempt(body)

    def mark_deleted(self, job_id: str) -> JobRecord | None:
        def body(_):
            now = time.time()
            with self._tx() as db:
                return db.execute(
                    "UPDATE jobs SET deleted_time = COALESCE(deleted_time, ?), stage = 'deleted', last_modified = ?"
                    " WHERE id = ? AND parent_id IS NULL AND status IN ('COMPLETED', 'FAILED', 'CANCELED') RETURNING *",
                    (now, now, job_id),
                ).fetchone()

        row = self._attempt(body)
        return self._row(row) if row is not None else None

    def release(self, worker_id: str) -> list[str]:
        def body(_):
            with self._tx() as db:
                rows = db.execute(
                    # A graceful stop is not the job's fault: an attempt it had begun is given back.
                    "UPDATE jobs SET status = 'QUEUED', worker_id = NULL, lease_until = NULL, progress = 0,"
                    " attempts = attempts - CASE WHEN counted_fence = fence THEN 1 ELSE 0 END, counted_fence = 0,"
                    " stage = 'queued again: its worker stopped', last_modified = ?"
                    " WHERE (worker_id = ? OR worker_id LIKE ?) AND status = 'RUNNING' RETURNING id",
                    (time.time(), worker_id, worker_id + "/%"),
                ).fetchall()
                if rows:
                    self._announce(db)
            return [r["id"] for r in rows]

        return self._attempt(body)

    def recover(self, max_attempts: int, is_dead=None, max_claims: int | None = None) -> list[str]:
        """Requeue (or end) running units whose worker is gone; return their ids.

        Each unit is taken in a transaction of its own that skips rows another session holds,
        so a frozen worker holding a lock delays only its own job, never the recovery of others.
        A unit whose claim never began an attempt is requeued without cost, unless it has been
        claimed ``max_claims`` times (default 5 x ``max_attempts``) by workers that all stopped first.
        """
        max_claims = max_claims or 5 * max_attempts

        def scan(_):
            with self._conn() as db:
                return db.execute(
                    "SELECT id, worker_id, lease_until, fence, counted_fence, attempts, cancel_requested, parent_id"
                    " FROM jobs WHERE status = 'RUNNING' AND worker_id IS NOT NULL"
                ).fetchall()

        now = time.time()
        ids = []
        for r in self._attempt(scan):
            dead = is_dead is not None and is_dead(r["worker_id"])
            if not (dead or (r["lease_until"] or 0) < now):
                continue
            began = r["counted_fence"] == r["fence"]
            args: list[Any]
            if r["cancel_requested"]:
                sets, args = "status = 'CANCELED', stage = 'canceled', end_time = ?, failure_message = 'Canceled.'", [now]
            elif began and r["attempts"] >= max_attempts:
                msg = f"The worker running this job stopped {r['attempts']} times; giving up. See the worker's log."
                sets, args = "status = 'FAILED', stage = 'failed', end_time = ?, failure_message = ?", [now, msg]
            elif not began and r["fence"] >= max_claims:
                msg = f"{r['fence']} workers took this job and stopped before starting it; giving up. See the worker's log."
                sets, args = "status = 'FAILED', stage = 'failed', end_time = ?, failure_message = ?", [now, msg]
            else:
                sets, args = "status = 'QUEUED', stage = 'requeued after its worker stopped', progress = 0", []

            def take(_, r=r, sets=sets, args=args, dead=dead):
                with self._tx() as db:
                    parent = r["parent_id"]
                    if (parent is not None and not self._try_lock(db, parent)) or not self._try_lock(db, r["id"]):
                        return False
                    done = db.execute(
                        f"UPDATE jobs SET {sets}, worker_id = NULL, lease_until = NULL, last_modified = ?"
                        " WHERE id = ? AND fence = ? AND status = 'RUNNING' AND (lease_until < ? OR ? = 1) RETURNING status",
                        [*args, now, r["id"], r["fence"], now, int(dead)],
                    ).fetchone()
                    if done is not None and done["status"] == "QUEUED":
                        self._announce(db)
                    if done is not None and parent is not None:
                        self._settle(db, parent, now)
                    return done is not None

            if self._attempt(take):
                ids.append(r["id"])
        self._settle_stalled()
        self._forget_workers(is_dead)
        return ids

    def _settle_stalled(self) -> None:
        """Move on any job still waiting for shots that have all ended (a safety net; settle does it as they end)."""

        def body(_):
            with self._conn() as db:
                return db.execute(
                    "SELECT id FROM jobs p WHERE status = 'RUNNING' AND worker_id IS NULL AND parent_id IS NULL"
                    " AND EXISTS (SELECT 1 FROM jobs c WHERE c.parent_id = p.id)"
                    " AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.parent_id = p.id AND c.status IN ('QUEUED', 'RUNNING'))"
                ).fetchall()

        for r in self._attempt(body):
            self.settle(r["id"])

    def listen(self, wake: Callable[[], None], stop: threading.Event, channel: str = CHANNEL) -> None:
        """Call ``wake`` whenever another process makes a job claimable, until ``stop`` is set.

        ``channel`` WEBHOOK_CHANNEL listens for new webhook deliveries instead. Stores without
        notifications return at once; their workers look again every second."""


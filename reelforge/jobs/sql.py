"""SQL implementations of the job log: SQLite (embedded default) and PostgreSQL (many machines).

Both run the same statements (written with ``?`` placeholders); they differ in connections,
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

import contextlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable

from reelforge import config
from reelforge.errors import ConflictError, JobExpiredError, JobNotFoundError, JobStoreError
from reelforge.jobs.record import (
    _COLUMNS,
    _JSON_COLUMNS,
    Beat,
    JobRecord,
    JobStatus,
    JobStore,
    PrunedJob,
    check_search,
    fold_search,
    options_text,
    search_text,
)

log = logging.getLogger("reelforge.stores")
CHANNEL = "reelforge_jobs"  # PostgreSQL NOTIFY channel: a job became claimable

# Every listing excludes shot units (parent_id IS NULL), so the indexes that serve it are partial and
# hold top-level jobs only, each ordered by (submit_time, id) after its equality columns. The old
# index on parent_id covered NULLs too, and SQLite chose it for "parent_id IS NULL": a scan of every job.
# jobs_submit served only listings (shot units included), so jobs_list replaces it.
_LISTING_INDEXES = """
    DROP INDEX jobs_submit;
    DROP INDEX jobs_parent;
    CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;
    DROP INDEX jobs_status_submit;
    CREATE INDEX jobs_status_submit ON jobs (status, submit_time, id);
    CREATE INDEX jobs_list ON jobs (submit_time, id) WHERE parent_id IS NULL;
    CREATE INDEX jobs_list_status ON jobs (status, submit_time, id) WHERE parent_id IS NULL;
    CREATE INDEX jobs_list_model ON jobs (model_id, submit_time, id) WHERE parent_id IS NULL;
    CREATE INDEX jobs_list_model_status ON jobs (model_id, status, submit_time, id) WHERE parent_id IS NULL
"""


def _add_search_text(db, write_batch) -> None:
    """Add the searchable text of each job (folded in Python, as create does) and fill it for the jobs already there."""
    db.execute("ALTER TABLE jobs ADD COLUMN search_text TEXT")
    last = ""
    while True:
        rows = db.execute(
            "SELECT id, model_input FROM jobs WHERE parent_id IS NULL AND id > ? ORDER BY id LIMIT 1000", (last,)
        ).fetchall()
        if not rows:
            return
        write_batch(db, [r["id"] for r in rows], [search_text(json.loads(r["model_input"])) for r in rows])
        last = rows[-1]["id"]


def _engines_fixed(db) -> None:
    """A migration: jobs keep their engine and its options from when they were recorded; jobs
    recorded before are given what they would have run, decided now, once (models.engine_of_old_job)."""
    from reelforge.engines.catalog import engine_of_old_job

    db.execute("ALTER TABLE jobs ADD COLUMN engine TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE jobs ADD COLUMN engine_options TEXT NOT NULL DEFAULT '{}'")
    for row in db.execute("SELECT DISTINCT model_id FROM jobs").fetchall():
        engine, options = engine_of_old_job(row["model_id"])
        db.execute("UPDATE jobs SET engine = ?, engine_options = ? WHERE model_id = ?",
                   (engine, json.dumps(options, ensure_ascii=False), row["model_id"]))


# Model affinity (claim): the engines each worker process holds loaded, with how many units it runs at
# once and when it last said so (a process that stops saying so for a lease is taken for gone).
def _worker_engines(real: str) -> Callable:
    def migrate(db) -> None:
        db.execute(f"""
            CREATE TABLE worker_engines (
                worker_id TEXT NOT NULL, engine TEXT NOT NULL, engine_options TEXT NOT NULL, slots INTEGER NOT NULL,
                seen {real} NOT NULL, PRIMARY KEY (worker_id, engine, engine_options)
            )
        """)
        # Claims match options by their text: queued jobs get the one text their options have from now on.
        for row in db.execute("SELECT id, engine_options FROM jobs WHERE status IN ('QUEUED', 'RUNNING')").fetchall():
            text = options_text(json.loads(row["engine_options"]))
            if text != row["engine_options"]:
                db.execute("UPDATE jobs SET engine_options = ? WHERE id = ?", (text, row["id"]))

    return migrate


def _sqlite_search_text(db) -> None:
    def write(db, ids, texts):
        db.executemany("UPDATE jobs SET search_text = ? WHERE id = ?", zip(texts, ids))

    _add_search_text(db, write)


# A pruned job's tombstone (reelforge/retention.py): what keeps a repeated client token from starting a
# new job once the job's record is gone. storage_uri names the files until they are removed.
def _tombstones(real: str) -> str:
    return f"""
    CREATE TABLE job_tombstones (
        id TEXT PRIMARY KEY, arn TEXT NOT NULL, model_id TEXT NOT NULL, client_token TEXT UNIQUE,
        fingerprint TEXT NOT NULL, status TEXT NOT NULL, wire TEXT NOT NULL, submit_time {real} NOT NULL,
        end_time {real}, pruned_time {real} NOT NULL, storage_uri TEXT
    );
    CREATE INDEX job_tombstones_unfinished ON job_tombstones (pruned_time) WHERE storage_uri IS NOT NULL;
    CREATE INDEX jobs_ended ON jobs (end_time, id) WHERE parent_id IS NULL AND end_time IS NOT NULL
    """
# --- webhooks: the outbox ---------------------------------------------------------------------
# A job's endpoints are recorded with it at submit (jobs.webhooks: {"endpoints": [{"name", "url",
# "kinds", "key"}], "base": URL}). A trigger turns each status change of a top-level job into one
# delivery row per endpoint that asked for that kind of event, inside the transaction that made the
# change: no code path that moves a job (finish, cancel, recovery, a multi-shot job settling) can
# forget its notification, and none is written for a change that was rolled back.
# Kinds: started (start_time set, once per job), completed, failed, canceled, progress (each 10%).

_WEBHOOK_TABLE = """
    CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY, job_id TEXT NOT NULL, endpoint TEXT NOT NULL, url TEXT NOT NULL, kind TEXT NOT NULL,
        key TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
        created {real} NOT NULL, next_attempt {real} NOT NULL, lease_until {real}, owner TEXT, body TEXT,
        last_code INTEGER, last_error TEXT, ended {real}, history TEXT NOT NULL DEFAULT '[]', retried {real},
        job_status TEXT NOT NULL, job_progress {real} NOT NULL
    )
"""
_WEBHOOK_INDEXES = (
    "CREATE INDEX webhook_due ON webhook_deliveries (next_attempt) WHERE state = 'pending'",
    "CREATE INDEX webhook_job ON webhook_deliveries (job_id, created)",
)
# Which kinds one UPDATE of a job row makes (OLD and NEW are the row before and after).
_WEBHOOK_KINDS = """
    SELECT 'started' AS kind WHERE OLD.start_time IS NULL AND NEW.start_time IS NOT NULL
    UNION ALL SELECT lower(NEW.status) WHERE OLD.status <> NEW.status AND NEW.status IN ('COMPLETED', 'FAILED', 'CANCELED')
    UNION ALL SELECT 'progress' WHERE NEW.status = 'RUNNING' AND {tenths} > {tenths}
"""
# The trigger's body runs only for updates that may make an event (not for each heartbeat's lease renewal).
_WEBHOOK_WHEN = (
    "NEW.parent_id IS NULL AND NEW.webhooks <> '{{{{}}}}' AND (OLD.status <> NEW.status"
    " OR (OLD.start_time IS NULL AND NEW.start_time IS NOT NULL) OR {tenths} <> {tenths})"
)


def _sqlite_webhooks(db) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN webhooks TEXT NOT NULL DEFAULT '{}'")
    db.execute(_WEBHOOK_TABLE.format(real="REAL"))
    for stmt in _WEBHOOK_INDEXES:
        db.execute(stmt)
    tenths = "CAST(10 * {} AS INTEGER)"
    kinds = _WEBHOOK_KINDS.format(tenths=tenths).format("NEW.progress", "OLD.progress")
    when = _WEBHOOK_WHEN.format(tenths=tenths).format("NEW.progress", "OLD.progress")
    db.execute(f"""
        CREATE TRIGGER jobs_webhooks AFTER UPDATE ON jobs WHEN {when}
        BEGIN
            INSERT INTO webhook_deliveries (id, job_id, endpoint, url, kind, key, created, next_attempt, job_status, job_progress)
            SELECT 'msg_' || lower(hex(randomblob(12))), NEW.id, json_extract(e.value, '$.name'), json_extract(e.value, '$.url'),
                   k.kind, json_extract(e.value, '$.key'), (julianday('now') - 2440587.5) * 86400.0, (julianday('now') - 2440587.5) * 86400.0,
                   NEW.status, NEW.progress
            FROM json_each(NEW.webhooks, '$.endpoints') e, ({kinds}) k
            WHERE EXISTS (SELECT 1 FROM json_each(e.value, '$.kinds') w WHERE w.value = k.kind);
        END
    """)


WEBHOOK_CHANNEL = "reelforge_webhooks"  # PostgreSQL NOTIFY channel: a delivery was written


def _postgres_webhooks(db) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN webhooks TEXT NOT NULL DEFAULT '{}'")
    db.execute(_WEBHOOK_TABLE.format(real="DOUBLE PRECISION"))
    for stmt in _WEBHOOK_INDEXES:
        db.execute(stmt)
    tenths = "trunc(10 * {})"
    kinds = _WEBHOOK_KINDS.format(tenths=tenths).format("NEW.progress", "OLD.progress")
    when = _WEBHOOK_WHEN.format(tenths=tenths).format("NEW.progress", "OLD.progress")
    # Raw connection: the body holds no placeholders, and "?" must not be rewritten inside it.
    db.conn.execute(f"""
        CREATE FUNCTION reelforge_webhook_events() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN
            INSERT INTO webhook_deliveries (id, job_id, endpoint, url, kind, key, created, next_attempt, job_status, job_progress)
            SELECT 'msg_' || substr(md5(random()::text || clock_timestamp()::text || NEW.id || k.kind || e.value::text), 1, 24),
                   NEW.id, e.value->>'name', e.value->>'url', k.kind, e.value->>'key',
                   extract(epoch from clock_timestamp()), extract(epoch from clock_timestamp()), NEW.status, NEW.progress
            FROM json_array_elements(NEW.webhooks::json -> 'endpoints') e, ({kinds}) k
            WHERE (e.value -> 'kinds')::jsonb @> to_jsonb(k.kind);
            IF FOUND THEN
                PERFORM pg_notify('{WEBHOOK_CHANNEL}', '');
            END IF;
            RETURN NULL;
        END
        $body$
    """)
    db.conn.execute(f"CREATE TRIGGER jobs_webhooks AFTER UPDATE ON jobs FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION reelforge_webhook_events()")


SQLITE_MIGRATIONS = [
    # 1: the job log
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY, arn TEXT NOT NULL, model_id TEXT NOT NULL, model_input TEXT NOT NULL,
        output_uri TEXT NOT NULL, storage_uri TEXT NOT NULL, client_token TEXT UNIQUE, fingerprint TEXT NOT NULL,
        status TEXT NOT NULL, progress REAL NOT NULL, stage TEXT NOT NULL,
        submit_time REAL NOT NULL, start_time REAL, end_time REAL, last_modified REAL NOT NULL,
        failure_message TEXT, attempts INTEGER NOT NULL, cancel_requested INTEGER NOT NULL,
        worker_id TEXT, lease_until REAL, output_config TEXT NOT NULL, tags TEXT NOT NULL, metadata TEXT NOT NULL
    );
    CREATE INDEX jobs_status_submit ON jobs (status, submit_time);
    CREATE INDEX jobs_submit ON jobs (submit_time, id);
    """,
    # 2: the shots of a multi-shot job run as units of their own
    """
    ALTER TABLE jobs ADD COLUMN parent_id TEXT;
    ALTER TABLE jobs ADD COLUMN shot_index INTEGER;
    CREATE INDEX jobs_parent ON jobs (parent_id);
    """,
    # 3: fencing (a claim number checked on every write) and attempts counted when the engine starts
    """
    ALTER TABLE jobs ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN counted_fence INTEGER NOT NULL DEFAULT 0;
    UPDATE jobs SET fence = attempts, counted_fence = attempts
    """,
    # 4: listings cost the same at a million jobs as at a thousand
    _LISTING_INDEXES,
    # 5: search looks at prompt and shot texts only (the FTS index on it: SQLiteJobStore._prepare_search)
    _sqlite_search_text,
    # 6: the API a job came on and its request there; when its files were deleted (docs/wires.md)
    """
    ALTER TABLE jobs ADD COLUMN wire TEXT NOT NULL DEFAULT 'bedrock';
    ALTER TABLE jobs ADD COLUMN wire_request TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE jobs ADD COLUMN deleted_time REAL
    """,
    # 7: retention: tombstones of pruned jobs, and the index prune finds old jobs by
    _tombstones("REAL"),
    # 8: webhooks: each job's endpoints, and the outbox its status changes write to (webhooks.py)
    _sqlite_webhooks,
    # 9: whether a job keeps the sound its engine makes (--no-audio records 0)
    "ALTER TABLE jobs ADD COLUMN audio INTEGER NOT NULL DEFAULT 1",
    # 10: the engine and its options are fixed when a job is recorded (older jobs: what they would have run)
    _engines_fixed,
    # 11: model affinity: the engines each worker holds loaded (claim)
    _worker_engines("REAL"),
]



_TOMBSTONE_COLUMNS = ("id", "arn", "model_id", "client_token", "fingerprint", "status", "wire", "submit_time", "end_time", "pruned_time", "storage_uri")


class _Tombstoned(Exception):
    """Inside ``create``: the token belongs to a pruned job (raised to roll the insert back)."""

    def __init__(self, job: PrunedJob):
        self.job = job


def _pruned(row) -> PrunedJob:
    d = dict(row)
    d["status"] = JobStatus(d["status"])
    # The request, files and metadata are gone; storage_uri names the files while they are still to remove.
    return PrunedJob(
        model_input={}, output_uri="", storage_uri=d.pop("storage_uri") or "", stage="expired",
        progress=1.0 if d["status"] is JobStatus.COMPLETED else 0.0, last_modified=d["pruned_time"], **d,
    )


def _fenced(fence: int | None) -> tuple[str, list[int]]:
    """The condition that a write comes from the claim ``fence`` (none for callers that hold no claim)."""
    return (" AND fence = ?", [fence]) if fence is not None else ("", [])


def row_values(record: JobRecord) -> dict[str, Any]:
    """Every column value the store writes for ``record``: JSON as readable text, and a job's search text."""
    values = record.to_dict()
    for c in _JSON_COLUMNS:
        values[c] = json.dumps(values[c], ensure_ascii=False)  # readable text, so search finds "café"
    values["engine_options"] = options_text(record.engine_options)  # one text per set of options: claims match it
    values["cancel_requested"] = int(values["cancel_requested"])
    values["audio"] = int(values["audio"])
    values["search_text"] = search_text(record.model_input) if record.parent_id is None else None
    return values


_DELIVERY_COLUMNS = ("id, job_id, endpoint, url, kind, key, state, attempts, created, next_attempt, lease_until, owner, last_code, last_error,"
                     " ended, history, retried, job_status, job_progress")


def _delivery(row) -> dict[str, Any]:
    d = dict(row)
    d["history"] = json.loads(d["history"])
    return d


def _statuses(statuses) -> list[str]:
    wanted = sorted({JobStatus(s).value for s in statuses or ()})
    return [] if len(wanted) == len(JobStatus) else wanted


def _status_in(wanted: list[str]) -> str:
    return f"status IN ({', '.join('?' * len(wanted))})"


def _order_by(descending: bool) -> str:
    order = "DESC" if descending else "ASC"
    return f" ORDER BY submit_time {order}, id {order}"


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


def _claim_next(recheck: str = "", lock: str = "") -> str:
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


class SQLJobStore(JobStore):
    """The job log in SQL; subclasses supply connections, transactions and their dialect's few differences."""

    migrations: list[str] = []

    def __init__(self):
        self.timings = config.timings()

    def _migration_lock(self, db) -> None:
        """Keep two processes from migrating at once (SQLite's immediate transaction already does)."""

    def _migrate(self) -> None:
        with self._tx() as db:
            self._migration_lock(db)
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL)")
            current = db.execute("SELECT MAX(version) AS v FROM schema_migrations").fetchone()["v"] or 0
            for version, step in enumerate(self.migrations, start=1):
                if version > current:
                    if callable(step):  # what SQL alone cannot do, such as reading JSON in Python
                        step(db)
                    else:
                        for stmt in filter(str.strip, step.split(";")):
                            db.execute(stmt)
                    db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
            self._prepare_search(db)

    def _prepare_search(self, db) -> None:
        """Build the search index when missing and possible (it may need what a later start has)."""

    def _index_search(self, db, job_id: str, text: str) -> None:
        """Add a new job's search text to an index that is not a column's (SQLite's FTS table)."""

    # --- what a dialect supplies -----------------------------------------------------------
    def _conn(self):
        """A context giving a connection for reads (autocommit)."""
        raise NotImplementedError

    def _tx(self):
        """A context giving a connection inside one transaction, committed on a clean exit."""
        raise NotImplementedError

    def _attempt(self, body: Callable[[bool], Any]) -> Any:
        """Run ``body(retrying)`` against the job log; dialects retry it through dropped connections."""
        return body(False)

    def _lock(self, db, job_id: str) -> None:
        """Hold ``job_id``'s row until the transaction ends (no-op where transactions are serial)."""

    def _try_lock(self, db, job_id: str) -> bool:
        """Like ``_lock`` but skip a row another session holds: False then (recovery comes back later)."""
        return True

    def _announce(self, db) -> None:
        """Tell idle workers elsewhere that a job became claimable (on commit)."""

    def _lock_parent_of(self, db, job_id: str) -> str | None:
        """Lock the job a shot unit belongs to, before the unit's own row: one lock order everywhere."""
        row = db.execute("SELECT parent_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
        parent = row["parent_id"] if row is not None else None
        if parent is not None:
            self._lock(db, parent)
        return parent

    _CLAIM_NEXT = _claim_next()

    def _claim_args(self, worker_id: str, now: float) -> list:
        process = worker_id.partition("/")[0]  # a claim's owner is PROCESS/THREAD#N; holdings are the process's
        young, live = now - self.timings.affinity_s, now - self.timings.lease_s
        return [young, process, process, live, "/%", young, process, live, process]

    @staticmethod
    def _row(row) -> JobRecord:
        d = dict(row)
        d.pop("search_text", None)  # an index column, not part of the record
        for c in _JSON_COLUMNS:
            d[c] = json.loads(d[c])
        d["status"] = JobStatus(d["status"])
        d["cancel_requested"] = bool(d["cancel_requested"])
        d["audio"] = bool(d["audio"])
        return JobRecord(**d)

    # --- interface -------------------------------------------------------------------------
    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        values = row_values(record)
        columns = _COLUMNS + ("search_text",)

        def body(retrying: bool) -> tuple[JobRecord, bool]:
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
            except _Tombstoned as gone:  # the insert is rolled back
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

    def _refuse_tombstoned(self, db, token: str) -> None:
        row = db.execute("SELECT * FROM job_tombstones WHERE client_token = ?", (token,)).fetchone()
        if row is not None:
            raise _Tombstoned(_pruned(row))

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
        return _pruned(row) if row is not None else None

    # --- retention ---------------------------------------------------------------------------
    _PRUNABLE = (
        "parent_id IS NULL AND status IN ('COMPLETED', 'FAILED', 'CANCELED') AND end_time < ?"
        # a failed job's other shots may still be stopping: their worker could write files yet
        " AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.parent_id = jobs.id AND c.status IN ('QUEUED', 'RUNNING'))"
        # a notification still being tried keeps its job (its body is made from the record); it waits for the next round
        " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.job_id = jobs.id AND d.state = 'pending')"
    )

    def prunable(self, ended_before: float, *, after: tuple[float, str] | None = None, limit: int = 500) -> list[tuple[float, str]]:
        where, args = self._PRUNABLE, [ended_before]
        if after is not None:
            where += " AND (end_time, id) > (?, ?)"
            args += list(after)
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
                kept = [row[c] for c in _TOMBSTONE_COLUMNS[:-2]] + [now, row["storage_uri"]]
                # ON CONFLICT: a retry after a lost reply finds its own tombstone there already.
                db.execute(
                    f"INSERT INTO job_tombstones ({', '.join(_TOMBSTONE_COLUMNS)}) VALUES ({', '.join('?' * len(_TOMBSTONE_COLUMNS))})"
                    " ON CONFLICT DO NOTHING",
                    kept,
                )
                db.execute("DELETE FROM jobs WHERE parent_id = ?", (job_id,))
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
                db.execute("DELETE FROM webhook_deliveries WHERE job_id = ?", (job_id,))  # all ended: see _PRUNABLE
                return db.execute("SELECT * FROM job_tombstones WHERE id = ?", (job_id,)).fetchone()

        row = self._attempt(body)
        return _pruned(row) if row is not None else None

    def unfinished_prunes(self) -> list[PrunedJob]:
        rows = self._read([("SELECT * FROM job_tombstones WHERE storage_uri IS NOT NULL ORDER BY pruned_time, id", [])])
        return [_pruned(r) for r in rows]

    def files_pruned(self, job_id: str) -> None:
        def body(_):
            with self._tx() as db:
                db.execute("UPDATE job_tombstones SET storage_uri = NULL WHERE id = ?", (job_id,))

        self._attempt(body)

    def forget_pruned_search(self) -> None:
        """After a prune round: drop pruned jobs from a search index that is not a column's (SQLite's FTS table)."""

    def list(self, *, statuses=None, submitted_after=None, submitted_before=None, descending=True, limit=100, after=None, search=None, model_id=None):
        needle = check_search(search)
        where, args = self._where(submitted_after, submitted_before, model_id, after, descending)
        wanted = _statuses(statuses)
        if not needle:
            sql, sql_args = self._ordered("jobs.*", where, args, wanted, descending, limit)
            return [self._row(r) for r in self._read([(sql, sql_args)])]
        needle = fold_search(needle)
        order = _order_by(descending)
        # A common word fills the page from the newest jobs: look in a window of them first (its cost is
        # bounded by the page size), then ask the search index, whose cost follows the matches. Both pick
        # ids only; the rows of the page are read once, at the end.
        window, window_args = self._ordered("jobs.id, jobs.submit_time, jobs.search_text", where, args, wanted, descending, limit * self._SEARCH_WINDOW)
        page = f"SELECT * FROM jobs WHERE id IN ({{}}){order}"
        recent = page.format(f"SELECT id FROM ({window}) recent WHERE {self._CONTAINS}{order} LIMIT ?"), window_args + [needle, limit]
        matches, match_args = self._matches(needle, where + [_status_in(wanted)] if wanted else where, args + wanted)
        indexed = page.format(f"SELECT id FROM ({matches}) m{order} LIMIT ?"), match_args + [limit]
        return [self._row(r) for r in self._read([recent, indexed], enough=limit)]

    def count(self, *, statuses=None, submitted_after=None, submitted_before=None, search=None, model_id=None, cap=10_000) -> int:
        needle = check_search(search)
        where, args = self._where(submitted_after, submitted_before, model_id, None, True)
        wanted = _statuses(statuses)
        if needle:
            sql, sql_args = self._matches(fold_search(needle), where + [_status_in(wanted)] if wanted else where, args + wanted)
            sql, sql_args = f"SELECT id FROM ({sql}) m LIMIT ?", sql_args + [cap + 1]
        else:
            # A page's own query, so the same ordered index scans serve it, stopping after cap + 1 rows.
            sql, sql_args = self._ordered("jobs.submit_time, jobs.id", where, args, wanted, True, cap + 1)
        return self._read([(f"SELECT COUNT(*) AS n FROM ({sql}) counted", sql_args)])[0]["n"]

    def _read(self, statements: list[tuple[str, list]], enough: int = 0) -> list:
        """The rows of the first statement that gives at least ``enough`` (else of the last)."""

        def body(_):
            with self._conn() as db:
                for sql, args in statements:
                    rows = db.execute(sql, args).fetchall()
                    if len(rows) >= enough:
                        break
                return rows

        return self._attempt(body)

    _SEARCH_WINDOW = 20  # pages' worth of newest jobs a search looks at before it asks the index
    _CONTAINS = "instr(search_text, ?) > 0"  # search_text and the needle are both folded: an exact substring test

    @staticmethod
    def _where(submitted_after, submitted_before, model_id, after, descending) -> tuple[list[str], list]:
        where, args = ["parent_id IS NULL"], []  # shot units are part of their job, never listed
        # One bound on each side: with a cursor and a time limit on the same side, a planner bounds its
        # index scan by one of them and filters by the other, reading every row in between.
        if after is not None:
            if descending:
                if submitted_before is not None and submitted_before <= after[0]:
                    after = None
                else:
                    submitted_before = None
            elif submitted_after is not None and submitted_after >= after[0]:
                after = None
            else:
                submitted_after = None
        if submitted_after is not None:
            where.append("submit_time > ?")
            args.append(submitted_after)
        if submitted_before is not None:
            where.append("submit_time < ?")
            args.append(submitted_before)
        if model_id:
            where.append("model_id = ?")
            args.append(model_id)
        if after is not None:
            where.append("(submit_time, id) < (?, ?)" if descending else "(submit_time, id) > (?, ?)")
            args += list(after)
        return where, args

    # PostgreSQL plans a bare UNION ALL under ORDER BY ... LIMIT as a sort of every matching row;
    # a LIMIT in each branch makes it merge the branches' ordered index scans. SQLite merges either way.
    _LIMIT_EACH_BRANCH = False

    def _ordered(self, columns, where, args, wanted, descending, limit) -> tuple[str, list]:
        """A page in (submit_time, id) order read from an index in that order, stopping after ``limit`` rows."""
        order = _order_by(descending)
        if len(wanted) < 2:
            where, args = (where + ["status = ?"], args + wanted) if wanted else (where, args)
            return f"SELECT {columns} FROM jobs WHERE {' AND '.join(where)}{order} LIMIT ?", args + [limit]
        # Several statuses (Bedrock's InProgress, Failed): an ordered scan of each, merged.
        branch = f"SELECT {columns} FROM jobs WHERE {' AND '.join(where)} AND status = ?"
        branch_args = [args + [s] for s in wanted]
        if self._LIMIT_EACH_BRANCH:
            branch = f"({branch}{order} LIMIT ?)"
            branch_args = [a + [limit] for a in branch_args]
        sql = " UNION ALL ".join([branch] * len(wanted)) + f"{order} LIMIT ?"
        return sql, [a for b in branch_args for a in b] + [limit]

    def _matches(self, needle: str, where: list[str], args: list) -> tuple[str, list]:
        """(id, submit_time) of every job whose search_text contains ``needle``, found through the search index."""
        raise NotImplementedError

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
        fenced, fence_args = _fenced(fence)

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
        fenced, fence_args = _fenced(fence)

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
        cond = "id = ? AND status IN ('QUEUED', 'RUNNING')" + (" AND worker_id = ?" if worker_id is not None else "") + _fenced(fence)[0]

        def body(_):
            now = time.time()
            args: list[Any] = [status.value, failure_message, now, now, status.value.lower()]
            args += [json.dumps(metadata)] if metadata is not None else []
            args += [job_id] + ([worker_id] if worker_id is not None else []) + _fenced(fence)[1]
            with self._tx() as db:
                self._lock_parent_of(db, job_id)  # shots finishing together settle their job one at a time
                row = db.execute(f"UPDATE jobs SET {sets} WHERE {cond} RETURNING parent_id", args).fetchone()
                if row is not None and row["parent_id"] is not None:
                    self._settle(db, row["parent_id"], now)
            return row is not None

        return self._attempt(body)

    def retry(self, job_id: str, worker_id: str, reason: str, *, fence: int | None = None) -> None:
        """Put a claimed job back in the queue (its attempt count stays, so retries are bounded)."""

        fenced, fence_args = _fenced(fence)

        def body(_):
            with self._tx() as db:
                db.execute(
                    "UPDATE jobs SET status = 'QUEUED', worker_id = NULL, lease_until = NULL, progress = 0, stage = ?,"
                    f" last_modified = ? WHERE id = ? AND worker_id = ? AND status = 'RUNNING'{fenced}",
                    [f"retrying after: {reason}"[:500], time.time(), job_id, worker_id, *fence_args],
                )
                self._announce(db)

        self._attempt(body)

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

    def split(self, parent_id: str, worker_id: str, shots: list[JobRecord], *, fence: int | None = None) -> bool:
        fenced, fence_args = _fenced(fence)

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
                        f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                        [values[c] for c in _COLUMNS],
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

    # --- webhook deliveries: the outbox the jobs_webhooks trigger writes (webhooks.py sends them) ---
    _SKIP_LOCKED = ""  # PostgreSQL: FOR UPDATE SKIP LOCKED, so dispatchers never wait for each other's claims

    def _announce_webhooks(self, db) -> None:
        """Tell dispatchers elsewhere that a delivery is due (on commit; the trigger does it for new ones)."""

    def relax_commits(self) -> None:
        """Let this thread's commits skip the wait for the disk (webhook dispatchers: a claim or an
        attempt's record lost to a power cut only means a delivery is sent again, with its same id)."""

    def _relaxed(self, db) -> None:
        """Let this transaction's commit skip the wait for the disk (a dispatcher's claim or record: see relax_commits)."""

    def claim_delivery(self, owner: str, lease_s: float, keys: list[str]) -> dict[str, Any] | None:
        """Take the delivery due first that is signed with one of ``keys`` for ``lease_s`` (counting an attempt), or None.

        ``owner`` names this one claim: every later write about it names it too, so a dispatcher
        whose lease ran out (frozen, killed) can never record over the attempt that followed."""
        if not keys:
            return None
        due = (
            "SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt <= ? AND (lease_until IS NULL OR lease_until < ?)"
            f" AND key IN ({', '.join('?' * len(keys))}) ORDER BY next_attempt, created LIMIT 1{self._SKIP_LOCKED}"
        )

        def body(retrying: bool):
            now = time.time()
            with self._tx() as db:
                if retrying:  # the reply to an earlier try may have been lost after its commit: that claim is ours
                    row = db.execute("SELECT * FROM webhook_deliveries WHERE owner = ?", (owner,)).fetchone()
                    if row is not None:
                        return row
                self._relaxed(db)
                return db.execute(
                    f"UPDATE webhook_deliveries SET owner = ?, lease_until = ?, attempts = attempts + 1 WHERE id = ({due}) RETURNING *",
                    [owner, now + lease_s, now, now, *keys],
                ).fetchone()

        row = self._attempt(body)
        return _delivery(row) if row is not None else None

    def next_delivery_time(self, keys: list[str]) -> float | None:
        """When the next pending delivery signed with one of ``keys`` is due (None: none is pending)."""
        if not keys:
            return None

        def body(_):
            with self._conn() as db:
                return db.execute(
                    f"SELECT MIN(next_attempt) AS t FROM webhook_deliveries WHERE state = 'pending' AND key IN ({', '.join('?' * len(keys))})", keys
                ).fetchone()

        return self._attempt(body)["t"]

    def end_delivery_attempt(self, delivery_id: str, owner: str, *, state: str, next_attempt: float, code: int | None, error: str | None,
                             history: list, body: str | None = None) -> bool:
        """Record how an attempt went: ``state`` pending (try again at ``next_attempt``), delivered or failed.

        ``body`` is kept on the first attempt that made one; every later attempt sends it unchanged."""

        def run(_):
            now = time.time()
            with self._tx() as db:
                self._relaxed(db)
                row = db.execute(
                    "UPDATE webhook_deliveries SET state = ?, next_attempt = ?, lease_until = NULL, owner = NULL, last_code = ?,"
                    " last_error = ?, history = ?, ended = ?, body = COALESCE(body, ?) WHERE id = ? AND owner = ? RETURNING id",
                    (state, next_attempt, code, error, json.dumps(history), None if state == "pending" else now, body, delivery_id, owner),
                ).fetchone()
            return row is not None

        return self._attempt(run)

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """A job's deliveries, oldest first (their bodies left out)."""

        def body(_):
            with self._conn() as db:
                return db.execute(f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE job_id = ? ORDER BY created, id", (job_id,)).fetchall()

        return [_delivery(r) for r in self._attempt(body)]

    def delivery(self, delivery_id: str) -> dict[str, Any] | None:
        def body(_):
            with self._conn() as db:
                return db.execute("SELECT * FROM webhook_deliveries WHERE id = ?", (delivery_id,)).fetchone()

        row = self._attempt(body)
        return _delivery(row) if row is not None else None

    def retry_deliveries(self, ref: str) -> list[str]:
        """Send again the delivery ``ref`` names (whatever its state), or every failed delivery of job ``ref``; their ids.

        A delivery sent again keeps its id and body (receivers deduplicate by webhook-id) and gets
        the whole retry window again, counted from now."""

        def body(_):
            now = time.time()
            with self._tx() as db:
                rows = db.execute(
                    "UPDATE webhook_deliveries SET state = 'pending', next_attempt = ?, ended = NULL, retried = ?"
                    " WHERE (id = ? AND (state <> 'pending' OR next_attempt > ?)) OR (job_id = ? AND state = 'failed') RETURNING id",
                    (now, now, ref, now, ref),
                ).fetchall()
                if rows:
                    self._announce_webhooks(db)
            return [r["id"] for r in rows]

        return self._attempt(body)

    def listen(self, wake: Callable[[], None], stop: threading.Event, channel: str = CHANNEL) -> None:
        """Call ``wake`` whenever another process makes a job claimable, until ``stop`` is set.

        ``channel`` WEBHOOK_CHANNEL listens for new webhook deliveries instead. Stores without
        notifications return at once; their workers look again every second."""


class SQLiteJobStore(SQLJobStore):
    """The embedded job log: one SQLite file (WAL), one connection per thread, serial writes.

    ``synchronous=FULL``: a commit is on disk before it returns, so an accepted job survives a
    power cut too, not only a killed process (WAL with NORMAL could lose the last commits then).
    A process stopped (SIGSTOP) inside a write transaction holds the whole file: every write here
    is one transaction of a few statements and no other work, and others wait ``busy_timeout``
    (10 s) before they report the log as locked; see docs/architecture.md.
    """

    migrations = SQLITE_MIGRATIONS
    BUSY_TIMEOUT_MS = 10_000

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = Path(path)
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise JobStoreError(f"the job log {self.path} cannot be opened: {reason}; set REELFORGE_HOME to a writable folder") from None

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self.BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA busy_timeout={self.BUSY_TIMEOUT_MS}")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _conn(self):
        yield self._db()

    def relax_commits(self) -> None:
        # WAL with NORMAL: a commit survives the process being killed, not a power cut; the job
        # rows that matter (a status change and its outbox row) are written by other threads, FULL.
        self._db().execute("PRAGMA synchronous=NORMAL")

    @contextlib.contextmanager
    def _tx(self):
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _attempt(self, body):
        try:
            return body(False)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise JobStoreError(f"the job log {self.path} is locked by another process (waited {self.BUSY_TIMEOUT_MS // 1000} s); try again") from None
            raise


    _fts = False  # whether jobs_search, the trigram index of search_text, exists

    def _prepare_search(self, db) -> None:
        self._fts = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'jobs_search'").fetchone() is not None
        if self._fts:
            return
        try:
            # case_sensitive 1: search_text is folded already, so matching is exact, as LIKE is on PostgreSQL.
            db.execute("CREATE VIRTUAL TABLE jobs_search USING fts5(job_id UNINDEXED, text, tokenize='trigram case_sensitive 1')")
        except sqlite3.OperationalError as exc:  # no FTS5, or SQLite older than 3.34 (no trigram tokenizer)
            log.warning("search in the job log reads every job: SQLite %s cannot build its index (%s)", sqlite3.sqlite_version, exc)
            return
        db.execute("INSERT INTO jobs_search (job_id, text) SELECT id, search_text FROM jobs WHERE search_text IS NOT NULL")
        self._fts = True

    def _index_search(self, db, job_id: str, text: str) -> None:
        if self._fts:
            db.execute("INSERT INTO jobs_search (job_id, text) VALUES (?, ?)", (job_id, text))

    def forget_pruned_search(self) -> None:
        # job_id is an UNINDEXED column: one pass after a round, not a scan per pruned job. Until
        # then a search's join with jobs drops the pruned jobs' entries.
        if self._fts:
            with self._tx() as db:
                db.execute("DELETE FROM jobs_search WHERE job_id NOT IN (SELECT id FROM jobs)")

    def _matches(self, needle: str, where: list[str], args: list) -> tuple[str, list]:
        if not self._fts:
            return f"SELECT id, submit_time FROM jobs WHERE {self._CONTAINS} AND {' AND '.join(where)}", [needle] + args
        # CROSS JOIN fixes the order: the index's matches first, then their rows; never the log checked against them.
        phrase = '"' + needle.replace('"', '""') + '"'  # one FTS5 string, in which every character is literal
        sql = "SELECT jobs.id, jobs.submit_time FROM jobs_search CROSS JOIN jobs ON jobs.id = jobs_search.job_id"
        return f"{sql} WHERE jobs_search MATCH ? AND {' AND '.join(where)}", [phrase] + args


def _postgres_search_text(db) -> None:
    def write(db, ids, texts):
        db.execute("UPDATE jobs SET search_text = v.text FROM unnest(?::text[], ?::text[]) AS v(id, text) WHERE jobs.id = v.id", (ids, texts))

    _add_search_text(db, write)


POSTGRES_MIGRATIONS = [
    # 1: the job log (times as epoch seconds in double precision; JSON kept as text, like SQLite)
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY, arn TEXT NOT NULL, model_id TEXT NOT NULL, model_input TEXT NOT NULL,
        output_uri TEXT NOT NULL, storage_uri TEXT NOT NULL, client_token TEXT UNIQUE, fingerprint TEXT NOT NULL,
        status TEXT NOT NULL, progress DOUBLE PRECISION NOT NULL, stage TEXT NOT NULL,
        submit_time DOUBLE PRECISION NOT NULL, start_time DOUBLE PRECISION, end_time DOUBLE PRECISION,
        last_modified DOUBLE PRECISION NOT NULL, failure_message TEXT, attempts INTEGER NOT NULL,
        cancel_requested INTEGER NOT NULL, worker_id TEXT, lease_until DOUBLE PRECISION,
        output_config TEXT NOT NULL, tags TEXT NOT NULL, metadata TEXT NOT NULL,
        parent_id TEXT, shot_index INTEGER
    );
    CREATE INDEX jobs_status_submit ON jobs (status, submit_time);
    CREATE INDEX jobs_submit ON jobs (submit_time, id);
    CREATE INDEX jobs_parent ON jobs (parent_id)
    """,
    # 2: fencing, as SQLite's 3
    """
    ALTER TABLE jobs ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN counted_fence INTEGER NOT NULL DEFAULT 0;
    UPDATE jobs SET fence = attempts, counted_fence = attempts
    """,
    # 3: listings cost the same at a million jobs as at a thousand
    _LISTING_INDEXES,
    # 4: search looks at prompt and shot texts only (its trigram index: PostgresJobStore._prepare_search)
    _postgres_search_text,
    # 5: wires, as SQLite's 6
    """
    ALTER TABLE jobs ADD COLUMN wire TEXT NOT NULL DEFAULT 'bedrock';
    ALTER TABLE jobs ADD COLUMN wire_request TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE jobs ADD COLUMN deleted_time DOUBLE PRECISION
    """,
    # 6: retention, as SQLite's 7
    _tombstones("DOUBLE PRECISION"),
    # 7: webhooks, as SQLite's 8
    _postgres_webhooks,
    # 8: sound kept or dropped, as SQLite's 9
    "ALTER TABLE jobs ADD COLUMN audio INTEGER NOT NULL DEFAULT 1",
    # 9: engines fixed at submit, as SQLite's 10
    _engines_fixed,
    # 10: model affinity, as SQLite's 11
    _worker_engines("DOUBLE PRECISION"),
]




class _PgConnection:
    """A psycopg connection that takes the stores' ``?`` placeholders and returns dict rows."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql: str, args=()):
        return self.conn.execute(sql.replace("?", "%s"), tuple(args))


_pools: dict[str, Any] = {}
_pools_lock = threading.Lock()

# Session settings of every pooled connection: no statement waits long on a lock, and a session
# that sits inside a transaction (its process frozen or cut off) is ended by the server, which
# releases its locks. Our transactions hold no work but SQL, so neither limit touches them.
LOCK_TIMEOUT_MS = 5_000
IDLE_IN_TRANSACTION_MS = 10_000


def _configure(conn) -> None:
    conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
    conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")


def _pool(url: str):
    """The process's one connection pool for ``url`` (lease keepers, workers and requests share it)."""
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None or pool.closed:
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool

            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=int(os.environ.get("REELFORGE_DB_POOL_SIZE") or 20),
                kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 5, "keepalives": 1, "keepalives_idle": 30},
                configure=_configure,
                timeout=5,  # for a free connection; callers retry (``_attempt``) within their own bound
                name="reelforge",
                open=False,
            )
            pool.open(wait=False)
            _pools[url] = pool
        return pool


def close_pools(matching: str = "") -> None:
    """Close this process's connection pools (those whose URL contains ``matching``)."""
    with _pools_lock:
        for url in [u for u in _pools if matching in u]:
            _pools.pop(url).close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresJobStore(SQLJobStore):
    """The job log in PostgreSQL, for stateless servers and workers on many machines."""

    migrations = POSTGRES_MIGRATIONS
    _CLAIM_NEXT = _claim_next(recheck=" AND status = 'QUEUED'", lock=" FOR UPDATE SKIP LOCKED")
    _LIMIT_EACH_BRANCH = True

    def __init__(self, url: str):
        super().__init__()
        try:
            import psycopg  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError:
            raise JobStoreError("the PostgreSQL job store needs psycopg and psycopg-pool: pip install 'reelforge[postgres]'") from None
        self.url = url
        self.pool = _pool(url)
        self._migrate_with_retry()

    def _migrate_with_retry(self) -> None:
        self._attempt(lambda _: self._migrate())

    def _migration_lock(self, db) -> None:
        db.execute("SET LOCAL lock_timeout = 0")  # a migration may wait for another process's migration
        db.execute("SELECT pg_advisory_xact_lock(4242)")  # one migrator at a time when many workers start

    @contextlib.contextmanager
    def _conn(self):
        with self.pool.connection() as conn:
            yield _PgConnection(conn)

    @contextlib.contextmanager
    def _tx(self):
        with self.pool.connection() as conn, conn.transaction():
            yield _PgConnection(conn)

    def _attempt(self, body):
        """Run ``body``, retrying on a fresh connection while the server is unreachable or a lock is busy.

        Safe because every statement here can be repeated: writes are guarded by the state they
        change (and the fence), ``create`` inserts by a fixed id, and ``claim`` first looks for a
        claim of its own whose reply was lost. After ``db_retry_s`` the caller gets JobStoreError
        (the server answers 503 with it).
        """
        import psycopg

        deadline = time.monotonic() + self.timings.db_retry_s
        pause = self.timings.backoff_s
        retrying = False
        while True:
            try:
                return body(retrying)
            except psycopg.OperationalError as exc:
                if time.monotonic() + pause > deadline:
                    log.error("job log unavailable: %s", _first_line(exc))
                    raise JobStoreError(f"the PostgreSQL job log is unavailable: {_first_line(exc)}") from None
                log.warning("job log statement failed (%s); retrying in %.1f s", _first_line(exc), pause)
            time.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, self.timings.backoff_max_s)
            retrying = True

    def _lock(self, db, job_id: str) -> None:
        db.execute("SELECT id FROM jobs WHERE id = ? FOR UPDATE", (job_id,))

    def _prepare_search(self, db) -> None:
        """Index search_text with pg_trgm; install it in schema public when this role may, else searches scan."""
        import psycopg

        if db.execute("SELECT to_regclass('jobs_search_trgm') AS i").fetchone()["i"] is not None:
            return
        find = "SELECT n.nspname AS s FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
        found = db.execute(find).fetchone()
        if found is None:
            db.execute("SAVEPOINT trgm")
            try:
                db.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
                db.execute("RELEASE SAVEPOINT trgm")
            except psycopg.Error as exc:
                db.execute("ROLLBACK TO SAVEPOINT trgm")
                log.warning(
                    "search in the job log reads every job: the pg_trgm extension is not installed and this role "
                    "cannot install it (%s); run CREATE EXTENSION pg_trgm as a database owner and restart", _first_line(exc)
                )
                return
            found = db.execute(find).fetchone()
        opclass = '"' + found["s"].replace('"', '""') + '".gin_trgm_ops'
        db.execute(f"CREATE INDEX jobs_search_trgm ON jobs USING gin (search_text {opclass}) WHERE parent_id IS NULL")

    _CONTAINS = "strpos(search_text, ?) > 0"

    def _matches(self, needle: str, where: list[str], args: list) -> tuple[str, list]:
        # OFFSET 0 keeps the planner from folding this into the caller's ORDER BY ... LIMIT, where it may
        # choose an ordered scan of the whole log over the trigram index. LIKE's escape is backslash here.
        pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return f"SELECT id, submit_time FROM jobs WHERE search_text LIKE ? AND {' AND '.join(where)} OFFSET 0", [pattern] + args

    def _try_lock(self, db, job_id: str) -> bool:
        row = db.execute("SELECT id FROM jobs WHERE id = ? FOR UPDATE SKIP LOCKED", (job_id,)).fetchone()
        if row is not None:
            return True
        # Held by another session (or gone): recovery leaves it for a later round.
        return db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None

    def _announce(self, db) -> None:
        db.execute(f"NOTIFY {CHANNEL}")

    _SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"

    def _relaxed(self, db) -> None:
        db.execute("SET LOCAL synchronous_commit = off")  # this transaction only: the pooled connection keeps its setting

    def _announce_webhooks(self, db) -> None:
        db.execute(f"NOTIFY {WEBHOOK_CHANNEL}")

    def listen(self, wake: Callable[[], None], stop: threading.Event, channel: str = CHANNEL) -> None:
        import psycopg

        pause = self.timings.backoff_s
        while not stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {channel}")
                    pause = self.timings.backoff_s
                    wake()  # anything announced while we were not listening
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            wake()
            except psycopg.Error as exc:
                log.info("job notifications interrupted (%s); listening again in %.1f s", _first_line(exc), pause)
                stop.wait(pause)
                pause = min(pause * 2, self.timings.backoff_max_s)


def open_store(location: str | os.PathLike) -> SQLJobStore:
    """A job store from a path (SQLite) or a postgresql:// URL."""
    text = os.fspath(location)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresJobStore(text)
    return SQLiteJobStore(text)

"""SQL implementations of the job log: SQLite (embedded default) and PostgreSQL (many machines).

Both run the same statements (written with ``?`` placeholders); they differ in connections,
transactions, column types and in how a worker claims a job: SQLite serialises writers with
``BEGIN IMMEDIATE``, PostgreSQL uses ``FOR UPDATE SKIP LOCKED`` and row locks on the job whose
shots are settling, so many workers on many machines never take the same job.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from .errors import ConflictError, JobNotFoundError, StorageError
from .jobs import _COLUMNS, _JSON_COLUMNS, JobRecord, JobStatus, JobStore

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
]



def _column_values(record: JobRecord) -> dict[str, Any]:
    values = record.to_dict()
    for c in _JSON_COLUMNS:
        values[c] = json.dumps(values[c], ensure_ascii=False)  # readable text, so search finds "café"
    values["cancel_requested"] = int(values["cancel_requested"])
    return values


class SQLJobStore(JobStore):
    """The job log in SQL; subclasses supply connections, transactions and their dialect's few differences."""

    migrations: list[str] = []

    def _migration_lock(self, db) -> None:
        """Keep two processes from migrating at once (SQLite's immediate transaction already does)."""

    def _migrate(self) -> None:
        with self._tx() as db:
            self._migration_lock(db)
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL)")
            current = db.execute("SELECT MAX(version) AS v FROM schema_migrations").fetchone()["v"] or 0
            for version, sql in enumerate(self.migrations, start=1):
                if version > current:
                    for stmt in filter(str.strip, sql.split(";")):
                        db.execute(stmt)
                    db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))

    def _db(self):
        raise NotImplementedError

    def _tx(self):
        raise NotImplementedError

    def _lock(self, db, job_id: str) -> None:
        """Hold ``job_id``'s row until the transaction ends (no-op where transactions are serial)."""

    def _lock_parent_of(self, db, job_id: str) -> str | None:
        """Lock the job a shot unit belongs to, before the unit's own row: one lock order everywhere."""
        row = db.execute("SELECT parent_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
        parent = row["parent_id"] if row is not None else None
        if parent is not None:
            self._lock(db, parent)
        return parent

    # A shot unit is only worth running while its job is still waiting for shots.
    _CLAIM_NEXT = (
        "SELECT id FROM jobs j WHERE status = 'QUEUED' AND (parent_id IS NULL OR EXISTS"
        " (SELECT 1 FROM jobs p WHERE p.id = j.parent_id AND p.status = 'RUNNING'))"
        " ORDER BY submit_time, id LIMIT 1"
    )

    @staticmethod
    def _row(row) -> JobRecord:
        d = dict(row)
        for c in _JSON_COLUMNS:
            d[c] = json.loads(d[c])
        d["status"] = JobStatus(d["status"])
        d["cancel_requested"] = bool(d["cancel_requested"])
        return JobRecord(**d)

    # --- interface -------------------------------------------------------------------------
    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        values = _column_values(record)
        with self._tx() as db:
            if record.client_token is not None:
                row = db.execute("SELECT * FROM jobs WHERE client_token = ?", (record.client_token,)).fetchone()
                if row is not None:
                    existing = self._row(row)
                    if existing.fingerprint != record.fingerprint:
                        raise ConflictError(
                            f"clientRequestToken {record.client_token!r} was already used for job {existing.id} "
                            "with a different request; use a new token for a new request"
                        )
                    return existing, False
            db.execute(
                f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                [values[c] for c in _COLUMNS],
            )
        return record, True

    def get(self, job_id: str) -> JobRecord:
        row = self._db().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        return self._row(row)

    def list(self, *, statuses=None, submitted_after=None, submitted_before=None, descending=True, limit=100, after=None, search=None, model_id=None):
        where, args = ["parent_id IS NULL"], []
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args += [s.value for s in statuses]
        if submitted_after is not None:
            where.append("submit_time > ?")
            args.append(submitted_after)
        if submitted_before is not None:
            where.append("submit_time < ?")
            args.append(submitted_before)
        if model_id:
            where.append("model_id = ?")
            args.append(model_id)
        if search:
            where.append("LOWER(model_input) LIKE LOWER(?) ESCAPE '\\'")  # case-blind on both databases
            args.append("%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if after is not None:
            where.append("(submit_time, id) < (?, ?)" if descending else "(submit_time, id) > (?, ?)")
            args += list(after)
        order = "DESC" if descending else "ASC"
        sql = "SELECT * FROM jobs WHERE " + " AND ".join(where)
        sql += f" ORDER BY submit_time {order}, id {order} LIMIT ?"
        return [self._row(r) for r in self._db().execute(sql, args + [limit])]

    def count(self, *, statuses=None, submitted_after=None, submitted_before=None, search=None, model_id=None, cap=10_000) -> int:
        """How many jobs ``list`` would find with these filters, counted up to ``cap`` + 1."""
        where, args = ["parent_id IS NULL"], []
        for sql, value in (("submit_time > ?", submitted_after), ("submit_time < ?", submitted_before), ("model_id = ?", model_id)):
            if value is not None:
                where.append(sql)
                args.append(value)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args += [s.value for s in statuses]
        if search:
            where.append("LOWER(model_input) LIKE LOWER(?) ESCAPE '\\'")
            args.append("%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        sql = f"SELECT COUNT(*) AS n FROM (SELECT 1 FROM jobs WHERE {' AND '.join(where)} LIMIT ?) AS capped"
        return self._db().execute(sql, args + [cap + 1]).fetchone()["n"]

    def claim(self, worker_id: str, lease_s: float) -> JobRecord | None:
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "UPDATE jobs SET status = 'RUNNING', worker_id = ?, lease_until = ?, attempts = attempts + 1,"
                " start_time = COALESCE(start_time, ?), last_modified = ?, stage = 'starting'"
                f" WHERE id = ({self._CLAIM_NEXT}) RETURNING *",
                (worker_id, now + lease_s, now, now),
            ).fetchone()
        return self._row(row) if row is not None else None

    def heartbeat(self, job_id, worker_id, lease_s, progress, stage) -> bool:
        now = time.time()
        with self._tx() as db:
            self._lock_parent_of(db, job_id)
            row = db.execute(
                "UPDATE jobs SET lease_until = ?, progress = ?, stage = ?, last_modified = ?"
                " WHERE id = ? AND worker_id = ? AND status = 'RUNNING' RETURNING cancel_requested, parent_id",
                (now + lease_s, progress, stage, now, job_id, worker_id),
            ).fetchone()
            if row is not None and row["parent_id"] is not None:
                self._roll_up(db, row["parent_id"], now)
        # A job whose row we no longer own (recovered elsewhere) must stop too.
        return row is None or bool(row["cancel_requested"])

    def finish(self, job_id, worker_id, status, *, failure_message=None, metadata=None) -> None:
        now = time.time()
        sets = "status = ?, failure_message = ?, end_time = ?, last_modified = ?, lease_until = NULL, stage = ?"
        args: list[Any] = [status.value, failure_message, now, now, status.value.lower()]
        if status is JobStatus.COMPLETED:
            sets += ", progress = 1.0"
        if metadata is not None:
            sets += ", metadata = ?"
            args.append(json.dumps(metadata))
        cond = "id = ? AND status IN ('QUEUED', 'RUNNING')"
        args.append(job_id)
        if worker_id is not None:
            cond += " AND worker_id = ?"
            args.append(worker_id)
        with self._tx() as db:
            self._lock_parent_of(db, job_id)  # shots finishing together settle their job one at a time
            row = db.execute(f"UPDATE jobs SET {sets} WHERE {cond} RETURNING parent_id", args).fetchone()
            if row is not None and row["parent_id"] is not None:
                self._settle(db, row["parent_id"], now)

    def retry(self, job_id: str, worker_id: str, reason: str) -> None:
        """Put a claimed job back in the queue (its attempt count stays, so retries are bounded)."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET status = 'QUEUED', worker_id = NULL, lease_until = NULL, progress = 0, stage = ?,"
                " last_modified = ? WHERE id = ? AND worker_id = ? AND status = 'RUNNING'",
                (f"retrying after: {reason}"[:500], now, job_id, worker_id),
            )

    def request_cancel(self, job_id: str) -> JobRecord:
        now = time.time()
        with self._tx() as db:
            # A shot unit is part of a job: canceling it cancels the job, which the caller gets back.
            job_id = self._lock_parent_of(db, job_id) or job_id
            self._lock(db, job_id)
            db.execute(
                "UPDATE jobs SET status = 'CANCELED', stage = 'canceled', end_time = ?, last_modified = ?,"
                " failure_message = 'Canceled before it started.' WHERE id = ? AND status = 'QUEUED'",
                (now, now, job_id),
            )
            db.execute("UPDATE jobs SET cancel_requested = 1, last_modified = ? WHERE id = ? AND status = 'RUNNING'", (now, job_id))
            db.execute(
                "UPDATE jobs SET status = 'CANCELED', stage = 'canceled', end_time = ?, last_modified = ?,"
                " failure_message = 'Canceled.' WHERE parent_id = ? AND status = 'QUEUED'",
                (now, now, job_id),
            )
            db.execute("UPDATE jobs SET cancel_requested = 1 WHERE parent_id = ? AND status = 'RUNNING'", (job_id,))
            self._settle(db, job_id, now)
        return self.get(job_id)

    def release(self, worker_id: str) -> list[str]:
        now = time.time()
        with self._tx() as db:
            rows = db.execute(
                "UPDATE jobs SET status = 'QUEUED', worker_id = NULL, lease_until = NULL, progress = 0,"
                " stage = 'queued again: its worker stopped', last_modified = ?"
                " WHERE (worker_id = ? OR worker_id LIKE ?) AND status = 'RUNNING' RETURNING id",
                (now, worker_id, worker_id + "/%"),
            ).fetchall()
        return [r["id"] for r in rows]

    def split(self, parent_id: str, worker_id: str, shots: list[JobRecord]) -> bool:
        now = time.time()
        with self._tx() as db:
            self._lock(db, parent_id)
            owned = db.execute(
                # The split is bookkeeping, not an attempt: the join that follows counts as the first.
                "UPDATE jobs SET worker_id = NULL, lease_until = NULL, attempts = 0, stage = ?, last_modified = ?"
                " WHERE id = ? AND worker_id = ? AND status = 'RUNNING' RETURNING cancel_requested",
                (f"rendering {len(shots)} shots", now, parent_id, worker_id),
            ).fetchone()
            if owned is None:
                return False  # another worker has the job now (or it ended): its shots are not ours to add
            for rec in shots:
                if owned["cancel_requested"]:
                    rec.status, rec.stage, rec.end_time, rec.failure_message = JobStatus.CANCELED, "canceled", now, "Canceled."
                values = _column_values(rec)
                db.execute(
                    f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    [values[c] for c in _COLUMNS],
                )
            self._settle(db, parent_id, now)
        return True

    def children(self, parent_id: str) -> list[JobRecord]:
        rows = self._db().execute("SELECT * FROM jobs WHERE parent_id = ? ORDER BY shot_index", (parent_id,))
        return [self._row(r) for r in rows]

    def settle(self, parent_id: str) -> None:
        with self._tx() as db:
            self._lock(db, parent_id)
            self._settle(db, parent_id, time.time())

    @staticmethod
    def _roll_up(db: sqlite3.Connection, parent_id: str, now: float) -> None:
        db.execute(
            "UPDATE jobs SET progress = 0.97 * (SELECT AVG(progress) FROM jobs WHERE parent_id = ?),"
            " stage = 'rendering shots: ' || (SELECT COUNT(*) FROM jobs WHERE parent_id = ? AND status = 'COMPLETED')"
            " || '/' || (SELECT COUNT(*) FROM jobs WHERE parent_id = ?) || ' done', last_modified = ?"
            " WHERE id = ? AND status = 'RUNNING' AND worker_id IS NULL",
            (parent_id, parent_id, parent_id, now, parent_id),
        )

    def _settle(self, db: sqlite3.Connection, parent_id: str, now: float) -> None:
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
        else:
            db.execute("UPDATE jobs SET status = 'CANCELED', stage = 'canceled', end_time = ?, last_modified = ?, failure_message = 'Canceled.' WHERE id = ?", (now, now, parent_id))

    def recover(self, max_attempts: int, is_dead=None) -> list[str]:
        now = time.time()
        ids = []
        with self._tx() as db:
            # A job waiting for its shots holds no worker and no lease: its shots are what recover.
            rows = db.execute("SELECT id, worker_id, lease_until, attempts, cancel_requested, parent_id FROM jobs WHERE status = 'RUNNING' AND worker_id IS NOT NULL").fetchall()
            for r in rows:
                gone = (r["lease_until"] or 0) < now or (is_dead is not None and is_dead(r["worker_id"]))
                if not gone:
                    continue
                ids.append(r["id"])
                if r["cancel_requested"]:
                    db.execute("UPDATE jobs SET status = 'CANCELED', stage = 'canceled', end_time = ?, last_modified = ?, failure_message = 'Canceled.' WHERE id = ?", (now, now, r["id"]))
                elif r["attempts"] >= max_attempts:
                    msg = f"The worker running this job stopped {r['attempts']} times; giving up. See the server log."
                    db.execute("UPDATE jobs SET status = 'FAILED', stage = 'failed', end_time = ?, last_modified = ?, failure_message = ? WHERE id = ?", (now, now, msg, r["id"]))
                else:
                    db.execute("UPDATE jobs SET status = 'QUEUED', stage = 'requeued after worker stopped', worker_id = NULL, lease_until = NULL, progress = 0, last_modified = ? WHERE id = ?", (now, r["id"]))
                if r["parent_id"] is not None:
                    self._lock(db, r["parent_id"])
                    self._settle(db, r["parent_id"], now)
        return ids

    def iter_all(self) -> Iterator[JobRecord]:
        for r in self._db().execute("SELECT * FROM jobs ORDER BY submit_time"):
            yield self._row(r)


class SQLiteJobStore(SQLJobStore):
    """The embedded job log: one SQLite file (WAL), one connection per thread, serial writes."""

    migrations = SQLITE_MIGRATIONS

    def __init__(self, path: str | os.PathLike):
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
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    class _Tx:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, *_):
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self) -> "_Tx":
        return self._Tx(self._db())


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
]


class _PgConnection:
    """A psycopg connection that takes the stores' ``?`` placeholders and returns dict rows."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql: str, args=()):
        return self.conn.execute(sql.replace("?", "%s"), tuple(args))


class PostgresJobStore(SQLJobStore):
    """The job log in PostgreSQL, for stateless servers and workers on many machines."""

    migrations = POSTGRES_MIGRATIONS
    _CLAIM_NEXT = SQLJobStore._CLAIM_NEXT + " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise JobStoreError("the PostgreSQL job store needs psycopg: pip install 'reelforge[postgres]'") from None
        self.url = url
        self._local = threading.local()
        self._migrate()

    def _migration_lock(self, db) -> None:
        db.execute("SELECT pg_advisory_xact_lock(4242)")  # one migrator at a time when many workers start

    def _db(self) -> _PgConnection:
        db = getattr(self._local, "db", None)
        if db is None or db.conn.closed:
            import psycopg
            from psycopg.rows import dict_row

            try:
                conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row)
            except psycopg.OperationalError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise JobStoreError(f"cannot reach the PostgreSQL job store: {first}") from None
            db = self._local.db = _PgConnection(conn)
        return db

    def _tx(self):
        store = self

        class _Tx:
            def __enter__(self):
                self.db = store._db()
                self.tx = self.db.conn.transaction()
                self.tx.__enter__()
                return self.db

            def __exit__(self, *exc):
                return self.tx.__exit__(*exc)

        return _Tx()

    def _lock(self, db, job_id: str) -> None:
        db.execute("SELECT id FROM jobs WHERE id = ? FOR UPDATE", (job_id,))

    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        import psycopg

        try:
            return super().create(record)
        except psycopg.errors.UniqueViolation:
            # Two starts with one token raced; the other one won, so this is a repeat of it.
            return super().create(record)


class JobStoreError(StorageError):
    """The job log cannot be reached or used."""


def open_store(location: str | os.PathLike) -> SQLJobStore:
    """A job store from a path (SQLite) or a postgresql:// URL."""
    text = os.fspath(location)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresJobStore(text)
    return SQLiteJobStore(text)

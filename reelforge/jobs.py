"""Jobs: their status, their record, and the job log (JobStore) that keeps them.

The embedded default is SQLite in the user data dir; the store interface is what a PostgreSQL
store implements for many machines. Every state change is one statement, so two workers can
never both claim a job, and a job recorded here is never lost: a worker that dies leaves a lease
that expires, and the job is run again or failed with a message.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import secrets
import sqlite3
import string
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import ConflictError, JobNotFoundError


class JobStatus(str, enum.Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def done(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)

    @property
    def bedrock(self) -> str:
        """Bedrock's status word; a canceled job reads as Failed there, the only terminal word left."""
        return BEDROCK_STATUS[self]

    @classmethod
    def from_bedrock(cls, word: str) -> list["JobStatus"]:
        return [s for s, w in BEDROCK_STATUS.items() if w == word]


BEDROCK_STATUS = {
    JobStatus.QUEUED: "InProgress",
    JobStatus.RUNNING: "InProgress",
    JobStatus.COMPLETED: "Completed",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELED: "Failed",
}

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_job_id() -> str:
    """12 characters of [a-z0-9], the shape of a Bedrock invocation id."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def request_fingerprint(model_id: str, model_input: Any, output: Any) -> str:
    """What must match for a repeated client token to mean the same request."""
    blob = json.dumps([model_id, model_input, output], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class JobRecord:
    id: str
    arn: str
    model_id: str
    model_input: dict[str, Any]
    output_uri: str  # what the caller sees: requested location + "/" + id
    storage_uri: str  # where the files go (differs only when a bucket is mapped to a folder)
    client_token: str | None = None
    fingerprint: str = ""
    status: JobStatus = JobStatus.QUEUED
    progress: float = 0.0
    stage: str = "queued"
    submit_time: float = field(default_factory=time.time)
    start_time: float | None = None
    end_time: float | None = None
    last_modified: float = field(default_factory=time.time)
    failure_message: str | None = None
    attempts: int = 0
    cancel_requested: bool = False
    worker_id: str | None = None
    lease_until: float | None = None
    output_config: dict[str, Any] = field(default_factory=dict)  # kmsKeyId, bucketOwner as given
    tags: list[dict[str, str]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None  # set on the shot units of a multi-shot job
    shot_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d


_JSON_COLUMNS = ("model_input", "output_config", "tags", "metadata")
_COLUMNS = tuple(JobRecord.__dataclass_fields__)

MIGRATIONS = [
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


class JobStore:
    """The job log's interface. Times are epoch seconds; every method is safe across threads."""

    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """Insert ``record``; with a known client token return the existing job and False."""
        raise NotImplementedError

    def get(self, job_id: str) -> JobRecord:
        raise NotImplementedError

    def list(
        self,
        *,
        statuses: list[JobStatus] | None = None,
        submitted_after: float | None = None,
        submitted_before: float | None = None,
        descending: bool = True,
        limit: int = 100,
        after: tuple[float, str] | None = None,
        search: str | None = None,
        model_id: str | None = None,
    ) -> list[JobRecord]:
        """Jobs in submit-time order; ``after`` is the (submit_time, id) of the last row already seen."""
        raise NotImplementedError

    def claim(self, worker_id: str, lease_s: float) -> JobRecord | None:
        """Atomically take the oldest queued job, or return None."""
        raise NotImplementedError

    def heartbeat(self, job_id: str, worker_id: str, lease_s: float, progress: float, stage: str) -> bool:
        """Renew the lease and record progress; return True when the job was asked to cancel."""
        raise NotImplementedError

    def finish(self, job_id: str, worker_id: str | None, status: JobStatus, *, failure_message: str | None = None, metadata: dict | None = None) -> None:
        raise NotImplementedError

    def request_cancel(self, job_id: str) -> JobRecord:
        raise NotImplementedError

    def retry(self, job_id: str, worker_id: str, reason: str) -> None:
        raise NotImplementedError

    def split(self, parent_id: str, worker_id: str, shots: list[JobRecord]) -> None:
        """Record the shot units of a claimed job; the job waits for them, holding no lease."""
        raise NotImplementedError

    def children(self, parent_id: str) -> list[JobRecord]:
        raise NotImplementedError

    def settle(self, parent_id: str) -> None:
        """Move a waiting job on once its shots are done: to QUEUED for joining, FAILED or CANCELED."""
        raise NotImplementedError

    def recover(self, max_attempts: int, is_dead=None) -> list[str]:
        """Requeue (or fail, past ``max_attempts``) running jobs whose worker is gone; return their ids."""
        raise NotImplementedError


class SQLiteJobStore(JobStore):
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL)")
            row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            current = row[0] or 0
            for version, sql in enumerate(MIGRATIONS, start=1):
                if version > current:
                    for stmt in filter(str.strip, sql.split(";")):
                        db.execute(stmt)
                    db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))

    # --- plumbing --------------------------------------------------------------------------
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

    @staticmethod
    def _row(row: sqlite3.Row) -> JobRecord:
        d = dict(row)
        for c in _JSON_COLUMNS:
            d[c] = json.loads(d[c])
        d["status"] = JobStatus(d["status"])
        d["cancel_requested"] = bool(d["cancel_requested"])
        return JobRecord(**d)

    # --- interface -------------------------------------------------------------------------
    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        values = record.to_dict()
        for c in _JSON_COLUMNS:
            values[c] = json.dumps(values[c])
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
            where.append("model_input LIKE ? ESCAPE '\\'")
            args.append("%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if after is not None:
            where.append("(submit_time, id) < (?, ?)" if descending else "(submit_time, id) > (?, ?)")
            args += list(after)
        order = "DESC" if descending else "ASC"
        sql = "SELECT * FROM jobs WHERE " + " AND ".join(where)
        sql += f" ORDER BY submit_time {order}, id {order} LIMIT ?"
        return [self._row(r) for r in self._db().execute(sql, args + [limit])]

    def claim(self, worker_id: str, lease_s: float) -> JobRecord | None:
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "UPDATE jobs SET status = 'RUNNING', worker_id = ?, lease_until = ?, attempts = attempts + 1,"
                " start_time = COALESCE(start_time, ?), last_modified = ?, stage = 'starting'"
                " WHERE id = (SELECT id FROM jobs WHERE status = 'QUEUED' ORDER BY submit_time, id LIMIT 1)"
                " RETURNING *",
                (worker_id, now + lease_s, now, now),
            ).fetchone()
        return self._row(row) if row is not None else None

    def heartbeat(self, job_id, worker_id, lease_s, progress, stage) -> bool:
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "UPDATE jobs SET lease_until = ?, progress = ?, stage = ?, last_modified = ?"
                " WHERE id = ? AND worker_id = ? AND status = 'RUNNING' RETURNING cancel_requested, parent_id",
                (now + lease_s, progress, stage, now, job_id, worker_id),
            ).fetchone()
            if row is not None and row[1] is not None:
                self._roll_up(db, row[1], now)
        # A job whose row we no longer own (recovered elsewhere) must stop too.
        return row is None or bool(row[0])

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
            row = db.execute(f"UPDATE jobs SET {sets} WHERE {cond} RETURNING parent_id", args).fetchone()
            if row is not None and row[0] is not None:
                self._settle(db, row[0], now)

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

    def split(self, parent_id: str, worker_id: str, shots: list[JobRecord]) -> None:
        now = time.time()
        with self._tx() as db:
            for rec in shots:
                values = rec.to_dict()
                for c in _JSON_COLUMNS:
                    values[c] = json.dumps(values[c])
                db.execute(
                    f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    [values[c] for c in _COLUMNS],
                )
            db.execute(
                "UPDATE jobs SET worker_id = NULL, lease_until = NULL, stage = ?, last_modified = ? WHERE id = ? AND worker_id = ?",
                (f"rendering {len(shots)} shots", now, parent_id, worker_id),
            )

    def children(self, parent_id: str) -> list[JobRecord]:
        rows = self._db().execute("SELECT * FROM jobs WHERE parent_id = ? ORDER BY shot_index", (parent_id,))
        return [self._row(r) for r in rows]

    def settle(self, parent_id: str) -> None:
        with self._tx() as db:
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
        elif all(s == "COMPLETED" for s in states):
            db.execute("UPDATE jobs SET status = 'QUEUED', stage = 'joining shots', progress = 0.97, last_modified = ? WHERE id = ?", (now, parent_id))
        elif "RUNNING" not in states and "QUEUED" not in states:
            db.execute("UPDATE jobs SET status = 'CANCELED', stage = 'canceled', end_time = ?, last_modified = ?, failure_message = 'Canceled.' WHERE id = ?", (now, now, parent_id))
        else:
            self._roll_up(db, parent_id, now)

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
                    self._settle(db, r["parent_id"], now)
        return ids

    def iter_all(self) -> Iterator[JobRecord]:
        for r in self._db().execute("SELECT * FROM jobs ORDER BY submit_time"):
            yield self._row(r)

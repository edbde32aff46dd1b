"""The job log in PostgreSQL: a pool per process, retries through dropped connections, LISTEN/NOTIFY."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from typing import Any, Callable

from reelforge.errors import JobStoreError
from reelforge.jobs.outbox import WEBHOOK_CHANNEL
from reelforge.jobs.schema import POSTGRES_MIGRATIONS, renumber_legacy_postgres
from reelforge.jobs.sql import CHANNEL, SQLJobStore, claim_next

log = logging.getLogger("reelforge.stores")





class PgConnection:
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
    _CLAIM_NEXT = claim_next(recheck=" AND status = 'QUEUED'", lock=" FOR UPDATE SKIP LOCKED")
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

    def _schema_version(self, db) -> int:
        return renumber_legacy_postgres(db, super()._schema_version(db))

    @contextlib.contextmanager
    def _conn(self):
        with self.pool.connection() as conn:
            yield PgConnection(conn)

    @contextlib.contextmanager
    def _tx(self):
        with self.pool.connection() as conn, conn.transaction():
            yield PgConnection(conn)

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


"""The embedded job log: SQLite, one file in the user data dir."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Callable

from reelforge.errors import JobNotFoundError, JobStoreError
from reelforge.jobs.record import JobRecord, V
from reelforge.jobs.schema import SQLITE_MIGRATIONS
from reelforge.jobs.sql import SQLJobStore

log = logging.getLogger("reelforge.stores")


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
            self._local.version = db.cursor()  # one cursor for the change check, tuples not Rows: half its cost
            self._local.version.row_factory = None
        return db

    @contextlib.contextmanager
    def _conn(self):
        yield self._db()

    ROW_CACHE = 1024  # job rows each thread keeps while the job log does not change

    def _cached(self) -> tuple[dict, dict]:
        """This thread's rows by job id and values of ``view`` by (job id, function), both emptied when the log changed.

        The log has changed when ``PRAGMA data_version`` moved (it does with every commit of any
        other connection, in any process) or this thread's own connection changed rows
        (``total_changes``). A Get then costs that one pragma instead of a row read."""
        db, local = self._db(), self._local
        stamp = (local.version.execute("PRAGMA data_version").fetchone()[0], db.total_changes)
        if getattr(local, "stamp", None) != stamp or len(local.rows) >= self.ROW_CACHE:
            local.rows, local.views, local.stamp = {}, {}, stamp
        return local.rows, local.views

    def _cached_row(self, job_id: str, rows: dict):
        row = rows.get(job_id)
        if row is None:
            db = self._db()
            row = self._attempt(lambda _: db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
            if row is None:
                super().get(job_id)  # pruned or unknown: its error
                raise JobNotFoundError(job_id)  # it was created after the read above: as of that read, no such job
            rows[job_id] = row
        return row

    def get(self, job_id: str) -> JobRecord:
        """One job; its row is kept per thread until the job log changes, so polling a quiet log skips the read."""
        rows, _ = self._cached()
        return self._row(self._cached_row(job_id, rows))

    def view(self, job_id: str, make: Callable[[JobRecord], V]) -> V:
        """``make(record)``, kept per thread with the job's row until the job log changes (a reply's bytes, say)."""
        rows, views = self._cached()
        key = (job_id, make)
        if key in views:
            return views[key]
        value = views[key] = make(self._row(self._cached_row(job_id, rows)))
        return value

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


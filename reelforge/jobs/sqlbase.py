"""The SQL job log's base: how a record maps to a row, and the hooks each dialect (SQLite, PostgreSQL) supplies."""

from __future__ import annotations

import json
from typing import Any, Callable

from reelforge import config
from reelforge.jobs.record import JobRecord, JobStatus, JobStore, options_text, search_text

JSON_COLUMNS = ("model_input", "output_config", "tags", "metadata", "wire_request", "webhooks", "engine_options")
COLUMNS = tuple(JobRecord.__dataclass_fields__)


def fence_condition(fence: int | None) -> tuple[str, list[int]]:
    """The condition that a write comes from the claim ``fence`` (none for callers that hold no claim)."""
    return (" AND fence = ?", [fence]) if fence is not None else ("", [])


def row_values(record: JobRecord) -> dict[str, Any]:
    """Every column value the store writes for ``record``: JSON as readable text, and a job's search text."""
    values = record.to_dict()
    for c in JSON_COLUMNS:
        values[c] = json.dumps(values[c], ensure_ascii=False)  # readable text, so search finds "café"
    values["engine_options"] = options_text(record.engine_options)  # one text per set of options: claims match it
    values["cancel_requested"] = int(values["cancel_requested"])
    values["audio"] = int(values["audio"])
    values["search_text"] = search_text(record.model_input) if record.parent_id is None else None
    return values


class SQLBase(JobStore):
    """What every SQL query group builds on: connections, transactions, migrations and rows; dialects fill in the hooks."""


    migrations: list[str | Callable[[Any], None]] = []  # schema.py

    def __init__(self):
        self.timings = config.timings()

    def _migration_lock(self, db) -> None:
        """Keep two processes from migrating at once (SQLite's immediate transaction already does)."""

    def _migrate(self) -> None:
        with self._tx() as db:
            self._migration_lock(db)
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL)")
            current = self._schema_version(db)
            for version, step in enumerate(self.migrations, start=1):
                if version > current:
                    if callable(step):  # what SQL alone cannot do, such as reading JSON in Python
                        step(db)
                    else:
                        for stmt in filter(str.strip, step.split(";")):
                            db.execute(stmt)
                    db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
            self._prepare_search(db)

    def _schema_version(self, db) -> int:
        """The number of the last migration this log recorded (0: none yet)."""
        return db.execute("SELECT MAX(version) AS v FROM schema_migrations").fetchone()["v"] or 0

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


    @staticmethod
    def _row(row) -> JobRecord:
        d = dict(row)
        d.pop("search_text", None)  # an index column, not part of the record
        for c in JSON_COLUMNS:
            d[c] = json.loads(d[c])
        d["status"] = JobStatus(d["status"])
        d["cancel_requested"] = bool(d["cancel_requested"])
        d["audio"] = bool(d["audio"])
        return JobRecord(**d)

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


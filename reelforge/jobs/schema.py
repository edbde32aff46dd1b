"""The job log's schema: one list of migrations, with each dialect's DDL where SQLite and PostgreSQL differ."""

from __future__ import annotations

import json
import logging
from typing import Callable, Union

from reelforge.jobs.outbox import postgres_webhooks, sqlite_webhooks
from reelforge.jobs.record import options_text, search_text
from reelforge.engines.catalog import engine_of_old_job

log = logging.getLogger("reelforge.stores")
Step = Union[str, Callable]  # SQL statements separated by ";", or what SQL alone cannot do (a function of the connection)

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


def engines_fixed(db) -> None:
    """A migration: jobs keep their engine and its options from when they were recorded; jobs
    recorded before are given what they would have run, decided now, once (request.limits.engine_of_old_job)."""
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


# A pruned job's tombstone (jobs/retention.py): what keeps a repeated client token from starting a
# new job once the job's record is gone. storage_uri names the files until they are removed.
_TOMBSTONES = """
    CREATE TABLE job_tombstones (
        id TEXT PRIMARY KEY, arn TEXT NOT NULL, model_id TEXT NOT NULL, client_token TEXT UNIQUE,
        fingerprint TEXT NOT NULL, status TEXT NOT NULL, wire TEXT NOT NULL, submit_time {real} NOT NULL,
        end_time {real}, pruned_time {real} NOT NULL, storage_uri TEXT
    );
    CREATE INDEX job_tombstones_unfinished ON job_tombstones (pruned_time) WHERE storage_uri IS NOT NULL;
    CREATE INDEX jobs_ended ON jobs (end_time, id) WHERE parent_id IS NULL AND end_time IS NOT NULL
"""


def _postgres_search_text(db) -> None:
    def write(db, ids, texts):
        db.execute("UPDATE jobs SET search_text = v.text FROM unnest(?::text[], ?::text[]) AS v(id, text) WHERE jobs.id = v.id", (ids, texts))

    _add_search_text(db, write)


def _same(step: Step) -> tuple[Step, Step]:
    return step, step


def _typed(template: str) -> tuple[str, str]:
    """The DDL of both dialects from one text whose ``{real}`` is each one's type for times and fractions."""
    return template.format(real="REAL"), template.format(real="DOUBLE PRECISION")


# Each migration as (SQLite, PostgreSQL); a log records the numbers of those it ran (schema_migrations).
# Times are epoch seconds in floating point; JSON is kept as text in both.
MIGRATIONS: list[tuple[Step, Step]] = [
    # 1: the job log
    _typed("""
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY, arn TEXT NOT NULL, model_id TEXT NOT NULL, model_input TEXT NOT NULL,
        output_uri TEXT NOT NULL, storage_uri TEXT NOT NULL, client_token TEXT UNIQUE, fingerprint TEXT NOT NULL,
        status TEXT NOT NULL, progress {real} NOT NULL, stage TEXT NOT NULL,
        submit_time {real} NOT NULL, start_time {real}, end_time {real}, last_modified {real} NOT NULL,
        failure_message TEXT, attempts INTEGER NOT NULL, cancel_requested INTEGER NOT NULL,
        worker_id TEXT, lease_until {real}, output_config TEXT NOT NULL, tags TEXT NOT NULL, metadata TEXT NOT NULL
    );
    CREATE INDEX jobs_status_submit ON jobs (status, submit_time);
    CREATE INDEX jobs_submit ON jobs (submit_time, id);
    """),
    # 2: the shots of a multi-shot job run as units of their own
    _same("""
    ALTER TABLE jobs ADD COLUMN parent_id TEXT;
    ALTER TABLE jobs ADD COLUMN shot_index INTEGER;
    CREATE INDEX jobs_parent ON jobs (parent_id);
    """),
    # 3: fencing (a claim number checked on every write) and attempts counted when the engine starts
    _same("""
    ALTER TABLE jobs ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN counted_fence INTEGER NOT NULL DEFAULT 0;
    UPDATE jobs SET fence = attempts, counted_fence = attempts
    """),
    # 4: listings cost the same at a million jobs as at a thousand
    _same(_LISTING_INDEXES),
    # 5: search looks at prompt and shot texts only (its index: SQLite's FTS5, PostgreSQL's pg_trgm; each store's _prepare_search)
    (_sqlite_search_text, _postgres_search_text),
    # 6: the API a job came on and its request there; when its files were deleted (docs/wires.md)
    _typed("""
    ALTER TABLE jobs ADD COLUMN wire TEXT NOT NULL DEFAULT 'bedrock';
    ALTER TABLE jobs ADD COLUMN wire_request TEXT NOT NULL DEFAULT '{{}}';
    ALTER TABLE jobs ADD COLUMN deleted_time {real}
    """),
    # 7: retention: tombstones of pruned jobs, and the index prune finds old jobs by
    _typed(_TOMBSTONES),
    # 8: webhooks: each job's endpoints, and the outbox its status changes write to (outbox.py, webhooks.py)
    (sqlite_webhooks, postgres_webhooks),
    # 9: whether a job keeps the sound its engine makes (--no-audio records 0)
    _same("ALTER TABLE jobs ADD COLUMN audio INTEGER NOT NULL DEFAULT 1"),
    # 10: the engine and its options are fixed when a job is recorded (older jobs: what they would have run)
    _same(engines_fixed),
    # 11: model affinity: the engines each worker holds loaded (claim)
    (_worker_engines("REAL"), _worker_engines("DOUBLE PRECISION")),
]
SQLITE_MIGRATIONS = [sqlite for sqlite, _ in MIGRATIONS]
POSTGRES_MIGRATIONS = [postgres for _, postgres in MIGRATIONS]

# Until the two lists were one, PostgreSQL logs counted their own: their 1 was 1 and 2 here together,
# so each later number was one less than here, up to their last, 10 (= 11 here). What they ran:
LEGACY_POSTGRES_LAST = 10
LEGACY_POSTGRES_MIGRATIONS: list[Step] = [
    f"{POSTGRES_MIGRATIONS[0]};{POSTGRES_MIGRATIONS[1]}", *POSTGRES_MIGRATIONS[2:LEGACY_POSTGRES_LAST + 1]
]


def renumber_legacy_postgres(db, current: int) -> int:
    """The last migration of a PostgreSQL log in this list's numbers, renumbering what an older release recorded.

    A log numbered as here is always past LEGACY_POSTGRES_LAST: every start runs every migration left
    in one transaction, and this list is longer than that. So 1 to LEGACY_POSTGRES_LAST is an old count."""
    if not 0 < current <= LEGACY_POSTGRES_LAST:
        return current
    db.execute("UPDATE schema_migrations SET version = version + 1")
    db.execute("INSERT INTO schema_migrations (version) VALUES (1)")
    log.info("job log: migrations recorded in PostgreSQL's old numbering (up to %d) renumbered as one list's (up to %d)", current, current + 1)
    return current + 1

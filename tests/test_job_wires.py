"""A job keeps the wire it came on, and a deleted job its record, on SQLite and PostgreSQL alike."""

from reelforge.jobs.record import JobStatus
from reelforge.jobs.sqlite import SQLiteJobStore
from test_stores import record, store  # noqa: F401 (the store fixture: SQLite and PostgreSQL)


def test_wire_and_request_round_trip(store):
    kept = {"model": "sora-2", "size": "720x1280", "input_reference": {"bytes": 12, "sha256": "ab" * 32}}
    made, _ = store.create(record(wire="openai", wire_request=kept))
    got = store.get(made.id)
    assert (got.wire, got.wire_request, got.deleted_time) == ("openai", kept, None)
    assert store.get(store.create(record())[0].id).wire == "bedrock"  # the default: Bedrock's wire


def test_only_an_ended_job_is_marked_deleted_and_its_record_stays(store):
    job, _ = store.create(record(token="t-1"))
    assert store.mark_deleted(job.id) is None  # still queued: cancel it first
    store.request_cancel(job.id)
    gone = store.mark_deleted(job.id)
    assert gone.deleted_time is not None and gone.stage == "deleted" and gone.status is JobStatus.CANCELED
    assert store.mark_deleted(job.id).deleted_time == gone.deleted_time  # a second delete keeps the first time
    again, created = store.create(record(token="t-1"))
    assert not created and again.id == job.id  # its token is never reused


def test_an_older_sqlite_log_gains_the_columns(tmp_path):
    import sqlite3

    from reelforge.jobs.schema import SQLITE_MIGRATIONS

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_migrations (version INTEGER NOT NULL)")
    for version, sql in enumerate(SQLITE_MIGRATIONS[:3], start=1):  # an older log: its first three migrations
        for stmt in filter(str.strip, sql.split(";")):
            db.execute(stmt)
        db.execute("INSERT INTO schema_migrations VALUES (?)", (version,))
    db.execute("INSERT INTO jobs (id, arn, model_id, model_input, output_uri, storage_uri, fingerprint, status, progress, stage,"
               " submit_time, last_modified, attempts, cancel_requested, output_config, tags, metadata)"
               " VALUES ('abcdefghijkl', 'arn', 'm', '{}', 'o', 's', 'f', 'COMPLETED', 1, 'completed', 1, 1, 1, 0, '{}', '[]', '{}')")
    db.commit()
    db.close()
    old = SQLiteJobStore(path).get("abcdefghijkl")
    assert (old.wire, old.wire_request, old.deleted_time) == ("bedrock", {}, None)

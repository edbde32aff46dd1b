"""The job log's contract, run against SQLite and PostgreSQL alike."""

import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest
from conftest import PG_URL, pg_available

from reelforge.errors import ConflictError, JobNotFoundError, RequestError
from reelforge.jobs.open import open_store
from reelforge.jobs.record import Beat, JobRecord, JobStatus, new_job_id
from reelforge.jobs.sqlite import SQLiteJobStore

@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield open_store(tmp_path / "jobs.sqlite3")
        return
    yield open_store(request.getfixturevalue("pg_url"))


def record(token=None, fingerprint="f", submit_time=None, text="a cat", **kw) -> JobRecord:
    job_id = new_job_id()
    return JobRecord(
        id=job_id, arn=f"arn:aws:bedrock:us-east-1:000000000000:async-invoke/{job_id}", model_id="reelforge.animatic-v1",
        model_input={"textToVideoParams": {"text": text}}, output_uri=f"file:///o/{job_id}", storage_uri=f"file:///o/{job_id}",
        client_token=token, fingerprint=fingerprint, submit_time=submit_time or time.time(), **kw,
    )


def test_create_get_and_idempotent_tokens(store):
    a, created = store.create(record(token="t1"))
    assert created and store.get(a.id).model_input == a.model_input
    b, created = store.create(record(token="t1"))
    assert not created and b.id == a.id
    with pytest.raises(ConflictError, match="t1"):
        store.create(record(token="t1", fingerprint="other"))
    with pytest.raises(JobNotFoundError):
        store.get("nosuchjob000")


def test_each_job_is_claimed_once_by_racing_workers(store):
    ids = {store.create(record())[0].id for _ in range(40)}
    claimed, lock = [], threading.Lock()

    def work(n):
        while (job := store.claim(f"w{n}", 30)) is not None:
            with lock:
                claimed.append(job.id)
            store.finish(job.id, f"w{n}", JobStatus.COMPLETED)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)
    assert all(store.get(i).status is JobStatus.COMPLETED and store.get(i).fence == 1 for i in ids)


def test_list_filters_search_and_keyset_pages(store):
    t0 = 1_800_000_000.0
    made = [store.create(record(submit_time=t0 + i, text=f"prompt {i} {'boat' if i % 2 else 'kite'}"))[0] for i in range(7)]
    store.claim("w", 30)  # the oldest becomes RUNNING
    page1 = store.list(limit=3)
    page2 = store.list(limit=3, after=(page1[-1].submit_time, page1[-1].id))
    assert [j.id for j in page1 + page2] == [j.id for j in reversed(made)][:6]
    assert [j.id for j in store.list(descending=False, limit=2)] == [made[0].id, made[1].id]
    assert {j.id for j in store.list(statuses=[JobStatus.RUNNING])} == {made[0].id}
    assert len(store.list(search="boat")) == 3 and store.list(search="100%") == []
    assert len(store.list(submitted_after=t0 + 4.5)) == 2 and len(store.list(submitted_before=t0 + 1.5)) == 2


def test_shots_settle_their_job_once_when_finished_together(store):
    parent, _ = store.create(record())
    assert store.claim("w0", 30).id == parent.id
    shots = [record(parent_id=parent.id, shot_index=i, submit_time=parent.submit_time) for i in range(6)]
    store.split(parent.id, "w0", shots)
    assert store.list() and [j.id for j in store.list()] == [parent.id]  # shots stay out of listings
    assert store.get(parent.id).status is JobStatus.RUNNING
    claimed = [store.claim(f"w{i}", 30) for i in range(6)]
    barrier = threading.Barrier(6)

    def finish(job):
        barrier.wait()
        store.finish(job.id, job.worker_id, JobStatus.COMPLETED)

    threads = [threading.Thread(target=finish, args=(j,)) for j in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    joined = store.get(parent.id)
    assert joined.status is JobStatus.QUEUED and joined.stage == "joining shots"
    assert store.claim("w9", 30).id == parent.id


def test_a_failed_shot_fails_its_job_and_cancels_the_rest(store):
    parent, _ = store.create(record())
    store.claim("w0", 30)
    store.split(parent.id, "w0", [record(parent_id=parent.id, shot_index=i, submit_time=parent.submit_time) for i in range(3)])
    first = store.claim("w1", 30)
    store.finish(first.id, "w1", JobStatus.FAILED, failure_message="out of memory")
    job = store.get(parent.id)
    assert job.status is JobStatus.FAILED and job.failure_message == f"shot {first.shot_index + 1} failed: out of memory"
    assert {c.status for c in store.children(parent.id)} == {JobStatus.FAILED, JobStatus.CANCELED}


def test_recover_requeues_then_gives_up(store):
    job, _ = store.create(record())
    for attempt in range(1, 4):
        claimed = store.claim("gone", -1)  # a lease already expired
        assert store.begin_attempt(job.id, "gone", claimed.fence) == attempt
        assert store.begin_attempt(job.id, "gone", claimed.fence) == attempt  # counted once per claim
        store.recover(max_attempts=3)
    final = store.get(job.id)
    assert final.status is JobStatus.FAILED and "stopped 3 times" in final.failure_message


def test_workers_that_die_before_the_engine_starts_cost_nothing(store):
    job, _ = store.create(record())
    for _ in range(6):  # more deaths than max_attempts, none after the engine started
        assert store.claim("gone", -1).id == job.id
        assert store.recover(max_attempts=3) == [job.id]
    again = store.get(job.id)
    assert again.status is JobStatus.QUEUED and again.attempts == 0 and again.fence == 6
    for _ in range(9):  # ... but a job that every worker dies on before starting is not claimed forever
        store.claim("gone", -1)
        store.recover(max_attempts=3)
    final = store.get(job.id)
    assert final.status is JobStatus.FAILED and "stopped before starting it" in final.failure_message


def test_a_worker_that_lost_its_lease_cannot_write_over_the_next_attempt(store):
    job, _ = store.create(record())
    old = store.claim("w1", -1)
    store.begin_attempt(job.id, "w1", old.fence)
    store.recover(max_attempts=3)
    new = store.claim("w1", 30)  # the same worker id even: only the fence tells the attempts apart
    assert new.fence == old.fence + 1
    assert store.heartbeat(job.id, "w1", 30, 0.9, "stale", fence=old.fence) is Beat.LOST
    assert store.begin_attempt(job.id, "w1", old.fence) is None
    assert store.finish(job.id, "w1", JobStatus.FAILED, failure_message="stale", fence=old.fence) is False
    assert store.heartbeat(job.id, "w1", 30, 0.5, "render", fence=new.fence) is Beat.OK
    assert store.finish(job.id, "w1", JobStatus.COMPLETED, fence=new.fence) is True
    done = store.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.failure_message is None and done.progress == 1.0


def test_release_gives_back_a_begun_attempt(store):
    job, _ = store.create(record())
    claimed = store.claim("w1/t0", 30)
    store.begin_attempt(job.id, "w1/t0", claimed.fence)
    assert store.release("w1") == [job.id]
    back = store.get(job.id)
    assert back.status is JobStatus.QUEUED and back.attempts == 0
    assert store.heartbeat(job.id, "w1/t0", 30, 0.5, "x", fence=claimed.fence) is Beat.LOST


def test_cancel_queued_and_running(store):
    queued, _ = store.create(record(submit_time=2e9))
    running, _ = store.create(record(submit_time=1e9))
    assert store.claim("w", 30).id == running.id
    assert store.request_cancel(queued.id).status is JobStatus.CANCELED
    assert store.request_cancel(running.id).cancel_requested
    assert store.heartbeat(running.id, "w", 30, 0.5, "render") is Beat.CANCEL  # the worker learns of it


def test_two_worker_processes_share_a_postgres_job_log(pg_url, tmp_path):
    from reelforge.jobs.runtime import Runtime
    from reelforge.request.model import VideoRequest

    runtime = Runtime(open_store(pg_url))
    ids = [runtime.submit("reelforge.animatic-v1", VideoRequest(text=f"clip {i}", duration_s=1, fps=8, width=64, height=64), tmp_path)[0].id for i in range(8)]
    multi, _ = runtime.submit("reelforge.animatic-v1", VideoRequest(shots=[{"text": "a", "duration_s": 1}, {"text": "b", "duration_s": 1}, {"text": "c", "duration_s": 1}], fps=8, width=64, height=64), tmp_path)
    env = {**os.environ, "REELFORGE_DATABASE_URL": pg_url}
    workers = [subprocess.Popen([sys.executable, "-m", "reelforge", "worker", "--until-idle"], env=env) for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=120) == 0
    runtime.run_until_idle()  # the join may have been queued after both workers found nothing to do
    for job_id in ids + [multi.id]:
        job = runtime.get(job_id)
        assert job.status is JobStatus.COMPLETED and job.attempts == 1, (job.id, job.status, job.failure_message)
    assert (tmp_path / multi.id / "output.mp4").exists()
    runtime.stop()


def _claimed_parent(store, shots=2):
    parent, _ = store.create(record())
    claimed = store.claim("w0", 30)
    assert claimed.id == parent.id
    return parent, [record(parent_id=parent.id, shot_index=i, submit_time=parent.submit_time) for i in range(shots)]


def test_a_worker_that_lost_its_job_cannot_split_it(store):
    parent, shots = _claimed_parent(store)
    store.recover(max_attempts=3, is_dead=lambda w: w == "w0")  # w0 counted as gone: requeued
    assert store.claim("w1", 30).id == parent.id
    assert store.split(parent.id, "w0", shots) is False
    assert store.children(parent.id) == [] and store.get(parent.id).worker_id == "w1"


def test_a_cancel_before_the_split_gives_shots_born_canceled(store):
    parent, shots = _claimed_parent(store)
    store.request_cancel(parent.id)
    assert store.split(parent.id, "w0", shots) is True
    assert {c.status for c in store.children(parent.id)} == {JobStatus.CANCELED}
    assert store.get(parent.id).status is JobStatus.CANCELED and store.claim("w1", 30) is None


def test_canceling_a_shot_unit_cancels_its_job(store):
    parent, shots = _claimed_parent(store)
    store.split(parent.id, "w0", shots)
    first = store.claim("w1", 30)
    store.finish(first.id, "w1", JobStatus.COMPLETED)
    second = store.children(parent.id)[1]
    assert store.request_cancel(second.id).id == parent.id
    assert store.get(parent.id).status is JobStatus.CANCELED


def test_shot_units_of_an_ended_job_are_not_claimed(store):
    parent, shots = _claimed_parent(store, shots=3)
    store.split(parent.id, "w0", shots)
    unit = store.claim("w1", 30)
    store.finish(unit.id, "w1", JobStatus.FAILED, failure_message="boom")  # fails the job, cancels queued shots
    assert store.get(parent.id).status is JobStatus.FAILED and store.claim("w2", 30) is None


def _job(text=None, shots=None, automated=None, image=None, **kw) -> JobRecord:
    """A job whose request is Nova Reel's model input, as the runtime records it."""
    cfg = {"durationSeconds": 6, "fps": 24, "dimension": "1280x720", "seed": 7}
    if shots is not None:
        model_input = {"taskType": "MULTI_SHOT_MANUAL", "multiShotManualParams": {"shots": [{"text": t} for t in shots]},
                       "videoGenerationConfig": {"fps": 24, "dimension": "1280x720"}}
    elif automated is not None:
        model_input = {"taskType": "MULTI_SHOT_AUTOMATED", "multiShotAutomatedParams": {"text": automated},
                       "videoGenerationConfig": {**cfg, "durationSeconds": 18}}
    else:
        params = {"text": text}
        if image is not None:
            params["images"] = [{"format": "png", "source": {"bytes": image}}]
        model_input = {"taskType": "TEXT_VIDEO", "textToVideoParams": params, "videoGenerationConfig": cfg}
    rec = record(**kw)
    rec.model_input = model_input
    return rec


def test_search_is_a_case_blind_substring_of_prompt_and_shot_texts_only(store):
    t0 = 1_800_000_000.0
    lighthouse = store.create(_job("A Red LIGHTHOUSE at dusk", submit_time=t0))[0]
    shots = store.create(_job(shots=["a quiet harbour", "Café terrace at night"], submit_time=t0 + 1))[0]
    street = store.create(_job(automated="Straße im Regen; ÉCOLE in fog", submit_time=t0 + 2))[0]
    literal = store.create(_job('snake_case sign says "100% cotton"', image="iVBORw0KGgoAAAANSUhEUgAAQUJD", submit_time=t0 + 3))[0]
    other = store.create(_job("snakeXcase and 1000 cotton bales", submit_time=t0 + 4))[0]

    def found(q, **kw):
        return [j.id for j in store.list(search=q, **kw)]

    assert found("lighthouse") == found("LightHouse") == found("red light") == [lighthouse.id]
    assert found("café") == found("CAFÉ") == found("Cafe\u0301") == [shots.id]  # composed or not, any case
    assert found("harbour") == [shots.id] and found("cafe") == []  # accents count
    assert found("STRASSE") == found("straße") == [street.id] and found("école") == [street.id]
    assert found("e_c") == [literal.id] and found("0% c") == [literal.id] and found('"100%') == [literal.id]
    assert found("cotton") == [other.id, literal.id]  # newest first
    assert found("cotton", descending=False) == [literal.id, other.id]
    # Never keys, option values, the task type or an image's base64:
    for q in ("textToVideoParams", "text", "1280x720", "durationSeconds", "MULTI_SHOT", "iVBORw0KGgo", "QUJD", "png"):
        assert found(q) == [], q
    assert found("cotton", statuses=[JobStatus.QUEUED], submitted_after=t0 + 3.5) == [other.id]
    assert found("cotton", model_id="reelforge.animatic-v1", after=(other.submit_time, other.id)) == [literal.id]
    assert found("cotton", statuses=[JobStatus.FAILED]) == [] and found("cotton", model_id="amazon.nova-reel-v1:1") == []
    assert store.count(search="COTTON") == 2 and store.count(search="cotton", submitted_before=t0 + 3.5) == 1


def test_a_search_shorter_than_three_characters_is_refused_naming_q(store):
    store.create(_job("an ox"))
    for q in ("ab", " an ", "é", "e\u0301x"):
        with pytest.raises(RequestError, match="at least 3 characters") as refused:
            store.list(search=q)
        assert refused.value.field == "q"
        with pytest.raises(RequestError, match="at least 3 characters"):
            store.count(search=q)
    assert len(store.list(search=" n o ")) == 1 and len(store.list(search="")) == 1 and store.count(search="  ") == 1


def test_search_pages_through_the_newest_window_and_then_the_index(store):
    """A page found among the newest jobs, and matches too old for that window, give the same order."""
    t0 = 1_800_000_000.0
    made = [store.create(_job(f"clip {i} {'of a rare yak' if i in (0, 1) else 'of a cat'}", submit_time=t0 + i))[0] for i in range(60)]
    assert [j.id for j in store.list(search="a cat", limit=3)] == [made[59].id, made[58].id, made[57].id]
    assert [j.id for j in store.list(search="rare yak", limit=3)] == [made[1].id, made[0].id]  # older than 20 pages of 3
    assert [j.id for j in store.list(search="rare yak", limit=1, after=(made[1].submit_time, made[1].id))] == [made[0].id]
    assert [j.id for j in store.list(search="rare yak", limit=2, descending=False)] == [made[0].id, made[1].id]
    cats = store.list(search="a cat", limit=100, descending=False)
    assert [j.id for j in cats] == [j.id for j in made[2:]]


def test_count_is_that_of_the_listing_capped(store):
    t0 = 1_800_000_000.0
    for i in range(7):
        store.create(record(submit_time=t0 + i, text=f"clip {i}"))
    store.claim("w", 30)
    parent = store.claim("w", 30)
    store.split(parent.id, "w", [record(parent_id=parent.id, shot_index=k, submit_time=parent.submit_time) for k in range(3)])
    assert store.count() == 7 and store.count(cap=3) == 4  # "3+" needs one more than the cap; shot units not counted
    assert store.count(statuses=JobStatus.from_bedrock("InProgress")) == 7
    assert store.count(statuses=[JobStatus.RUNNING]) == 2 and store.count(statuses=[JobStatus.COMPLETED]) == 0
    assert store.count(submitted_after=t0 + 4.5) == 2 and store.count(model_id="reelforge.animatic-v1", submitted_before=t0 + 1.5) == 2
    assert store.count(model_id="amazon.nova-reel-v1:1") == 0


def _old_store(kind: str, location) -> None:
    """A job log as the release before search and the listing indexes left it (fencing its last step), holding two jobs."""
    from reelforge.jobs.schema import LEGACY_POSTGRES_MIGRATIONS as POSTGRES_MIGRATIONS  # what the release before wrote
    from reelforge.jobs.schema import SQLITE_MIGRATIONS

    from reelforge.jobs.sqlbase import row_values

    jobs = [_job("An old LIGHTHOUSE film", submit_time=1e9), _job(shots=["shot one", "a Café at noon"], submit_time=2e9)]

    def rows(columns):  # the jobs in the columns an older log has
        return [[row_values(j)[c] for c in columns] for j in jobs]

    if kind == "sqlite":
        db = sqlite3.connect(location, isolation_level=None)
        db.execute("CREATE TABLE schema_migrations (version INTEGER NOT NULL)")
        for version, sql in enumerate(SQLITE_MIGRATIONS[:3], start=1):
            db.executescript(sql)
            db.execute("INSERT INTO schema_migrations VALUES (?)", (version,))
        columns = [r[1] for r in db.execute("PRAGMA table_info(jobs)")]
        db.executemany(f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows(columns))
        db.close()
    else:
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute("CREATE TABLE schema_migrations (version INTEGER NOT NULL)")
            for version, sql in enumerate(POSTGRES_MIGRATIONS[:2], start=1):
                for stmt in filter(str.strip, sql.split(";")):
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_migrations VALUES (%s)", (version,))
            columns = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'jobs'"
                " ORDER BY ordinal_position")]
            conn.cursor().executemany(f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})", rows(columns))
    return jobs


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_existing_job_log_is_migrated_and_its_jobs_found_by_search(kind, tmp_path, request):
    location = tmp_path / "jobs.sqlite3" if kind == "sqlite" else request.getfixturevalue("pg_url")
    old = _old_store(kind, location)
    store = open_store(location)
    assert [j.id for j in store.list(search="lighthouse")] == [old[0].id]
    assert [j.id for j in store.list(search="CAFÉ")] == [old[1].id] and store.list(search="shot one")[0].id == old[1].id
    assert store.list(search="taskType") == [] and store.count() == 2
    new, _ = store.create(_job("a new lighthouse"))
    assert [j.id for j in store.list(search="lighthouse")] == [new.id, old[0].id]
    assert [j.id for j in open_store(location).list(search="lighthouse")] == [new.id, old[0].id]  # a second open changes nothing


def _recorded_versions(store) -> list[int]:
    with store._conn() as db:
        return sorted(r["version"] for r in db.execute("SELECT version FROM schema_migrations").fetchall())


def test_a_postgres_log_in_the_old_numbering_is_renumbered_once_and_keeps_its_jobs(pg_url, tmp_path):
    """PostgreSQL once counted its migrations apart (its 1 = 1 and 2 of the one list): an old log is
    renumbered as SQLite counts, runs nothing twice, and a second start changes nothing."""
    import psycopg
    from psycopg.rows import dict_row

    from reelforge.jobs.postgres import PgConnection
    from reelforge.jobs.schema import LEGACY_POSTGRES_MIGRATIONS, MIGRATIONS

    with psycopg.connect(pg_url, autocommit=True, row_factory=dict_row) as conn:
        db = PgConnection(conn)
        db.execute("CREATE TABLE schema_migrations (version INTEGER NOT NULL)")
        for version, step in enumerate(LEGACY_POSTGRES_MIGRATIONS, start=1):  # the whole old list: nothing left to run
            if callable(step):
                step(db)
            else:
                for stmt in filter(str.strip, step.split(";")):
                    db.execute(stmt)
            db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
    assert len(LEGACY_POSTGRES_MIGRATIONS) == len(MIGRATIONS) - 1
    store = open_store(pg_url)
    job, _ = store.create(_job("an old harbour"))
    assert _recorded_versions(store) == list(range(1, len(MIGRATIONS) + 1))
    assert _recorded_versions(open_store(pg_url)) == list(range(1, len(MIGRATIONS) + 1))
    assert _recorded_versions(open_store(tmp_path / "jobs.sqlite3")) == list(range(1, len(MIGRATIONS) + 1))
    assert store.get(job.id).model_input["textToVideoParams"]["text"] == "an old harbour"


def test_without_pg_trgm_search_still_works_and_says_why_it_is_slow(pg_url, caplog):
    """A role that may not create extensions, in a database without pg_trgm: a warning, and searches that scan."""
    import psycopg

    if not pg_available():
        pytest.skip("no PostgreSQL")
    name = "rf_noext_" + uuid.uuid4().hex[:8]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN")
        conn.execute(f"CREATE DATABASE {name} OWNER postgres")
    try:
        admin_url = PG_URL.rsplit("/", 1)[0] + "/" + name
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA app AUTHORIZATION {name}")
            conn.execute(f"REVOKE CREATE ON DATABASE {name} FROM PUBLIC")
        url = admin_url.replace("postgres@", f"{name}@", 1) + "?options=-csearch_path%3Dapp"
        with caplog.at_level("WARNING", logger="reelforge.stores"):
            store = open_store(url)
        assert "pg_trgm" in caplog.text and "CREATE EXTENSION pg_trgm" in caplog.text
        job, _ = store.create(_job("A Café by the sea"))
        assert [j.id for j in store.list(search="CAFÉ by")] == [job.id] and store.count(search="café") == 1
        store.pool.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:  # an administrator installs it: the next start indexes
            conn.execute("CREATE EXTENSION pg_trgm SCHEMA public")
        caplog.clear()
        with caplog.at_level("WARNING", logger="reelforge.stores"):
            again = open_store(url)
        assert "pg_trgm" not in caplog.text
        with again._conn() as db:
            assert db.execute("SELECT to_regclass('jobs_search_trgm') AS i").fetchone()["i"] is not None
        assert [j.id for j in again.list(search="café")] == [job.id]
        again.pool.close()
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE IF EXISTS {name}")


def test_sqlite_get_sees_every_change_to_a_row_it_read_before(tmp_path):
    """Gets keep a job's row per thread until the log changes: a change by another connection, another
    thread, or this thread's own connection (even a raw UPDATE) is seen by the next Get."""

    store = open_store(tmp_path / "jobs.sqlite3")
    job, _ = store.create(record())
    assert store.get(job.id).status is JobStatus.QUEUED and store.get(job.id).status is JobStatus.QUEUED
    other = open_store(tmp_path / "jobs.sqlite3")  # another connection, as another process has
    other.request_cancel(job.id)
    assert store.get(job.id).status is JobStatus.CANCELED
    t = threading.Thread(target=lambda: store.mark_deleted(job.id))
    t.start()
    t.join()
    assert store.get(job.id).deleted_time is not None
    store._db().execute("UPDATE jobs SET stage = 'by hand' WHERE id = ?", (job.id,))  # this thread's own connection
    assert store.get(job.id).stage == "by hand"
    first = store.get(job.id)
    first.metadata["changed"] = True  # records are the caller's: a later Get is not affected
    assert "changed" not in store.get(job.id).metadata
    with pytest.raises(JobNotFoundError):
        store.get("nosuchjob000")


def test_a_view_of_a_job_follows_every_change_and_keeps_nothing_that_raised(store, tmp_path):
    """``view(job_id, make)`` gives ``make(record)``; SQLite keeps it until the log changes, and any change
    (another connection's, this thread's) is seen by the next view. Errors of ``make`` are never kept."""
    job, _ = store.create(record())
    calls = []

    def status(rec):
        calls.append(rec.id)
        return rec.status

    assert store.view(job.id, status) is JobStatus.QUEUED
    assert store.view(job.id, status) is JobStatus.QUEUED
    assert len(calls) == (1 if isinstance(store, SQLiteJobStore) else 2)  # a quiet SQLite log: made once
    other = open_store(tmp_path / "jobs.sqlite3") if isinstance(store, SQLiteJobStore) else store
    other.request_cancel(job.id)
    assert store.view(job.id, status) is JobStatus.CANCELED
    store.mark_deleted(job.id)

    def refuse_deleted(rec):
        calls.append(rec.id)
        if rec.deleted_time is not None:
            raise LookupError("deleted")
        return rec.status

    before = len(calls)
    for _ in range(2):
        with pytest.raises(LookupError):
            store.view(job.id, refuse_deleted)
    assert len(calls) == before + 2  # asked again each time: a raised error is not a kept value
    with pytest.raises(JobNotFoundError):
        store.view("nosuchjob000", status)

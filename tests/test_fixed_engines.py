"""The engine and its options are fixed when a job is recorded: workers never decide from their own
settings; older job logs are migrated to what their jobs would have run; a Nova Reel id served by
another model gets that model's limits before a job exists."""

import sqlite3

import numpy as np
import pytest

from reelforge import Client, Engine, EngineOptions, ImageError, ImageInput, JobStatus, RequestError, VideoRequest
from reelforge.client.embedded import embedded_runtime
from helpers import engines_registered
from reelforge.jobs.open import open_store
from reelforge.jobs.record import JobRecord
from reelforge.jobs.sqlite import SQLiteJobStore
from reelforge.request.limits import LOCAL, ModelSpec
from tests.helpers import image_bytes

TINY = dict(duration_s=1, fps=8, width=128, height=72)
NOVA = "amazon.nova-reel-v1:1"


class _Recorder(Engine):
    """Remembers which engine rendered which shot with which options."""

    class Options(EngineOptions):
        tint: int = 0

    ran: list = []

    def render_shot(self, shot, progress):
        _Recorder.ran.append((self.engine_id, shot.text, self.options.tint))
        for _ in range(shot.frame_count):
            yield np.full((shot.height, shot.width, 3), self.options.tint, np.uint8)


class RecorderA(_Recorder):
    engine_id = "test-rec-a"

    @classmethod
    def models(cls):
        return [ModelSpec("test.rec-a", "test-rec-a", "records", LOCAL)]


class RecorderB(_Recorder):
    engine_id = "test-rec-b"

    @classmethod
    def models(cls):
        return [ModelSpec("test.rec-b", "test-rec-b", "records", LOCAL)]


registered_engines = engines_registered(RecorderA, RecorderB)


def _idle_client(monkeypatch):
    """A client whose jobs nobody runs until the test calls run_until_idle()."""
    monkeypatch.setenv("REELFORGE_WORKERS", "0")
    return Client()


def test_a_worker_runs_what_was_recorded_whatever_its_settings_say_later(tmp_path, monkeypatch):
    _Recorder.ran.clear()
    client = _idle_client(monkeypatch)
    monkeypatch.setenv("REELFORGE_NOVA_BACKEND", "test.rec-a")
    monkeypatch.setenv("REELFORGE_TEST_REC_A_OPTIONS", '{"tint": 77}')
    nova = client.start(VideoRequest(text="nova"), model=NOVA, output=tmp_path)  # Nova Reel: 6 s at 1280x720
    own = client.start(VideoRequest(text="own", **TINY), model="test.rec-a", output=tmp_path)
    assert (nova.record.engine, nova.record.engine_options) == ("test-rec-a", {"tint": 77})
    # the worker's process now says something else, even something it could not read
    monkeypatch.setenv("REELFORGE_NOVA_BACKEND", "test.rec-b")
    monkeypatch.setenv("REELFORGE_TEST_REC_A_OPTIONS", "{not json")
    monkeypatch.setenv("REELFORGE_TEST_REC_B_OPTIONS", '{"tint": 5}')
    assert embedded_runtime().run_until_idle() == 2
    assert sorted(_Recorder.ran) == [("test-rec-a", "nova", 77), ("test-rec-a", "own", 77)]
    assert nova.status is JobStatus.COMPLETED and nova.record.metadata["engine"] == "test-rec-a"
    assert own.record.metadata["engine_options"] == {"tint": 77}


def test_bad_options_are_refused_at_submit(tmp_path, monkeypatch):
    client = _idle_client(monkeypatch)
    monkeypatch.setenv("REELFORGE_TEST_REC_A_OPTIONS", '{"tint": "red"}')
    with pytest.raises(Exception, match=r"engine 'test-rec-a': bad options: option 'tint'"):
        client.start(VideoRequest(text="x", **TINY), model="test.rec-a", output=tmp_path)
    assert client.jobs() == []


def _previous_log(kind, location, jobs):
    """A job log as the release before this change left it (its first migrations), holding ``jobs``."""
    from reelforge.jobs.schema import LEGACY_POSTGRES_MIGRATIONS as POSTGRES_MIGRATIONS  # what the release before wrote
    from reelforge.jobs.schema import SQLITE_MIGRATIONS
    from reelforge.jobs.schema import engines_fixed as _engines_fixed
    from reelforge.jobs.sqlbase import row_values

    def rows(columns):
        return [[row_values(j)[c] for c in columns] for j in jobs]

    if kind == "sqlite":
        steps = SQLITE_MIGRATIONS[:SQLITE_MIGRATIONS.index(_engines_fixed)]
        db = sqlite3.connect(location, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("CREATE TABLE schema_migrations (version INTEGER NOT NULL)")
        for version, step in enumerate(steps, start=1):
            step(db) if callable(step) else db.executescript(step)
            db.execute("INSERT INTO schema_migrations VALUES (?)", (version,))
        columns = [r[1] for r in db.execute("PRAGMA table_info(jobs)")]
        assert "engine" not in columns
        db.executemany(f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows(columns))
        db.close()
        return
    import psycopg
    from psycopg.rows import dict_row

    from reelforge.jobs.postgres import PgConnection as _PgConnection

    steps = POSTGRES_MIGRATIONS[:POSTGRES_MIGRATIONS.index(_engines_fixed)]
    with psycopg.connect(location, autocommit=True, row_factory=dict_row) as conn:
        db = _PgConnection(conn)
        db.execute("CREATE TABLE schema_migrations (version INTEGER NOT NULL)")
        for version, step in enumerate(steps, start=1):
            if callable(step):
                step(db)
            else:
                for stmt in filter(str.strip, step.split(";")):
                    db.execute(stmt)
            db.execute("INSERT INTO schema_migrations VALUES (?)", (version,))
        columns = [r["column_name"] for r in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'jobs'"
            " ORDER BY ordinal_position").fetchall()]
        assert "engine" not in columns
        conn.cursor().executemany(f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})", rows(columns))


def _old_job(model_id, text, folder):
    request = VideoRequest(text=text, **TINY) if model_id != NOVA else VideoRequest(text=text)
    job_id = "old" + text.replace(" ", "")[:9].ljust(9, "x")
    uri = (folder / job_id).as_uri()
    return JobRecord(id=job_id, arn=f"arn:aws:bedrock:us-east-1:000000000000:async-invoke/{job_id}", model_id=model_id,
                     model_input=request.to_model_input(), output_uri=uri, storage_uri=uri)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_older_log_is_migrated_to_what_its_jobs_would_have_run(kind, tmp_path, request, monkeypatch):
    location = tmp_path / "jobs.sqlite3" if kind == "sqlite" else request.getfixturevalue("pg_url")
    jobs = [_old_job(NOVA, "nova one", tmp_path), _old_job("test.rec-b", "own engine", tmp_path), _old_job("gone.model", "unknown", tmp_path)]
    _previous_log(kind, location, jobs)
    monkeypatch.setenv("REELFORGE_TEST_REC_B_OPTIONS", '{"tint": 9}')
    store = open_store(location)
    got = {j.id: (j.engine, j.engine_options) for j in (store.get(j.id) for j in jobs)}
    assert got == {jobs[0].id: ("animatic", {}), jobs[1].id: ("test-rec-b", {"tint": 9}), jobs[2].id: ("", {})}


def test_an_older_logs_nova_jobs_follow_the_backend_set_when_it_was_migrated(tmp_path, monkeypatch):
    location = tmp_path / "jobs.sqlite3"
    jobs = [_old_job(NOVA, "nova one", tmp_path)]
    _previous_log("sqlite", location, jobs)
    monkeypatch.setenv("REELFORGE_NOVA_BACKEND", "test.rec-a")
    assert SQLiteJobStore(location).get(jobs[0].id).engine == "test-rec-a"


def test_a_migrated_old_log_runs_its_nova_jobs_on_the_animatic(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    jobs = [_old_job(NOVA, "a lighthouse at dusk", tmp_path / "out")]
    (tmp_path / "out").mkdir()
    _previous_log("sqlite", home / "jobs.sqlite3", jobs)
    monkeypatch.setenv("REELFORGE_HOME", str(home))
    monkeypatch.setenv("REELFORGE_WORKERS", "0")
    runtime = embedded_runtime()  # opens (and migrates) the old log
    monkeypatch.setenv("REELFORGE_NOVA_BACKEND", "test.rec-a")  # set after the migration: changes nothing
    _Recorder.ran.clear()
    assert runtime.run_until_idle() == 1
    done = runtime.get(jobs[0].id)
    assert done.status is JobStatus.COMPLETED and done.metadata["engine"] == "animatic" and _Recorder.ran == []



def test_new_nova_jobs_render_on_the_previz_while_a_job_recorded_before_keeps_v1(tmp_path, monkeypatch):
    monkeypatch.delenv("REELFORGE_NOVA_BACKEND", raising=False)
    client = _idle_client(monkeypatch)
    old = client.start(VideoRequest(text="a red boat on the sea at noon"), model=NOVA, output=tmp_path)
    # the job as the release before the previz default recorded it
    from reelforge.client.embedded import embedded_runtime as rt

    with rt().store._tx() as db:
        db.execute("UPDATE jobs SET engine = 'animatic' WHERE id = ?", (old.id,))
    new = client.start(VideoRequest(text="a red boat on the sea at noon"), model=NOVA, output=tmp_path)
    assert new.record.engine == "animatic-v2" and old.record.engine == "animatic"
    assert rt().run_until_idle() == 2
    assert old.record.metadata["engine"] == "animatic" and "previz" not in old.record.metadata
    assert new.record.metadata["engine"] == "animatic-v2" and [s["noun"] for s in new.record.metadata["previz"][0]["subjects"]] == ["boat"]


WAN = "reelforge.wan2.1-t2v-1.3b"


def test_a_nova_id_served_by_wan_gets_wans_limits_before_a_job_exists(tmp_path, monkeypatch):
    pytest.importorskip("reelforge.engines.diffusers")
    from reelforge.engines.catalog import get_model

    get_model(WAN)  # the model table lists it, weights or not
    client = _idle_client(monkeypatch)
    monkeypatch.setenv("REELFORGE_NOVA_BACKEND", WAN)
    with pytest.raises(RequestError) as err:
        client.start(VideoRequest(text="a lighthouse"), model=NOVA, output=tmp_path / "o")  # Nova's 6 s
    assert err.value.field == "videoGenerationConfig.durationSeconds"
    assert f"{NOVA} is served here by {WAN} (REELFORGE_NOVA_BACKEND={WAN})" in err.value.message
    assert err.value.message.startswith("6 s is not allowed: ") and err.value.message.endswith(", which allows 1, 2, 3, 4, 5 s")
    with pytest.raises(ImageError) as err:
        client.start(VideoRequest(text="a lighthouse", image=ImageInput.from_source(image_bytes(1280, 720))), model="amazon.nova-reel-v1:0", output=tmp_path / "o")
    assert err.value.field == "textToVideoParams.images[0]" and "text-to-video only" in err.value.message
    assert client.jobs() == [] and not (tmp_path / "o").exists()


def test_the_bedrock_wire_refuses_it_as_a_validation_error(tmp_path, monkeypatch):
    pytest.importorskip("reelforge.engines.diffusers")
    from reelforge.server.app import ServerSettings
    from server_fixtures import ServerThread, bedrock, expect

    monkeypatch.setenv("REELFORGE_NOVA_BACKEND", WAN)
    nova_input = {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a lighthouse"},
                  "videoGenerationConfig": {"durationSeconds": 6, "fps": 24, "dimension": "1280x720", "seed": 0}}
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "buckets", data_dir=tmp_path / "home")) as server:
        msg = expect("ValidationException", bedrock(server.url).start_async_invoke, modelId=NOVA, modelInput=nova_input,
                     outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://test-bucket/out"}})
        assert "durationSeconds" in msg and WAN in msg
        assert server.runtime.store.count() == 0

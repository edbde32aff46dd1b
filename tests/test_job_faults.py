"""The job system under faults: kill -9, Ctrl-C and SIGTERM, frozen workers, a database that blinks.

Workers here are real ``reelforge worker`` processes (tests/faults.py); leases are a few seconds
(REELFORGE_LEASE_S), so a takeover takes seconds, not the default 30.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import fault_engines  # noqa: F401 - registers the test engines in this process too
from faults import TcpProxy, Worker, wait_for
from reelforge.media import video as media
from reelforge.jobs.open import open_store
from reelforge.jobs.record import JobStatus
from reelforge.request.model import VideoRequest
from reelforge.jobs.runtime import Runtime

SMALL = dict(fps=8, width=64, height=64)


def _env(home: Path, db: str | None = None, **settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELFORGE_")}
    env.update(REELFORGE_HOME=str(home), REELFORGE_LEASE_S="2", REELFORGE_RECOVER_S="0.2", REELFORGE_BACKGROUND_WORKER="never")
    if db:
        env["REELFORGE_DATABASE_URL"] = db
    env.update({f"REELFORGE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A job log, a runtime to submit with (no workers of its own) and a way to start worker processes."""

    class Lab:
        def __init__(self):
            self.home = tmp_path / "home"
            self.home.mkdir()
            self.out = tmp_path / "out"
            self.workers: list[Worker] = []
            self.db: str | None = None
            self.runtime: Runtime | None = None

        def open(self, db: str | None = None, **settings) -> Runtime:
            self.db = db
            self.settings = settings
            for k, v in _env(self.home, db, **settings).items():
                if k.startswith("REELFORGE_"):
                    monkeypatch.setenv(k, v)
            self.runtime = Runtime(open_store(db or self.home / "jobs.sqlite3"))
            return self.runtime

        def worker(self, *args: str, **settings) -> Worker:
            env = _env(self.home, self.db, **{**self.settings, **settings})
            w = Worker(env, *args, preload="fault_engines", log=self.home / "workers.out").start()
            self.workers.append(w)
            return w

        def submit(self, text: str, model: str = "test.paced", **fields):
            request = VideoRequest(text=text, **{"duration_s": 1, **SMALL, **fields})
            return self.runtime.submit(model, request, self.out)[0]

        def get(self, job_id: str):
            return self.runtime.store.get(job_id)

        def running_on(self, worker: Worker):
            rows = self.runtime.store.list(statuses=[JobStatus.RUNNING], limit=100)
            return [r for r in rows if r.worker_id and f":{worker.pid}:" in r.worker_id and r.progress > 0]

    lab = Lab()
    yield lab
    for w in lab.workers:
        w.stop()
    if lab.runtime is not None:
        lab.runtime.stop()


def _all_done(lab, ids):
    return all(lab.get(i).status.done for i in ids)


def test_ctrl_c_and_sigterm_put_a_workers_job_back_at_once(lab):
    lab.open(test_frame_s=0.05)
    job = lab.submit("a long take", duration_s=4)
    for args, sig in ((["--until-idle"], signal.SIGINT), (["--threads", "2"], signal.SIGTERM)):
        w = lab.worker(*args)
        wait_for(lambda: lab.running_on(w), 30, "the worker to start the job")
        w.signal(sig)
        assert w.wait(15) == 0
        back = lab.get(job.id)
        # Not FAILED ("KeyboardInterrupt"), not RUNNING until its lease runs out: queued, and it cost no attempt.
        assert back.status is JobStatus.QUEUED and back.attempts == 0, (back.status, back.failure_message)
        assert back.stage == "queued again: its worker stopped"
    lab.worker("--until-idle").wait(60)
    done = lab.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 1 and done.fence == 3


def test_a_worker_that_dies_at_start_up_costs_the_job_nothing(lab, tmp_path):
    deaths = tmp_path / "deaths"
    deaths.write_text("4")  # more deaths than the 3 attempts a job has
    lab.open(test_deaths=deaths)
    job = lab.submit("an unlucky clip", model="test.dies-loading")
    for _ in range(6):
        lab.worker("--until-idle").wait(60)  # each one recovers the last one's job first (its process is gone)
        if lab.get(job.id).status.done:
            break
    done = lab.get(job.id)
    assert done.status is JobStatus.COMPLETED, done.failure_message
    assert done.attempts == 1 and done.fence == 5  # five claims, one of them ran the engine


def test_a_checkpoint_saved_before_a_kill_is_there_for_the_next_attempt(lab, tmp_path):
    seen = tmp_path / "seen"
    lab.open(test_seen=seen)
    job = lab.submit("resume me", model="test.killed-once")
    assert lab.worker("--until-idle").wait(60) == -signal.SIGKILL  # attempt 1 saved its checkpoint, then died
    assert (lab.out / job.id / ".checkpoints" / "shot_0001" / "latents.txt").exists()  # in the job's storage
    lab.worker("--until-idle").wait(60)  # recovers the dead worker's job and runs attempt 2
    done = lab.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2, done.failure_message
    assert seen.read_text() == "attempt 1 of shot_0001"
    assert not (lab.out / job.id / ".checkpoints").exists()  # removed once the job ended


def test_a_dead_workers_job_restarts_while_a_backlog_waits(lab):
    lab.open(test_frame_s=0.03)
    first = lab.submit("the one that dies", duration_s=30)
    backlog = [lab.submit(f"backlog {i}").id for i in range(25)]
    a = lab.worker()
    wait_for(lambda: lab.running_on(a), 30, "worker A to start the first job")
    b = lab.worker()
    wait_for(lambda: lab.get(backlog[0]).status is not JobStatus.QUEUED, 30, "worker B to take work")
    a.kill9()
    # Recovery runs on a timer, not only when a worker is idle: the job is taken again while
    # worker B still has a backlog in front of it (before, it waited until the queue was empty).
    wait_for(lambda: lab.get(first.id).fence == 2, 30, "the dead worker's job to be claimed again")
    waiting = sum(lab.get(i).status is JobStatus.QUEUED for i in backlog)
    assert waiting > 0
    wait_for(lambda: _all_done(lab, [first.id, *backlog]), 120, "every job to end")
    assert lab.get(first.id).status is JobStatus.COMPLETED and lab.get(first.id).attempts == 2
    assert b.alive()


def test_a_job_that_runs_out_of_attempts_leaves_no_temp_files_and_says_why(lab):
    lab.open(test_frame_s=0.05, max_attempts=1)
    job = lab.submit("a clip that never finishes", duration_s=4)
    w = lab.worker()
    folder = lab.out / job.id
    wait_for(lambda: list(folder.glob(".output.mp4.*.tmp")), 30, "the render's temp file")
    w.kill9()
    lab.runtime.recover()  # the worker's process is gone: its job has no attempts left
    failed = lab.get(job.id)
    assert failed.status is JobStatus.FAILED and "stopped 1 times" in failed.failure_message
    assert list(folder.glob(".*")) == []
    status = json.loads((folder / "video-generation-status.json").read_text())
    assert status["fullVideo"]["status"] == "FAILURE" and "stopped 1 times" in status["fullVideo"]["failureMessage"]


def test_a_failed_multi_shot_job_writes_its_status_file(lab):
    lab.open()
    request = VideoRequest(shots=[{"text": "one", "duration_s": 1}, {"text": "two", "duration_s": 1}, {"text": "three", "duration_s": 1}], **SMALL)
    job, _ = lab.runtime.submit("test.fails-shot", request, lab.out)
    lab.runtime.run_until_idle()
    failed = lab.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.failure_message == "shot 2 failed: shot 2 cannot be drawn"
    status = json.loads((lab.out / job.id / "video-generation-status.json").read_text())
    assert status["fullVideo"] == {"status": "FAILURE", "failureType": "INTERNAL_SERVER_EXCEPTION", "failureMessage": failed.failure_message}
    assert list((lab.out / job.id).glob(".*")) == []


def test_published_files_reach_the_disk_before_their_name(lab, monkeypatch):
    """fsync of the temp file, then the rename, then fsync of the folder: a power cut leaves old or whole."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    lab.open()
    job = lab.submit("a durable clip", model="reelforge.animatic-v1")
    lab.runtime.run_until_idle()
    folder = str(lab.out / job.id)
    final = folder + "/output.mp4"
    at = calls.index(("replace", final))
    tmp_synced = [c for c in calls[:at] if c[0] == "fsync" and os.path.basename(c[1]).startswith(".output.mp4.")]
    assert tmp_synced, calls
    assert calls[at + 1] == ("fsync", folder)
    assert media.probe(final).frames == 8


def test_bad_timing_settings_are_refused_by_name(monkeypatch, tmp_path):
    from reelforge.errors import ConfigError

    monkeypatch.setenv("REELFORGE_LEASE_S", "soon")
    with pytest.raises(ConfigError, match=r"REELFORGE_LEASE_S='soon' is not usable; it must be a number of seconds of at least 0.5"):
        Runtime(open_store(tmp_path / "jobs.sqlite3"))


# --- PostgreSQL: many workers, one of them stuck; a database that blinks ---------------------


def test_a_frozen_postgres_worker_does_not_stall_the_others(lab, pg_url):
    lab.open(pg_url, test_frame_s=0.03)
    first = lab.submit("the one that freezes", duration_s=3)
    rest = [lab.submit(f"clip {i}").id for i in range(12)]
    a = lab.worker()
    wait_for(lambda: lab.running_on(a), 30, "worker A to start")
    b = lab.worker()
    a.freeze()  # SIGSTOP: alive, holding its claim (and whatever it held at that instant)
    try:
        wait_for(lambda: _all_done(lab, [first.id, *rest]), 120, "the other worker to finish every job")
    finally:
        a.thaw()
    assert {lab.get(i).status for i in [first.id, *rest]} == {JobStatus.COMPLETED}
    assert lab.get(first.id).fence == 2  # taken over once its lease ran out
    time.sleep(1.0)  # the thawed worker finds its claim gone and writes nothing over the finished job
    again = lab.get(first.id)
    assert again.status is JobStatus.COMPLETED and again.fence == 2 and again.failure_message is None
    assert media.probe(lab.out / first.id / "output.mp4").frames == 24
    assert b.alive()


def test_a_session_stuck_in_a_transaction_holds_nothing_for_long(lab, pg_url, monkeypatch):
    """A frozen process inside a transaction: its row locks are skipped, then the server ends its session."""
    from reelforge.jobs import postgres as stores

    monkeypatch.setattr(stores, "IDLE_IN_TRANSACTION_MS", 1000)
    runtime = lab.open(pg_url)
    stuck_job = lab.submit("locked by a frozen session")
    other = lab.submit("another job")
    claimed = runtime.store.claim("ghost:1:x", -1)  # an expired lease: recovery wants it back
    assert claimed.id == stuck_job.id
    pool = stores._pool(pg_url)
    stuck = pool.getconn()  # a pooled session, configured like every reelforge session
    stuck.execute("BEGIN")
    stuck.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (stuck_job.id,))
    # ... and the process holding it stops here. Others go on: claims and recovery skip the locked row.
    assert runtime.store.recover(3) == []
    assert runtime.store.claim("w", 30).id == other.id
    wait_for(lambda: runtime.store.recover(3) == [stuck_job.id], 20, "the server to end the stuck session")
    assert lab.get(stuck_job.id).status is JobStatus.QUEUED
    with pytest.raises(Exception):
        stuck.execute("SELECT 1")  # its session was terminated by the server
    pool.putconn(stuck)


def test_a_database_that_blinks_loses_no_render_and_the_api_says_503(lab, pg_url, tmp_path):
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from reelforge.server.app import ServerSettings
    from server_fixtures import TEST_KEYS, ServerThread

    proxy = TcpProxy(("127.0.0.1", 5432))
    try:
        via_proxy = proxy.url_for(pg_url)
        lab.open(via_proxy, test_frame_s=0.04, lease_s=10, db_retry_s=20)
        ids = [lab.submit(f"clip {i}", duration_s=2).id for i in range(6)]
        for _ in range(2):
            lab.worker()
        wait_for(lambda: sum(lab.get(i).status is JobStatus.RUNNING for i in ids) >= 2, 60, "two jobs running")
        for _ in range(3):
            assert proxy.reset() > 0  # every connection of every process, mid-render
            time.sleep(0.7)
        wait_for(lambda: _all_done(lab, ids), 120, "every job to end")
        for i in ids:
            job = lab.get(i)
            assert job.status is JobStatus.COMPLETED and job.attempts == 1, (job.status, job.failure_message, job.attempts)

        os.environ["REELFORGE_DB_RETRY_S"] = "1"  # the API answers soon instead of riding out a long outage
        try:
            with ServerThread(ServerSettings(workers=0)) as srv:
                client = boto3.client("bedrock-runtime", endpoint_url=srv.url, region_name="us-east-1",
                                      config=Config(retries={"total_max_attempts": 1}), **TEST_KEYS)
                arn = lab.get(ids[0]).arn
                assert client.get_async_invoke(invocationArn=arn)["status"] == "Completed"
                proxy.refuse()
                with pytest.raises(ClientError) as info:
                    client.get_async_invoke(invocationArn=arn)
                err = info.value.response
                assert err["ResponseMetadata"]["HTTPStatusCode"] == 503 and err["Error"]["Code"] == "ServiceUnavailableException"
                proxy.accept()
                assert wait_for(lambda: _get_or_none(client, arn), 30, "the API to answer again")["status"] == "Completed"
        finally:
            del os.environ["REELFORGE_DB_RETRY_S"]
    finally:
        proxy.close()


def _get_or_none(client, arn):
    from botocore.exceptions import ClientError

    try:
        return client.get_async_invoke(invocationArn=arn)
    except ClientError:
        return None


def test_idle_workers_are_woken_by_notify(pg_url):
    store = open_store(pg_url)
    woke, stop = threading.Event(), threading.Event()
    listener = threading.Thread(target=store.listen, args=(woke.set, stop), daemon=True)
    listener.start()
    try:
        wait_for(woke.is_set, 10, "the listener to start")  # it wakes once when it starts listening
        woke.clear()
        from test_stores import record

        open_store(pg_url).create(record())  # another "process" records a job
        assert woke.wait(10)
    finally:
        stop.set()
        listener.join(5)

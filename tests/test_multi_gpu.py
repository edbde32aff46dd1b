"""Several GPUs on CPU: `reelforge worker --gpus` with fake devices, and claims that follow the models workers hold."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

import gpu_engines
from faults import wait_for
from test_stores import record, store  # noqa: F401 - the stores' own fixture (SQLite and PostgreSQL)

from reelforge.cli.main import cli
from reelforge.errors import ConfigError
from reelforge.cli.gpus import parse_gpus
from reelforge.jobs.open import open_store
from reelforge.jobs.record import JobStatus
from reelforge.request.model import VideoRequest
from reelforge.jobs.runtime import Runtime
from reelforge.jobs.lease import worker_is_dead

ROOT = Path(__file__).resolve().parents[1]
X = ("test-gpu", {"model": "x", "steps": 4})
Y = ("test-gpu", {"model": "y"})
Z = ("test-gpu", {"model": "z"})


# --- --gpus ---------------------------------------------------------------------------------------
def test_gpus_names_devices_as_given_or_within_the_visible_ones():
    assert parse_gpus("0,1") == ["0", "1"]
    assert parse_gpus(" GPU-5c1e2a , 3 ") == ["GPU-5c1e2a", "3"]
    assert parse_gpus("1,0", visible="4,6") == ["6", "4"]  # indexes count within this process's devices, as torch's do
    assert parse_gpus("all", count=lambda: 2) == ["0", "1"]
    assert parse_gpus("all", visible="GPU-a,GPU-b", count=lambda: 2) == ["GPU-a", "GPU-b"]


@pytest.mark.parametrize("value, visible, said", [
    ("", None, "'' is not a device; allowed: all, or a comma-separated list"),
    ("0,,1", None, "'' is not a device"),
    ("cuda:0", None, "'cuda:0' is not a device"),
    ("0,0", None, "names a device twice"),
    ("2", "4,6", "shows 2 device(s), indexes 0 to 1"),
    ("all", None, "torch sees no CUDA device here; list the devices"),
])
def test_a_bad_gpus_value_is_refused_naming_the_option(value, visible, said):
    with pytest.raises(ConfigError, match="^--gpus ") as e:
        parse_gpus(value, visible=visible, count=lambda: 0)
    assert said in str(e.value)


def test_worker_gpus_refusals_are_one_line():
    result = CliRunner().invoke(cli, ["worker", "--gpus", "0,x"])
    assert result.exit_code == 1 and "--gpus '0,x': 'x' is not a device; allowed: all" in result.output
    result = CliRunner().invoke(cli, ["worker", "--gpus", "0", "--background"])
    assert result.exit_code == 1 and "--gpus cannot be used with --background" in result.output


# --- model affinity in the job log -----------------------------------------------------------------
@pytest.fixture
def db(store):  # noqa: F811 - the fixture imported above
    """A job log: SQLite, and PostgreSQL when one is reachable."""
    return store


def job(db, model, submit_time, **kw):
    engine, options = model
    return db.create(record(submit_time=submit_time, engine=engine, engine_options=options, **kw))[0].id


def test_a_new_job_goes_to_the_idle_worker_that_holds_its_model(db):
    db.hold("A", [(X[0], {"steps": 4, "model": "x"})], 1)  # the same options in another order are the same model
    db.hold("B", [Y], 1)
    x, y = job(db, X, 1.0), job(db, Y, 2.0)
    assert db.claim("B/t#1", 30).id == y  # its own model first, although x is older
    assert db.claim("B/t#2", 30) is None  # x is left to A, which holds it and is idle
    assert db.claim("A/t#1", 30).id == x


def test_a_job_held_elsewhere_goes_to_anyone_when_its_holder_is_busy_gone_or_late(db):
    db.hold("A", [X], 1)
    busy = job(db, Z, 0.5)
    assert db.claim("A/t#1", 30).id == busy  # A's one slot is taken now
    x = job(db, X, 1.0)
    assert db.claim("B/t#1", 30).id == x  # A is busy: B takes it
    db.finish(busy, "A/t#1", JobStatus.COMPLETED)

    x = job(db, X, 2.0)
    assert db.claim("B/t#2", 30) is None  # A is idle again
    db.timings = replace(db.timings, affinity_s=0.0)  # the job has waited its grace: anyone takes it
    assert db.claim("B/t#2", 30).id == x

    db.timings = replace(db.timings, affinity_s=3600.0)
    x = job(db, X, 3.0)
    assert db.claim("B/t#3", 30) is None
    db.timings = replace(db.timings, lease_s=0.0)  # A has not said it holds X for a lease: taken for gone
    assert db.claim("B/t#3", 30).id == x


def test_recovery_forgets_what_a_dead_worker_held(db):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = f"{os.uname().nodename}:{gone.pid}:0123abcd:gpu=1"
    assert worker_is_dead(dead)
    db.hold(dead, [X], 1)
    db.hold("A:1:live", [Y], 1)  # another machine's worker, seen just now: kept
    x, y = job(db, X, 1.0), job(db, Y, 2.0)
    assert db.claim("B/t#1", 30) is None  # both holders look idle and live (the dead one is still within its lease)
    db.recover(3, worker_is_dead)
    assert db.claim("B/t#1", 30).id == x  # the dead worker's holding is forgotten
    assert db.claim("B/t#2", 30) is None  # the other machine's is kept: y still waits for it
    assert db.claim("A:1:live/t#1", 30).id == y


def test_a_job_nobody_else_holds_is_not_passed_over_once_it_has_waited(db):
    db.hold("B", [Y], 1)
    z, y = job(db, Z, 1.0), job(db, Y, 2.0)
    assert db.claim("B/t#1", 30).id == y  # a new job of its own model before an older one that has not waited long
    db.finish(y, "B/t#1", JobStatus.COMPLETED)
    waited = job(db, Z, 2.5, last_modified=time.time() - 60)  # queued a minute ago (REELFORGE_AFFINITY_S is 10 s)
    y2 = job(db, Y, 3.0)
    assert [db.claim(f"B/t#{n}", 30).id for n in (2, 3, 4)] == [waited, y2, z]


def test_a_worker_records_the_models_it_holds_and_erases_them_when_it_stops(db, tmp_path, monkeypatch):
    monkeypatch.setenv("REELFORGE_TEST_GPU_LOG", str(tmp_path))

    def held():
        with db._conn() as c:
            rows = c.execute("SELECT worker_id, engine, engine_options, slots FROM worker_engines").fetchall()
        return [(r["worker_id"], r["engine"], r["engine_options"], r["slots"]) for r in rows]

    runtime = Runtime(db)
    runtime.submit("test.gpu-y", VideoRequest(text="y", duration_s=1, fps=8, width=64, height=64), tmp_path / "out")
    assert runtime.run_until_idle() == 1
    assert held() == [(runtime.worker_id, "test-gpu", '{"model": "y"}', 1)]
    runtime.stop()
    assert held() == []


# --- reelforge worker --gpus: processes --------------------------------------------------------------
class GpuWorkers:
    """``reelforge worker --gpus ...`` as a child process; what it and its workers print is collected."""

    def __init__(self, env, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "reelforge", "worker", *args], env=env, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    def said(self, text):
        return [line for line in self.lines if text in line]


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(params=["sqlite", "postgres"])
def job_log(request, reelforge_home):
    return str(reelforge_home / "jobs.sqlite3") if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_one_worker_per_gpu_each_keeping_its_model(job_log, tmp_path):
    log = tmp_path / "gpu-log"
    log.mkdir()
    site = gpu_engines.install(tmp_path / "site")
    env = {**os.environ, "REELFORGE_TEST_GPU_LOG": str(log), "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), str(site)]),
           "REELFORGE_AFFINITY_S": "300"}  # however slow this machine, a new job waits for its model's idle worker
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if job_log.startswith("postgresql"):
        env["REELFORGE_DATABASE_URL"] = job_log
    runtime = Runtime(open_store(job_log))

    def submit(model, text):
        request = VideoRequest(text=text, duration_s=1, fps=8, width=64, height=64)
        return runtime.submit(f"test.gpu-{model}", request, tmp_path / "out")[0].id

    def seen(text):
        path = log / f"{text}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def ended(job_id):
        record = runtime.get(job_id)
        assert record.status is not JobStatus.FAILED, record.failure_message
        return record.status is JobStatus.COMPLETED

    workers = GpuWorkers(env, "--gpus", "0,1")
    try:
        wait_for(lambda: len(workers.said(" running 1 thread(s) on GPU ")) == 2, 60, "both GPU workers to start")
        assert workers.said("2 worker(s), one per GPU: GPU 0 (pid ")
        # Warm up: x1 holds one worker busy, so y1 can only go to the other GPU.
        x1 = submit("x", "wait x1")
        wait_for(lambda: seen("wait x1"), 60, "x1 to start")
        y1 = submit("y", "wait y1")
        wait_for(lambda: seen("wait y1"), 60, "y1 to start")
        holder = {"x": seen("wait x1")["device"], "y": seen("wait y1")["device"]}
        assert sorted(holder.values()) == ["0", "1"]  # each worker saw only its own device
        for text in ("wait x1", "wait y1"):
            (log / f"{text}.go").touch()
        wait_for(lambda: ended(x1) and ended(y1), 60, "x1 and y1 to complete")

        # Both workers idle: each job goes to the worker that holds its model.
        for model, text in [("y", "y2"), ("x", "x2"), ("y", "y3"), ("x", "x3")]:
            job_id = submit(model, text)
            wait_for(lambda: ended(job_id), 60, f"{text} to complete")
            assert seen(text)["device"] == holder[model], (text, seen(text), holder)
            assert runtime.get(job_id).worker_id.split("/")[0].endswith(f":gpu={holder[model]}")  # the worker id names its GPU
        loads = sorted(line.split()[1:] for line in (log / "loads").read_text().splitlines())
        assert loads == sorted([[holder["x"], "x"], [holder["y"], "y"]])  # one load each, kept warm

        # A worker that dies is reported and not restarted; the other goes on.
        _kill(seen("wait y1")["pid"])
        wait_for(lambda: workers.said("not restarted"), 30, "the dead worker to be reported")
        assert f"worker on GPU {holder['y']} (pid {seen('wait y1')['pid']}) was killed by signal 9" in workers.said("not restarted")[0]
        z = submit("x", "wait z")
        wait_for(lambda: seen("wait z"), 60, "z to start")
        assert seen("wait z")["device"] == holder["x"]

        # SIGTERM stops every worker; the running job goes back to the queue without costing an attempt.
        workers.proc.send_signal(signal.SIGTERM)
        assert workers.proc.wait(60) == 1  # one of its workers had failed
        stopped = runtime.get(z)
        assert stopped.status is JobStatus.QUEUED and stopped.attempts == 0, (stopped.status, stopped.stage)
        assert workers.said(f"worker on GPU {holder['x']} (pid {seen('wait z')['pid']}) stopped")
    finally:
        for text in ("wait x1", "wait y1", "wait z"):
            if seen(text):
                _kill(seen(text)["pid"])
        _kill(workers.proc.pid)
        runtime.stop()

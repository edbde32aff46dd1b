"""Embedded jobs always finish: the data dir's background worker, as a user's scripts meet it."""

from __future__ import annotations

import os
import subprocess
import sys

from faults import wait_for
from reelforge import Client, JobStatus
from reelforge import media
from reelforge.jobs.background import background_pid

START = """
import sys
from reelforge import Client, VideoRequest
client = Client()
for n in range(int(sys.argv[1])):
    job = client.start(VideoRequest(text=f"a paper boat {n}. Camera pan left.", duration_s=int(sys.argv[2]), fps=8, width=96, height=64), model="reelforge.animatic-v1")
    print(job.id, flush=True)
"""


def _script(count: int = 1, seconds: int = 1) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", START, str(count), str(seconds)], stdout=subprocess.PIPE, text=True, env=os.environ.copy())


def _reelforge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reelforge", *args], capture_output=True, text=True, env=os.environ.copy(), timeout=120)


def test_a_script_that_exits_leaves_its_job_to_the_background_worker(background_worker, monkeypatch):
    monkeypatch.setenv("REELFORGE_WORKER_IDLE_S", "1")
    proc = _script()
    job_id = proc.communicate(timeout=60)[0].strip()
    assert proc.returncode == 0 and len(job_id) == 12  # the script is gone; nothing else is called
    waited = _reelforge("jobs", "wait", job_id)
    assert waited.returncode == 0, waited.stderr
    path = waited.stdout.strip()
    assert path.endswith(f"{job_id}/output.mp4") and media.probe(path).frames == 8
    # A while after the queue empties, the background worker exits on its own.
    wait_for(lambda: background_pid(background_worker) is None, 30, "the background worker to exit")


def test_a_killed_script_and_a_killed_worker_lose_nothing(background_worker, monkeypatch):
    monkeypatch.setenv("REELFORGE_LEASE_S", "3")
    proc = _script(seconds=8)
    job_id = proc.stdout.readline().strip()
    proc.kill()  # kill -9 of the script right after its job was recorded
    proc.wait()
    pid = wait_for(lambda: background_pid(background_worker), 30, "the background worker to start")
    client = Client()
    wait_for(lambda: client.get(job_id).status is JobStatus.RUNNING and client.get(job_id).progress > 0, 60, "the job to start")
    os.kill(pid, 9)  # and kill -9 of the worker in the middle of the job
    job = client.get(job_id).wait(timeout=120)  # waiting starts a new background worker, which takes the job over
    assert job.status is JobStatus.COMPLETED and job.record.attempts == 2
    assert media.probe(job.video_path).frames == 64
    assert background_pid(background_worker) not in (None, pid)


def test_one_background_worker_serves_many_scripts(background_worker):
    scripts = [_script(count=2) for _ in range(3)]
    ids = [line for s in scripts for line in s.communicate(timeout=60)[0].split()]
    assert len(ids) == 6
    client = Client()
    for job_id in ids:
        client.get(job_id).wait(timeout=120)
    pids = {client.get(i).record.worker_id.split(":")[1] for i in ids}
    assert len(pids) == 1  # one process loaded the engine and ran them all
    assert str(background_pid(background_worker)) in pids

"""A claimed unit's lease: who holds it (worker ids), its renewal, its progress, and losing it."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable

from reelforge import config
from reelforge.config import Timings
from reelforge.errors import JobCanceled, ReelforgeError
from reelforge.jobs.record import Beat, JobRecord, JobStore

log = logging.getLogger("reelforge.worker")


class LeaseLost(Exception):
    """This worker's claim on a unit is gone: another attempt owns the job; stop and write nothing."""


def new_worker_id() -> str:
    """``host:pid:random``, and ``:gpu=DEVICES`` when CUDA_VISIBLE_DEVICES is set (one worker per GPU)."""
    gpu = config.gpu()
    # "/" separates a process from its claims (PROCESS/THREAD#N): a MIG id's slashes become dots.
    device = f":gpu={gpu.replace('/', '.')}" if gpu else ""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}{device}"


def worker_is_dead(worker_id: str | None) -> bool:
    """True when ``worker_id`` names a process on this host that no longer runs (or is a zombie)."""
    if not worker_id:
        return True
    host, _, rest = worker_id.partition(":")
    if host != socket.gethostname():
        return False  # another machine's worker: only its lease tells
    try:
        pid = int(rest.split(":")[0])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return True
    except PermissionError:
        return False
    try:  # a killed process nobody has reaped yet still answers kill(pid, 0)
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


class JobProgress:
    """The progress callable handed to engines: records progress, renews the lease, carries cancel."""

    def __init__(self, store: JobStore, job: JobRecord, worker_id: str, shot_count: int, notify: Callable[[str], None] | None, timings: Timings):
        self.store, self.job, self.worker_id = store, job, worker_id
        self.timings = timings
        self.shot_count = shot_count
        self.shot = 0
        self.metadata: dict[str, Any] = {}
        self.notify = notify
        self._last = 0.0
        self.value = 0.0
        self.stage = "starting"
        self.canceled = False
        self.lost = False
        self.deferred = False  # True on an AsyncLane: the lane renews; an engine's reports touch no database
        self.task: asyncio.Future | None = None  # the engine's render being awaited on the lane, if any
        self.stopping = False

    def __call__(self, done: int, total: int, stage: str = "") -> None:
        frac = (self.shot + (done / total if total else 0.0)) / self.shot_count
        self.value = max(self.value, min(frac, 1.0) * 0.97)  # the last 3% is encoding and publishing
        label = f"shot {self.shot + 1}/{self.shot_count}: {stage}" if self.shot_count > 1 else stage
        self.beat(label)

    def beat(self, stage: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.deferred and not force:
            self.stage = stage  # the lane's renewals carry it
        elif force or now - self._last >= self.timings.heartbeat_s:
            self._last = now
            try:
                self.renew(stage)
            except ReelforgeError as exc:  # the job log blinked: keep rendering; the lease has room
                log.warning("job %s: progress not recorded: %s", self.job.id, exc)
        self.check()

    def check(self) -> None:
        """Raise when the unit must stop: LeaseLost when another attempt owns it, JobCanceled on cancel."""
        if self.lost:
            raise LeaseLost(self.job.id)
        if self.canceled:
            raise JobCanceled(self.job.id)

    def renew(self, stage: str | None = None) -> None:
        """Renew the lease and record progress; notes a cancel or a lost claim without raising."""
        self.stage = stage if stage is not None else self.stage
        beat = self.store.heartbeat(self.job.id, self.worker_id, self.timings.lease_s, self.value, self.stage, fence=self.job.fence)
        if beat is Beat.LOST:
            self.lost = True
        elif beat is Beat.CANCEL:
            self.canceled = True
        if self.notify:
            self.notify(self.job.id)

    def begin(self) -> None:
        """The engine starts on this unit now: from here a crash counts as one of the job's attempts."""
        attempts = self.store.begin_attempt(self.job.id, self.worker_id, self.job.fence)
        if attempts is None:
            self.lost = True
        else:
            self.job.attempts = attempts
        self.check()


class LeaseKeeper:
    """Renews a unit's lease from a thread of its own, so steps that report no progress (loading
    weights, waiting for a shared engine, joining, uploading) never look like a dead worker."""

    def __init__(self, progress: JobProgress):
        self.progress = progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease {progress.job.id}", daemon=True)

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.progress.timings.lease_s / 3):
            try:
                self.progress.renew()
            except Exception:  # a missed renewal is retried; the lease has room for two more
                log.warning("could not renew the lease of %s", self.progress.job.id, exc_info=True)
            if self.progress.lost:
                return

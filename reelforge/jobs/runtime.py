"""The runtime: one door through which every entry point creates jobs, and the worker threads.

``Runtime.submit`` checks a request against its model, records the job (QUEUED) in the job log
and wakes a worker, all before it returns. The CLI, the Python API and the server all use it.

A runtime that works (threads, or ``run`` in the calling thread) also runs two services of its
own: recovery on a timer (every ``recover_s``, whatever its workers are doing, so a dead worker's
job restarts within lease + recover_s even when every worker is busy) and, on PostgreSQL, a
listener that wakes idle workers the moment a job becomes claimable anywhere.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, cast

from reelforge import config
from reelforge.jobs.background import FileLock, presence
from reelforge.errors import QueueFullError
from reelforge.jobs.open import open_store
from reelforge.jobs.record import JobRecord, JobStatus, JobStore
from reelforge.engines.forward import Forwards
from reelforge.jobs.lifecycle import LifecycleReader
from reelforge.engines.catalog import add_forwarded
from reelforge.request.model import VideoRequest
from reelforge.jobs.retention import prune, prune_every_s, retain_from_env
from reelforge.storage import storage_for
from reelforge.engines.remote import cancel_upstream
from reelforge.jobs import webhooks as webhooks_module
from reelforge.jobs.ending import finalize_ended
from reelforge.jobs.engine_cache import EngineCache, Holdings, is_coroutine_engine
from reelforge.jobs.folder import sweep_staging
from reelforge.jobs.lane import AsyncLane
from reelforge.jobs.lease import new_worker_id, worker_is_dead
from reelforge.jobs.submission import new_record
from reelforge.jobs.webhook_dispatch import Dispatcher
from reelforge.jobs.worker import perform, unit_steps

log = logging.getLogger("reelforge.runtime")
_FROM_ENV = object()  # retain_s: read REELFORGE_RETAIN


class Runtime:
    def __init__(
        self,
        store: JobStore | None = None,
        *,
        region: str | None = None,
        account: str | None = None,
        fetch_s3: Callable[[str, str | None], bytes] | None = None,
        map_output: Callable[[str], str] | None = None,
        forwards: Forwards | None = None,
        lifecycle: LifecycleReader | None = None,
        retain_s: float | None | object = _FROM_ENV,
        webhooks: "webhooks_module.Settings | None" = None,
        public_url: str | None = None,
    ):
        self.forwards = forwards if forwards is not None else Forwards.from_env()
        for f in self.forwards.entries.values():
            add_forwarded(f.model_id, f.kind)
        self._lifecycle = lifecycle
        self.store = store or open_store(config.job_store_location())
        self.webhooks = webhooks if webhooks is not None else webhooks_module.Settings.from_env()
        self.public_url = public_url  # where a server serves the files its webhooks link to
        self.timings = config.timings()
        self.region = region or config.region()
        self.account = account or config.account()
        self.fetch_s3 = fetch_s3
        self.map_output = map_output  # requested output URI -> where files really go
        self.max_queued: int | None = None  # reelforge serve --max-queued: refuse new jobs beyond it
        self._admission = threading.Lock()  # the count and the insert as one step in this process
        # Jobs that ended longer ago than this are pruned while this runtime works (None: kept).
        self.retain_s = retain_from_env() if retain_s is _FROM_ENV else retain_s
        self.engines = EngineCache(on_load=lambda: self.holdings.record())
        self._in_run = 0  # threads working through run() (the worker threads are counted apart)
        self._changed = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._services: list[threading.Thread] = []
        self._pruner: threading.Thread | None = None
        self._stop = threading.Event()
        self._presence: FileLock | None = None
        self.worker_id = new_worker_id()
        self.holdings = Holdings(self.store, self.worker_id, self.engines, self._slots, self._stop)
        self.dispatcher = Dispatcher(self.store, self.webhooks, self._stop)
        self._claims = itertools.count(1)
        self._lane: AsyncLane | None = None
        self._lane_lock = threading.Lock()
        self.recover()

    @property
    def folder(self) -> Path | None:
        """The folder of an SQLite job log (where its lock files live); None for PostgreSQL."""
        path = getattr(self.store, "path", None)
        return Path(path).parent if path is not None else None

    # --- jobs ------------------------------------------------------------------------------
    def submit(
        self,
        model_id: str,
        request: VideoRequest | dict[str, Any],
        output: str | os.PathLike | None = None,
        *,
        client_token: str | None = None,
        tags: list[dict[str, str]] | None = None,
        output_config: dict[str, Any] | None = None,
        region: str | None = None,
        wire: str = "bedrock",
        wire_request: dict[str, Any] | None = None,
        prepare: Callable[[JobRecord], None] | None = None,
        webhook: str | None = None,
        webhook_events: str | list[str] | None = None,
        audio: bool = True,
    ) -> tuple[JobRecord, bool]:
        """Validate and record a job; return it and whether it is new (False: same token seen).

        ``wire`` and ``wire_request`` say which API the job came on and what it asked there (kept
        with the job, written to its manifest); ``prepare(record)`` runs after every check and
        before the job is recorded, to place input files in its folder (an extension's source).
        ``webhook`` is a URL notified of this job's events (``webhook_events``, default all but
        progress) besides the endpoints of the settings; a Bedrock tag ``reelforge:webhook`` names
        one of the settings' named endpoints (webhooks.py).
        ``audio=False`` records that the video is to be silent even when its engine makes sound.
        """
        record = new_record(self, model_id, request, output, client_token=client_token, tags=tags, output_config=output_config,
                            region=region, wire=wire, wire_request=wire_request, webhook=webhook, webhook_events=webhook_events, audio=audio)
        storage_uri = record.storage_uri
        with self._admission if self.max_queued is not None else contextlib.nullcontext():
            self.admit(client_token)
            if prepare is not None:
                prepare(record)
            record, created = self.store.create(record)
        if prepare is not None and not created:  # a repeated token: the job it repeats has files of its own
            storage_for(storage_uri).remove_tree(storage_uri)
        if created:
            log.info("job %s queued (%s)", record.id, model_id)
            self.notify(record.id)
        return record, created

    @property
    def lifecycle(self) -> LifecycleReader:
        if self._lifecycle is None:
            self._lifecycle = LifecycleReader()
        return self._lifecycle

    def admit(self, client_token: str | None) -> None:
        """QueueFullError when ``max_queued`` top-level jobs are queued, unless the token repeats a recorded job.

        Exact within one process (the count and the insert happen under one lock); several server
        processes on one PostgreSQL job log may each see room at the same moment, so there the queue can
        pass the limit by as many processes as submit at once. A repeated token is always answered, also
        one whose job retention pruned (create answers with its tombstone).
        """
        if self.max_queued is None:
            return
        if self.store.count(statuses=[JobStatus.QUEUED], cap=self.max_queued) < self.max_queued:
            return
        if client_token is not None and cast(Any, self.store).token_recorded(client_token):  # a pruned job's tombstone too
            return
        raise QueueFullError(self.max_queued)

    def get(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    def cancel(self, job_id: str) -> JobRecord:
        before = self.store.get(job_id)
        record = self.store.request_cancel(job_id)
        self.notify(job_id)
        if before.status is JobStatus.QUEUED and record.status is JobStatus.CANCELED:
            # No worker follows it: a forwarded job requeued after a crash still has its upstream job.
            cancel_upstream(record)
        if self._lane is not None:
            self._lane.poke()
        return record

    def delete(self, job_id: str, wait_s: float = 30.0) -> JobRecord | None:
        """Cancel a job that has not ended, wait up to ``wait_s`` for it to end, then remove its files.

        The record stays (a tombstone: its id and client token are never reused), marked with its
        deletion time. Returns None when the job is still running after ``wait_s`` (its worker
        has not stopped yet); nothing is removed then.
        """
        record = self.store.get(job_id)
        if not record.status.done:
            record = self.cancel(job_id)
        deadline = time.monotonic() + wait_s
        while not record.status.done:
            if time.monotonic() > deadline:
                return None
            self.wait_for_change(0.2)
            record = self.store.get(job_id)
        storage_for(record.storage_uri).remove_tree(record.storage_uri)
        return self.store.mark_deleted(job_id)

    def recover(self) -> list[str]:
        """Requeue the units of workers that are gone; finish the files of jobs that ends."""
        ids = self.store.recover(self.timings.max_attempts, worker_is_dead)
        if ids:
            log.warning("recovered units left running by a stopped worker: %s", ", ".join(ids))
            self.notify()
            for job_id in ids:
                unit = self.store.get(job_id)
                job = self.store.get(unit.parent_id) if unit.parent_id else unit
                if job.status in (JobStatus.FAILED, JobStatus.CANCELED):
                    log.error("job %s %s: %s", job.id, job.status.value.lower(), job.failure_message)
                    finalize_ended(job, job.failure_message or "Canceled.")
                    if job.status is JobStatus.CANCELED:
                        cancel_upstream(job)
        return ids

    # --- change notification (in-process waiters) -------------------------------------------
    def notify(self, job_id: str | None = None) -> None:
        with self._changed:
            self._changed.notify_all()
        self.dispatcher.wake()  # a job changed here: its deliveries, if any, are due now

    def wait_for_change(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)

    # --- workers ---------------------------------------------------------------------------
    def start_workers(self, count: int = 1) -> None:
        self._start_services()
        alive = [t for t in self._threads if t.is_alive()]
        for n in range(len(alive), count):
            t = threading.Thread(target=self._work, name=f"reelforge-worker-{n}", daemon=True)
            t.start()
            alive.append(t)
        self._threads = alive

    def run_until_idle(self) -> int:
        """Work in the calling thread until no job is queued; return how many units ran."""
        return self.run(idle_exit_s=0.0)

    def run(self, idle_exit_s: float | None = None) -> int:
        """Work in the calling thread; with ``idle_exit_s``, return once the queue stays empty that long.

        Before it returns, the runtime gives up its presence lock and then looks at the queue one
        last time, so a job recorded by a client that saw the lock held is never stranded.
        """
        self._start_services()
        self._in_run += 1
        try:
            return self._run(idle_exit_s)
        finally:
            self._in_run -= 1

    def _run(self, idle_exit_s: float | None) -> int:
        ran, idle_since = 0, None
        while not self._stop.is_set():
            if self._run_guarded():
                ran, idle_since = ran + 1, None
                continue
            if self.lane_busy:  # units on the async lane are still this worker's work
                idle_since = None
                self.wait_for_change(0.2)
                continue
            now = time.monotonic()
            idle_since = idle_since if idle_since is not None else now
            if idle_exit_s and now - idle_since >= idle_exit_s and self.dispatcher.pending():
                idle_since = now  # webhooks still to send (a receiver is down): a worker with an idle timeout stays for them
            if idle_exit_s is not None and now - idle_since >= idle_exit_s:
                self._release_presence()
                if not self._run_guarded():
                    return ran
                ran, idle_since = ran + 1, None
                self._hold_presence()
                continue
            self.wait_for_change(1.0 if idle_exit_s is None else max(0.01, min(1.0, idle_exit_s - (now - idle_since))))
        return ran

    def run_one(self) -> bool:
        """Claim a unit and run it; a coroutine engine's unit is handed to the async lane and this returns at once."""
        # Each claim has an owner of its own (worker id + "/thread#n"), so a unit recovered from one
        # thread and claimed by another, or two units on the lane, are never mistaken for each other.
        owner = f"{self.worker_id}/{threading.current_thread().name}#{next(self._claims)}"
        job = self.store.claim(owner, self.timings.lease_s)
        if job is None:
            return False
        self.notify(job.id)
        if job.engine and is_coroutine_engine(job.engine):
            lane = self.lane()
            lane.start(unit_steps(self.store, job, owner, self.engines, self.timings, notify=self.notify,
                                  fetch_s3=self.fetch_s3, keeper=lane.keeper, forwards=self.forwards))
            return True
        perform(self.store, job, owner, self.engines, self.timings, notify=self.notify, fetch_s3=self.fetch_s3, forwards=self.forwards)
        self.notify(job.id)
        return True

    def lane(self) -> AsyncLane:
        """The event loop that follows this process's units of coroutine engines (started on first use)."""
        with self._lane_lock:
            if self._lane is None:
                self._lane = AsyncLane(self.timings, self.notify, capacity=config.async_units())
            return self._lane

    @property
    def lane_busy(self) -> bool:
        return self._lane is not None and self._lane.busy

    def _run_guarded(self) -> bool:
        """``run_one``, pausing with back-off while the job log cannot be used (it must not end the worker)."""
        pause = self.timings.backoff_s
        while not self._stop.is_set():
            try:
                return self.run_one()
            except Exception:
                log.exception("worker loop error; trying again in %.1f s", pause)
                self._stop.wait(pause)
                pause = min(pause * 2, self.timings.backoff_max_s)
        return False

    def _work(self) -> None:
        while not self._stop.is_set():
            if not self._run_guarded():
                self.wait_for_change(1.0)

    # --- services: recovery timer, job notifications, retention, presence -----------------------
    def _start_services(self) -> None:
        if self._services:
            return
        self._hold_presence()
        sweep_staging(worker_is_dead)
        for target, name in ((self._recover_loop, "reelforge-recovery"), (self._listen, "reelforge-listen")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._services.append(t)
        self.start_pruning()
        self.start_dispatcher()

    def start_pruning(self) -> None:
        """Prune on a timer when a retention is set (a server with no worker threads calls this alone)."""
        if self.retain_s is None or self._pruner is not None:
            return
        self._pruner = threading.Thread(target=self._prune_loop, name="reelforge-prune", daemon=True)
        self._pruner.start()

    def start_dispatcher(self) -> None:
        """Send the job log's webhook deliveries from this process (those signed with its secret)."""
        self.dispatcher.start()

    def _recover_loop(self) -> None:
        held_at = time.monotonic()
        while not self._stop.wait(self.timings.recover_s):
            try:
                self.recover()
                if time.monotonic() - held_at >= self.timings.lease_s / 3:
                    held_at = time.monotonic()
                    self.holdings.record(beat=True)
            except Exception:  # the job log may be away; the next round tries again
                log.warning("recovery round failed", exc_info=True)

    def _slots(self) -> int:
        """How many units this process runs at once: its worker threads and the threads in ``run``."""
        return sum(t.is_alive() for t in self._threads) + self._in_run

    def _prune_loop(self) -> None:
        """Prune jobs past the retention every ``prune_every_s`` (the first round right away)."""
        every = prune_every_s(cast(float, self.retain_s))  # started only with a retention
        while not self._stop.is_set():
            try:
                prune(self.store, cast(float, self.retain_s))
            except Exception:  # the job log or storage may be away; the next round tries again
                log.warning("prune round failed", exc_info=True)
            self._stop.wait(every)

    def _listen(self) -> None:
        self.store.listen(self.notify, self._stop)

    def _hold_presence(self) -> None:
        if self.folder is not None and self._presence is None:
            lock = presence(self.folder)
            if lock.acquire(wait=True):
                self._presence = lock

    def _release_presence(self) -> None:
        if self._presence is not None:
            self._presence.release()
            self._presence = None

    def release(self) -> list[str]:
        """Stop taking work and put what this process is running back in the queue for another worker."""
        self._stop.set()
        ids = self.store.release(self.worker_id)
        self.holdings.forget()
        self._release_presence()
        if ids:
            log.info("put back in the queue as this worker stops: %s", ", ".join(ids))
        self.notify()
        return ids

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self.notify()
        self.dispatcher.wake()
        for t in self._threads + self._services + self.dispatcher.threads + ([self._pruner] if self._pruner else []):
            t.join(timeout)
        if self._lane is not None:
            self._lane.stop(timeout)
        self._release_presence()
        self.holdings.forget()
        self.engines.close()

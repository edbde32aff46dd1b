"""How a unit's steps are driven: in the calling thread (``drive``), or many at once on one event loop (``AsyncLane``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Generator

from reelforge.config import Timings
from reelforge.errors import JobCanceled
from reelforge.jobs.lease import JobProgress, LeaseLost
from reelforge.jobs.record import JobStatus

log = logging.getLogger("reelforge.worker")


class AsyncLane:
    """One event loop, in one thread, following every unit of a coroutine engine this process runs.

    A unit's own steps (job-log writes, loading the engine, encoding, publishing) run in a small
    pool of threads; while its engine awaits (a remote service, a poll, a sleep) it holds no
    thread, so one worker follows many such jobs at once. One task renews every unit's lease; a
    cancel, a lost claim or a stopping worker cancels the engine's await at once.
    """

    def __init__(self, timings: Timings, notify: Callable[..., None] | None = None, capacity: int = 64, steps_threads: int = 4):
        self.timings, self.notify = timings, notify or (lambda *a: None)
        self.room = threading.BoundedSemaphore(capacity)
        self.pool = ThreadPoolExecutor(steps_threads, thread_name_prefix="reelforge-lane-step")
        self.loop = asyncio.new_event_loop()
        self.units: dict[JobProgress, tuple[float, Any]] = {}  # each unit's last renewal: when, and what it said
        self.in_flight = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run_loop, name="reelforge-lane", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        with self._lock:
            return self.in_flight > 0

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        renewals = self.loop.create_task(self._renew_all())
        self.loop.run_forever()
        renewals.cancel()
        self.loop.run_until_complete(asyncio.gather(renewals, return_exceptions=True))
        self.loop.close()

    def start(self, steps: Generator[Any, Any, Any]) -> None:
        """Take a claimed unit (its ``unit_steps`` made with ``keeper=lane.keeper``); waits while the lane is full."""
        self.room.acquire()
        with self._lock:
            self.in_flight += 1
        asyncio.run_coroutine_threadsafe(self._follow(steps), self.loop).add_done_callback(self._ended)

    def _ended(self, future) -> None:
        with self._lock:
            self.in_flight -= 1
        self.room.release()
        if not future.cancelled() and future.exception() is not None and not isinstance(future.exception(), Stopping):
            log.error("async lane: a unit ended with %r", future.exception())
        self.notify()

    async def _follow(self, steps: Generator[Any, Any, Any]) -> None:
        loop = asyncio.get_running_loop()
        value: Any = None
        error: BaseException | None = None
        while True:
            kind, step = await loop.run_in_executor(self.pool, _advance, steps, value, error)
            if kind == "done":
                return
            if kind == "raised":
                if isinstance(step, Stopping):
                    return
                raise step
            progress = step.progress
            progress.task = asyncio.ensure_future(step.awaitable)
            try:
                value, error = await progress.task, None
            except asyncio.CancelledError:  # by _renew_all or stop(): say why to the unit's steps
                value = None
                error = Stopping() if progress.stopping else LeaseLost(progress.job.id) if progress.lost else JobCanceled(progress.job.id)
            except BaseException as exc:
                value, error = None, exc
            finally:
                progress.task = None

    @contextlib.contextmanager
    def keeper(self, progress: JobProgress):
        """What a lane unit has in place of a LeaseKeeper thread: a place in the lane's renewals."""
        with self._lock:
            self.units[progress] = (time.monotonic(), None)
        try:
            yield
        finally:
            with self._lock:
                self.units.pop(progress, None)

    async def _renew_all(self) -> None:
        """Renew each unit's lease every lease_s / 3, sooner (heartbeat_s) when its progress moved;
        cancel the engine's await of a unit that was canceled or whose claim was lost."""
        loop = asyncio.get_running_loop()
        tick = max(0.05, min(self.timings.lease_s / 3, self.timings.heartbeat_s))
        while True:
            await asyncio.sleep(tick)
            with self._lock:
                units = list(self.units.items())
            for progress, (last, said) in units:
                now, news = time.monotonic(), (round(progress.value, 3), progress.stage)
                if now - last >= self.timings.lease_s / 3 or (news != said and now - last >= self.timings.heartbeat_s):
                    try:
                        await loop.run_in_executor(self.pool, progress.renew)
                    except Exception:  # a missed renewal is retried; the lease has room for more
                        log.warning("could not renew the lease of %s", progress.job.id, exc_info=True)
                    with self._lock:
                        if progress in self.units:
                            self.units[progress] = (now, news)
                if (progress.canceled or progress.lost) and progress.task is not None:
                    progress.task.cancel()

    def poke(self) -> None:
        """Renew every unit at the next tick (a cancel was asked in this process: act on it now)."""
        with self._lock:
            for progress, (_, said) in self.units.items():
                self.units[progress] = (0.0, said)

    def stop(self, timeout: float = 10) -> None:
        """Hand every unit still awaiting its engine back to the queue, then stop the loop."""
        if not self._thread.is_alive():
            return
        def cancel_all():
            with self._lock:
                units = list(self.units)
            for progress in units:
                progress.stopping = True
                if progress.task is not None:
                    progress.task.cancel()

        self.loop.call_soon_threadsafe(cancel_all)
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.02)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        self.pool.shutdown(wait=False, cancel_futures=True)


def _advance(steps: Generator[Any, Any, Any], value, error):
    """Run a unit's steps up to their next await (in a pool thread): ("await", Await), ("done", status), ("raised", exc)."""
    try:
        return "await", (steps.throw(error) if error is not None else steps.send(value))
    except StopIteration as done:
        return "done", done.value
    except BaseException as exc:  # KeyboardInterrupt, SystemExit, Stopping: re-raised by the unit's steps after end_unit
        return "raised", exc


class Stopping(BaseException):
    """Thrown into a unit whose worker is stopping: it goes back to the queue (as on KeyboardInterrupt)."""


@dataclass
class Await:
    """What a unit's steps hand their driver to await: a coroutine engine's render of one shot."""

    awaitable: Awaitable
    progress: "JobProgress"


def drive(steps: Generator[Any, Any, Any]) -> JobStatus:
    value, error = None, None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as done:
            return done.value
        try:
            value, error = asyncio.run(_awaited(step.awaitable)), None
        except BaseException as exc:  # handed back to the unit's steps, its one failure path
            value, error = None, exc


async def _awaited(awaitable: Awaitable):
    return await awaitable

"""The worker: claim a job, render its shots, encode, publish, record. One failure path.

Every engine error, cancel and crash ends in ``_end`` (via ``perform``), which marks the job
FAILED or CANCELED with a readable message and keeps the traceback in the log only. A unit whose
claim was lost (its lease expired while the worker was frozen or cut off, or the process is
stopping) ends quietly instead: its next attempt, elsewhere, owns the job now.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Generator

from reelforge import config
from reelforge import media
from reelforge.config import Timings
from reelforge.engines import Engine, RenderContext, ShotPlan, get_engine_class
from reelforge.errors import JobCanceled, ReelforgeError
from reelforge.jobs.record import Beat, JobRecord, JobStatus, JobStore, new_job_id, options_text
from reelforge.request.limits import forwarded_spec, get_model
from reelforge.request.model import VideoRequest, check
from reelforge.storage import LocalStorage, join, local_path, storage_for

log = logging.getLogger("reelforge.worker")

STAGING_PREFIX = "reelforge-stage-"  # temp folders for S3 outputs: reelforge-stage-<pid>-...
CHECKPOINTS = ".checkpoints"  # <job>/.checkpoints/shot_NNNN/: what a shot's attempts keep for the next one (never an output)


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


class EngineCache:
    """One engine instance per (engine, options) per worker, reused across jobs (weights stay loaded).

    ``on_load()`` is called after an engine is loaded (the runtime records what its process holds,
    ``held``, for model affinity: stores.py, claim)."""

    def __init__(self, on_load: Callable[[], None] | None = None):
        self._engines: dict[tuple[str, str], tuple[dict[str, Any], Engine]] = {}
        self._lock = threading.Lock()
        self.on_load = on_load

    def get(self, engine_id: str, options: dict[str, Any]) -> Engine:
        key = (engine_id, options_text(options))
        with self._lock:
            found = self._engines.get(key)
            loaded = found is None
            if loaded:
                found = self._engines[key] = (dict(options), get_engine_class(engine_id)(options))
        if loaded and self.on_load is not None:
            self.on_load()
        return found[1]

    def held(self) -> list[tuple[str, dict[str, Any]]]:
        """The engines loaded now, as (engine id, options)."""
        with self._lock:
            return [(engine_id, options) for (engine_id, _), (options, _) in self._engines.items()]

    def close(self) -> None:
        with self._lock:
            for _, engine in self._engines.values():
                try:
                    engine.close()
                except Exception:  # closing must not hide the rest
                    log.exception("closing engine %s", engine.engine_id)
            self._engines.clear()


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


class _LeaseKeeper:
    """Renews a unit's lease from a thread of its own, so steps that report no progress (loading
    weights, waiting for a shared engine, joining, uploading) never look like a dead worker."""

    def __init__(self, progress: JobProgress):
        self.progress = progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease {progress.job.id}", daemon=True)

    def __enter__(self) -> "_LeaseKeeper":
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


def is_remote_engine(engine_id: str | None) -> bool:
    """True for the engines that forward whole jobs upstream (engines/remote.py)."""
    try:
        return bool(engine_id) and getattr(get_engine_class(engine_id), "remote", False)
    except ReelforgeError:
        return False


def is_coroutine_engine(engine_id: str) -> bool:
    """True when the engine's ``render`` is ``async def``: its units can run on an AsyncLane."""
    try:
        return inspect.iscoroutinefunction(get_engine_class(engine_id).render)
    except ReelforgeError:
        return False  # not installed here: the unit fails in perform, with the reason


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

    def start(self, steps: Generator) -> None:
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

    async def _follow(self, steps: Generator) -> None:
        loop = asyncio.get_running_loop()
        value, error = None, None
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
        """What a lane unit has in place of a _LeaseKeeper thread: a place in the lane's renewals."""
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


def _advance(steps: Generator, value, error):
    """Run a unit's steps up to their next await (in a pool thread): ("await", _Await), ("done", status), ("raised", exc)."""
    try:
        return "await", (steps.throw(error) if error is not None else steps.send(value))
    except StopIteration as done:
        return "done", done.value
    except BaseException as exc:  # KeyboardInterrupt, SystemExit, Stopping: re-raised by the unit's steps after _end
        return "raised", exc


def perform(store: JobStore, job: JobRecord, worker_id: str, engines: EngineCache, timings: Timings, notify=None, fetch_s3=None, forwards=None) -> JobStatus:
    """Run one claimed unit of work to its end in this thread; never raises for a job's own failure.

    A coroutine engine's render is run to its end here too (``AsyncLane`` runs many at once instead).
    """
    return _drive(unit_steps(store, job, worker_id, engines, timings, notify, fetch_s3, forwards=forwards))


class Stopping(BaseException):
    """Thrown into a unit whose worker is stopping: it goes back to the queue (as on KeyboardInterrupt)."""


@dataclass
class _Await:
    """What a unit's steps hand their driver to await: a coroutine engine's render of one shot."""

    awaitable: Awaitable
    progress: "JobProgress"


def _drive(steps: Generator) -> JobStatus:
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


def unit_steps(store: JobStore, job: JobRecord, worker_id: str, engines: EngineCache, timings: Timings, notify=None, fetch_s3=None,
               keeper: Callable[["JobProgress"], Any] | None = None, forwards=None) -> Generator:
    """The steps of one claimed unit, as a generator that yields an ``_Await`` where a coroutine engine
    renders and returns the unit's status. Its driver runs the steps between (``perform``: in the
    calling thread; ``AsyncLane``: in a small pool, holding no thread while the engine awaits).

    A unit is a whole single-shot job, one shot of a multi-shot job, or the joining of a
    multi-shot job's finished shots. A multi-shot job, when first claimed, is split into shot
    units that any worker may take, so shots render in parallel and a failed shot is retried alone.
    KeyboardInterrupt and SystemExit (the process is stopping) put the unit back in the queue and
    propagate.
    """
    progress: JobProgress | None = None
    try:
        parent = store.get(job.parent_id) if job.parent_id else job
        if is_remote_engine(job.engine):  # recorded at submit: this job runs upstream
            progress = JobProgress(store, job, worker_id, 1, notify, timings)
            return (yield from _forwarded(store, job, worker_id, engines, timings, progress, forwards, keeper))
        spec = get_model(parent.model_id)
        request = VideoRequest.from_model_input(parent.model_input)
        _, shots = check(request, spec, fetch_s3)
        # The engine recorded with the job; only a job migrated from a log whose process did not know
        # its model leaves it empty, and gets its model's own engine (this process's settings are never read).
        engine_id, options = (parent.engine, parent.engine_options) if parent.engine else (spec.engine, dict(spec.engine_options))
        unit = _Unit(store, job, worker_id, engines, engine_id, options, request, shots)
        unit.sound = parent.audio
        progress = unit.progress = JobProgress(store, job, worker_id, 1 if job.parent_id else len(shots), notify, timings)
        progress.deferred = keeper is not None
        with (keeper or _LeaseKeeper)(progress), _Folder(job.storage_uri) as out:
            # Temp files of an attempt that was killed are this unit's to remove (never another unit's files).
            owned = [shot_file_name(job.shot_index)] if job.parent_id else [shot_file_name(i) for i in range(len(shots))]
            out.clear_leftovers(owned + ["output.mp4", "poster.jpg", "contact_sheet.png"] * (job.parent_id is None))
            if job.parent_id is not None:
                return (yield from unit.render_one_shot(out))
            if len(shots) > 1 and get_engine_class(engine_id).splits_shots:
                done = store.children(job.id)
                if not done:
                    out.put_json("manifest.json", _manifest(job, engine_id, request))
                    if not store.split(job.id, worker_id, [_shot_unit(job, i) for i in range(len(shots))], fence=job.fence):
                        log.warning("job %s was taken over before it was split; leaving it to its new worker", job.id)
                    return JobStatus.RUNNING
                if any(c.status is not JobStatus.COMPLETED for c in done):
                    raise ReelforgeError(f"job {job.id} was queued to join shots that are not all rendered")
                names, poster, metadata = unit.join_shots(out, done)
            else:
                names, poster, metadata = yield from unit.render_all(out)
                if job.wire_request.get("extends"):
                    names = unit.append_to_source(out)
            unit.finish_video(out, names, poster, metadata)
        return _completed(store, job, worker_id, metadata, timings)
    except BaseException as exc:  # noqa: BLE001 - the one failure path, KeyboardInterrupt included
        status = _end(store, job, worker_id, exc, progress, timings)
        if not isinstance(exc, Exception):
            raise
        return status


def _forwarded(store: JobStore, job: JobRecord, worker_id: str, engines: EngineCache, timings: Timings, progress: "JobProgress", forwards,
               keeper=None) -> Generator:
    """A forwarded job (engines/remote.py): one unit, whatever its shots; the upstream makes the whole video.

    Where it goes is what was recorded at submit (the job's engine and its options, the route); this
    worker's own entry for the same place adds only its credentials and limits. The engine saves the
    upstream id in the job log through ``ctx.save`` before following it (a checkpoint folder would not
    be seen by a worker on another machine); the video it hands back goes through the finished-file
    check, loosened only where the engine says its upstream's wire cannot carry the plan.
    """
    from reelforge.engines.forward import Forward

    forward = Forward.from_route(job.model_id, job.engine_options)
    own = forwards.get(job.model_id) if forwards is not None else None
    if own is not None and not own.same_place(forward):
        log.warning("job %s goes to %s as recorded at submit; this worker's --forward for %s (%s) is not used for it", job.id, forward.url, job.model_id, own.url)
        own = None
    forward = forward.overlay(own)
    request = VideoRequest.from_model_input(job.model_input)
    _, shots = check(request, forwarded_spec(job.model_id, forward.kind))
    progress.metadata.update({k: job.metadata[k] for k in ("lifecycle", "notes", "checkpoint") if k in job.metadata})
    unit = _Unit(store, job, worker_id, engines, forward.kind, job.engine_options, request, shots)
    unit.progress = progress
    progress.deferred = keeper is not None
    checkpoint = dict(job.metadata.get("checkpoint", {}))

    def save(data: dict[str, Any]) -> None:
        if not store.save_checkpoint(job.id, worker_id, data, fence=job.fence):
            raise LeaseLost(job.id)
        checkpoint.update(data)
        progress.metadata["checkpoint"] = dict(checkpoint)

    with (keeper or _LeaseKeeper)(progress), _Folder(job.storage_uri) as out, tempfile.TemporaryDirectory(prefix="reelforge-forward-") as work:
        names = [shot_file_name(i) for i in range(len(shots))] if len(shots) > 1 else []
        out.clear_leftovers([*names, "output.mp4", "poster.jpg", "contact_sheet.png"])
        engine = unit._engine()
        out.put_json("manifest.json", _manifest(job, forward.kind, request))
        plan = ShotPlan(0, len(shots), " ".join(request.shot_texts()), request.effective_seed, sum(s.duration_s for s in shots), request.fps,
                        request.width, request.height, None, job.model_id)
        t0 = time.perf_counter()
        result = engine.render(plan, RenderContext(progress, Path(work), job=job, forward=forward, saved=checkpoint, save=save))
        if inspect.isawaitable(result):
            result = yield _Await(result, progress)
        if result.video_file is None:
            raise ReelforgeError(f"engine {forward.kind} returned no video file")
        progress.beat("checking the upstream's video", force=True)
        differs: dict[str, Any] = {}
        poster = _take_file(engine, plan, Path(result.video_file), out.path / "output.mp4", loosen=engine.upstream_differs, differs=differs)
        names = [n for n in names if (Path(work) / n).is_file()]
        for name in names:  # a multi-shot video's shots, as the upstream wrote them (Bedrock's layout)
            media.probe(Path(work) / name)
            media.publish_copy(Path(work) / name, out.path / name)
        metadata = {**progress.metadata, "engine": forward.kind, "render_encode_s": time.perf_counter() - t0}
        if differs:
            metadata["upstreamDiffers"] = differs  # what the upstream's wire could not be asked for, as it came
        unit.finish_video(out, names, poster, metadata)
    return _completed(store, job, worker_id, metadata, timings)


def _completed(store: JobStore, job: JobRecord, worker_id: str, metadata: dict[str, Any], timings: Timings) -> JobStatus:
    metadata = {**job.metadata, **metadata}  # what was recorded at submit (adaptations) stays
    # A finished render is worth waiting for: ride out a job-log outage for as long as the lease would.
    deadline = time.monotonic() + timings.lease_s
    while True:
        try:
            applied = store.finish(job.id, worker_id, JobStatus.COMPLETED, metadata=metadata, fence=job.fence)
            break
        except ReelforgeError as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("job %s: could not record its completion yet (%s); trying again", job.id, exc)
            time.sleep(timings.backoff_s)
    if applied:
        drop_checkpoints(job.storage_uri, job.shot_index if job.parent_id else None)
        unit = f"unit {job.id}, claim {job.fence}, attempt {job.attempts}"
        if job.parent_id:
            log.info("shot %d of job %s completed in %.1f s (%s)", job.shot_index + 1, job.parent_id, metadata.get("render_encode_s", 0.0), unit)
            _finalize_parent(store, job.parent_id)
        else:
            render = f", rendering and encoding {metadata['render_encode_s']:.1f} s" if "render_encode_s" in metadata else ""
            log.info("job %s completed in %.1f s (%s engine%s; %s)", job.id, metadata.get("total_s", 0.0), metadata.get("engine"), render, unit)
        return JobStatus.COMPLETED
    log.warning("job %s: claim %d finished after it was lost; the job's next attempt stands", job.id, job.fence)
    return JobStatus.RUNNING


class _Unit:
    """One claimed unit of work and what it needs; each method is one kind of unit."""

    def __init__(self, store, job, worker_id, engines, engine_id, options, request, shots):
        self.store, self.job, self.worker_id, self.engines = store, job, worker_id, engines
        self.engine_id, self.options, self.request, self.shots = engine_id, options, request, shots
        self.progress: JobProgress
        self.sound = True  # the job keeps the sound its engine makes (False: --no-audio)

    def _engine(self) -> Engine:
        self.progress.beat("loading engine", force=True)
        engine = self.engines.get(self.engine_id, self.options)
        self.progress.begin()
        return engine

    def render_one_shot(self, out: "_Folder") -> JobStatus:
        """A shot unit of a multi-shot job: render shot_NNNN.mp4 into the job's folder."""
        index = self.job.shot_index
        name = shot_file_name(index)
        _, seconds = yield from _render(self._engine(), _plan(self.request, self.shots, index, self.job.model_id), out.path / name, self.progress, self.sound, out.checkpoint(index))
        out.publish([name])
        metadata = {**self.progress.metadata, "render_encode_s": seconds, "seed": self.shots[index].seed}
        return _completed(self.store, self.job, self.worker_id, metadata, self.progress.timings)

    def join_shots(self, out: "_Folder", done: list[JobRecord]):
        """The last step of a split job: its shots are all rendered; join them by stream copy."""
        self.progress.beat("joining shots", force=True)
        self.progress.begin()
        names = [shot_file_name(i) for i in range(len(self.shots))]
        out.fetch(names)
        media.concat_mp4([out.path / n for n in names], out.path / "output.mp4")
        poster = media.read_frame(out.path / names[0], self.shots[0].duration_s * self.request.fps // 3)
        return names, poster, {"engine": self.engine_id, "shots": [c.metadata for c in done]}

    def render_all(self, out: "_Folder"):
        """Every shot in this worker (single-shot jobs, and engines that cannot split)."""
        engine = self._engine()
        multi = len(self.shots) > 1
        names = [shot_file_name(i) for i in range(len(self.shots))] if multi else []
        paths = [out.path / n for n in names] or [out.path / "output.mp4"]
        out.put_json("manifest.json", _manifest(self.job, self.engine_id, self.request))
        poster, seconds = None, 0.0
        for i, path in enumerate(paths):
            self.progress.shot = i
            frame, t = yield from _render(engine, _plan(self.request, self.shots, i, self.job.model_id), path, self.progress, self.sound, out.checkpoint(i))
            poster = frame if poster is None else poster
            seconds += t
        self.progress.beat("finishing", force=True)
        if multi:
            media.concat_mp4(paths, out.path / "output.mp4")
        return names, poster, {**self.progress.metadata, "engine": self.engine_id, "render_encode_s": seconds}

    def append_to_source(self, out: "_Folder") -> list[str]:
        """An extension (docs/wires.md): the video it continues, placed as shot 1 when the job was
        recorded, then the shot just rendered from its last frame, joined by stream copy."""
        source, added = shot_file_name(0), shot_file_name(1)
        out.fetch([source])
        os.replace(out.path / "output.mp4", out.path / added)
        media.concat_mp4([out.path / source, out.path / added], out.path / "output.mp4")
        return [source, added]

    def finish_video(self, out: "_Folder", names: list[str], poster, metadata: dict[str, Any]) -> None:
        """Poster, contact sheet, manifest and status file; output.mp4 is uploaded last."""
        media.save_poster(poster, out.path / "poster.jpg")
        media.contact_sheet(out.path / "output.mp4", out.path / "contact_sheet.png")
        self.progress.beat("publishing", force=True)  # a worker whose claim was lost publishes nothing
        out.publish([*names, "poster.jpg", "contact_sheet.png", "output.mp4"])
        audio = media.probe_audio(out.path / "output.mp4")
        metadata.update(
            engine_options=self.options,
            generative=get_engine_class(self.engine_id).generative,
            audio=audio.to_dict() if audio else None,
            total_s=time.time() - (self.job.start_time or time.time()),
        )
        manifest = _manifest(self.job, self.engine_id, self.request)
        manifest["output"]["audio"] = metadata["audio"]
        manifest.update(metadata=metadata, endTime=_iso(time.time()))
        out.put_json("manifest.json", manifest)
        out.put_json("video-generation-status.json", _status_doc(self.job, len(self.shots), None))


def drop_checkpoints(storage_uri: str, index: int | None = None) -> None:
    """Remove what attempts kept for the next one: one shot's checkpoint, or (no ``index``) the job's."""
    uri = join(storage_uri, CHECKPOINTS, *([shot_file_name(index).removesuffix(".mp4")] if index is not None else []))
    try:
        storage_for(storage_uri).remove_tree(uri)
        if index is not None and storage_uri.startswith("file://"):
            local_path(join(storage_uri, CHECKPOINTS)).rmdir()  # only when no other shot keeps one
    except OSError:
        pass  # another shot's checkpoint is still there
    except ReelforgeError as exc:  # storage away: the job's deletion (or prune) removes them later
        log.warning("could not remove the checkpoints at %s: %s", uri, exc)


def shot_file_name(index: int) -> str:
    """The file a video's shot is written to: shot_0001.mp4, ... (Bedrock's layout)."""
    return f"shot_{index + 1:04d}.mp4"


def _plan(request: VideoRequest, shots, index: int, model_id: str) -> ShotPlan:
    s = shots[index]
    return ShotPlan(index, len(shots), s.text, s.seed, s.duration_s, request.fps, request.width, request.height, s.image, model_id)


def _shot_unit(job: JobRecord, index: int) -> JobRecord:
    unit_id = new_job_id()
    return JobRecord(
        id=unit_id,
        arn=job.arn.rsplit("/", 1)[0] + "/" + unit_id,
        model_id=job.model_id,
        model_input={},  # the shot reads its parent's request: images are stored once
        output_uri=job.output_uri,
        storage_uri=job.storage_uri,
        submit_time=job.submit_time,
        parent_id=job.id,
        shot_index=index,
        stage="queued shot",
        engine=job.engine,
        engine_options=job.engine_options,
        audio=job.audio,
    )


def _render(engine: Engine, plan: ShotPlan, path: Path, progress: "JobProgress", sound: bool, checkpoint: tuple[Path, Callable[[Path], None]]):
    """Render one shot to ``path`` (encoding its frames, or checking the file the engine made), with its
    sound unless ``sound`` is False; return a poster frame and the seconds it took (a generator: a
    coroutine engine's render is yielded to the unit's driver to await). ``checkpoint``: the shot's
    checkpoint folder and how to keep a file written there (``_Folder.checkpoint``)."""
    t0 = time.perf_counter()
    folder, keep = checkpoint
    with tempfile.TemporaryDirectory(prefix="reelforge-shot-") as workdir:
        output = engine.render(plan, RenderContext(progress, Path(workdir), folder, keep=keep))
        if inspect.isawaitable(output):
            output = yield _Await(output, progress)
        if output.video_file is not None:
            poster = _take_file(engine, plan, Path(output.video_file), path)
        elif output.frames is not None:
            poster = _encode(engine, plan, output.frames, path)
        else:
            raise ReelforgeError(f"engine {engine.engine_id} returned neither frames nor a video file for shot {plan.index + 1}")
        audio = output.audio  # read after the frames: an engine may set it once they are done
        if not sound and output.video_file is not None:
            media.set_audio(path, None)  # a file that came with sound is made silent
        elif sound and audio is not None:
            try:
                media.set_audio(path, audio.samples, audio.sample_rate)
            except ValueError as exc:
                raise ReelforgeError(f"engine {engine.engine_id} returned sound for shot {plan.index + 1} that cannot be used: {exc}") from None
    return poster, time.perf_counter() - t0


def _encode(engine: Engine, plan: ShotPlan, frames, path: Path):
    poster = None
    with media.VideoWriter(path, plan.fps, plan.width, plan.height) as writer:
        for k, frame in enumerate(frames):
            writer.write(frame)
            if k == plan.frame_count // 3:
                poster = frame
    if writer.frames_written != plan.frame_count:
        raise ReelforgeError(f"engine {engine.engine_id} made {writer.frames_written} frames for shot {plan.index + 1}; {plan.frame_count} were asked for")
    return poster


def _take_file(engine: Engine, plan: ShotPlan, made: Path, path: Path, loosen: tuple[str, ...] = (), differs: dict[str, Any] | None = None):
    """A finished MP4 the engine made: checked against the plan, then published as the shot's file.

    ``loosen=("fps",)`` (an upstream whose wire carries no frame rate) accepts another rate whose
    length is the plan's to within a frame of either; what differed is put in ``differs``."""
    what = f"engine {engine.engine_id} handed back a video file for shot {plan.index + 1}"
    try:
        info = media.probe(made)
    except Exception as exc:  # PyAV's errors, a missing video stream
        raise ReelforgeError(f"{what} that cannot be read as a video: {exc}") from None
    want = f"h264 {plan.width}x{plan.height}, {plan.frame_count} frames at {plan.fps} fps"
    got = f"{info.codec} {info.width}x{info.height}, {info.frames} frames at {info.fps:g} fps"
    exact = (info.frames, round(info.fps, 3)) == (plan.frame_count, plan.fps)
    if not exact and "fps" in loosen and info.fps > 0 and abs(info.frames / info.fps - plan.frame_count / plan.fps) <= 1 / min(info.fps, plan.fps) + 1e-6:
        exact = True
        if differs is not None:
            differs.update(fps={"planned": plan.fps, "upstream": round(info.fps, 3)}, frames={"planned": plan.frame_count, "upstream": info.frames})
    if (info.codec, info.width, info.height) != ("h264", plan.width, plan.height) or not exact:
        raise ReelforgeError(f"{what} that does not match its plan: it is {got}; the shot needs {want}")
    media.publish_copy(made, path)
    return media.read_frame(path, plan.frame_count // 3)


class _Folder:
    """The job's folder: written in place when local, staged in a temp dir and uploaded for S3."""

    def __init__(self, uri: str):
        self.uri = uri
        self.storage = storage_for(uri)
        self.local = isinstance(self.storage, LocalStorage)
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> "_Folder":
        if self.local:
            self.path = local_path(self.uri)
            media.make_dirs(self.path)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{os.getpid()}-")
            self.path = Path(self._tmp.name)
        return self

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def clear_leftovers(self, names: list[str]) -> None:
        """Remove temp files a killed attempt left for ``names`` (never another unit's files)."""
        if self.local:
            for name in names:
                for stale in self.path.glob(f".{name}.*.tmp"):
                    stale.unlink(missing_ok=True)

    def checkpoint(self, index: int) -> tuple[Path, Callable[[Path], None]]:
        """Shot ``index``'s checkpoint, <job>/.checkpoints/shot_NNNN/, as a local folder, and ``keep(path)``
        to persist a file written there. Local storage: the folder is the storage itself (keep does nothing),
        less the temp files of a write a killed attempt left. S3: what earlier attempts kept, on any
        machine, is downloaded into the staging folder, and keep uploads."""
        name = shot_file_name(index).removesuffix(".mp4")
        folder, uri = self.path / CHECKPOINTS / name, join(self.uri, CHECKPOINTS, name)
        media.make_dirs(folder)
        if self.local:
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            return folder, lambda path: None
        for kept in self.storage.list(uri):
            self.storage.download(join(uri, kept), folder / kept)
        return folder, lambda path: self.storage.put_file(Path(path), join(uri, Path(path).relative_to(folder).as_posix()))

    def publish(self, names: list[str]) -> None:
        if not self.local:
            for name in names:
                self.storage.put_file(self.path / name, join(self.uri, name))

    def fetch(self, names: list[str]) -> None:
        if not self.local:
            for name in names:
                self.storage.download(join(self.uri, name), self.path / name)

    def put_json(self, name: str, doc: dict[str, Any]) -> None:
        self.storage.put_bytes(_json(doc), join(self.uri, name))


def _end(store: JobStore, job: JobRecord, worker_id: str, exc: BaseException, progress, timings: Timings) -> JobStatus:
    if isinstance(exc, LeaseLost):
        log.warning("job %s: claim %d was lost (lease expired or the unit was released); its next attempt owns the job", job.id, job.fence)
        return JobStatus.QUEUED
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: this process is stopping, the job is not at fault
        released = store.release(worker_id)
        log.info("job %s: put back in the queue (%s): this worker is stopping", job.id, type(exc).__name__ if released else "already gone")
        return JobStatus.QUEUED
    metadata = dict(progress.metadata) if progress else {}
    if isinstance(exc, JobCanceled):
        log.info("job %s canceled", job.id)
        drop_checkpoints(job.storage_uri, job.shot_index if job.parent_id else None)
        if job.parent_id is None:
            finalize_ended(job, "Canceled.")
        store.finish(job.id, worker_id, JobStatus.CANCELED, failure_message="Canceled.", metadata=metadata or None, fence=job.fence)
        if job.parent_id:
            _finalize_parent(store, job.parent_id)
        return JobStatus.CANCELED
    # A unit that failed by an exception ran, whether or not its engine got far: it counts.
    job.attempts = store.begin_attempt(job.id, worker_id, job.fence) or job.attempts
    if job.parent_id is not None and job.attempts < timings.max_attempts and not isinstance(exc, ReelforgeError):
        log.warning("shot unit %s of job %s failed (attempt %d), retrying it alone: %r", job.id, job.parent_id, job.attempts, exc, exc_info=exc)
        store.retry(job.id, worker_id, f"{type(exc).__name__}: {exc}", fence=job.fence)
        return JobStatus.QUEUED
    if isinstance(exc, ReelforgeError):
        message = str(exc)
    else:
        if isinstance(exc, OSError) and exc.strerror:
            message = f"{type(exc).__name__}: {exc.strerror}"  # the paths stay in the log, off the API
        else:
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        message = f"the engine failed with {message} (traceback in the log)"
    log.error("job %s failed: %s\n%s", job.id, message, "".join(traceback.format_exception(exc)))
    if job.parent_id is None:  # a shot's failure is reported by its job, once
        finalize_ended(job, message)
    store.finish(job.id, worker_id, JobStatus.FAILED, failure_message=message[:2048], metadata=metadata or None, fence=job.fence)
    if job.parent_id:
        _finalize_parent(store, job.parent_id)
    return JobStatus.FAILED


def finalize_ended(job: JobRecord, message: str) -> None:
    """The files of a job that ended without a video: its attempts' temp files go, and
    video-generation-status.json says why (as Bedrock writes it for a failed invocation). Its shots'
    checkpoints stay (a failed decode's latents among them) until the job is deleted or pruned."""
    try:
        if job.storage_uri.startswith("file://"):
            folder = local_path(job.storage_uri)
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            for empty in [*folder.glob(f"{CHECKPOINTS}/*/"), folder / CHECKPOINTS]:  # shots that kept nothing
                with contextlib.suppress(OSError):
                    empty.rmdir()
            if not folder.is_dir():
                return  # it never started writing: nothing to explain next to nothing
        storage_for(job.storage_uri).put_bytes(
            _json(_status_doc(job, 1, message)), join(job.storage_uri, "video-generation-status.json")
        )
    except Exception:  # the status file is a courtesy; the job log is the record
        log.exception("job %s: could not write video-generation-status.json", job.id)


def _finalize_parent(store: JobStore, parent_id: str) -> None:
    """After a shot unit ends: if that ended its job without a video, finalize the job's files."""
    parent = store.get(parent_id)
    if parent.status is JobStatus.CANCELED:
        drop_checkpoints(parent.storage_uri)
    if parent.status in (JobStatus.FAILED, JobStatus.CANCELED):
        finalize_ended(parent, parent.failure_message or "Canceled.")


def sweep_staging(is_dead: Callable[[str], bool]) -> None:
    """Remove the S3 staging folders that workers of this machine left when they were killed."""
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{STAGING_PREFIX}*"):
        pid = folder.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and is_dead(f"{socket.gethostname()}:{pid}:x"):
            shutil.rmtree(folder, ignore_errors=True)


def _status_doc(job: JobRecord, shots: int, failure: str | None) -> dict[str, Any]:
    if failure is None:
        shot_list = [{"status": "SUCCESS", "location": join(job.output_uri, f"shot_{i + 1:04d}.mp4")} for i in range(shots)] if shots > 1 else []
        return {"schemaVersion": "1.0", "shots": shot_list, "fullVideo": {"status": "SUCCESS", "location": join(job.output_uri, "output.mp4")}}
    fail = {"status": "FAILURE", "failureType": "INTERNAL_SERVER_EXCEPTION", "failureMessage": failure}
    return {"schemaVersion": "1.0", "shots": [], "fullVideo": fail}


def _manifest(job: JobRecord, engine_id: str, request: VideoRequest) -> dict[str, Any]:
    return {
        "schemaVersion": "1.0",
        "invocationId": job.id,
        "invocationArn": job.arn,
        "modelId": job.model_id,
        "clientRequestToken": job.client_token,
        "submitTime": _iso(job.submit_time),
        "engine": engine_id,
        "generative": get_engine_class(engine_id).generative,
        "request": _strip_images(request.to_model_input()),
        "output": {"fps": request.fps, "width": request.width, "height": request.height},
        "keepAudio": job.audio,  # False: asked for a silent video (--no-audio)
        "adaptations": job.metadata.get("adaptations", []),  # images fitted to the video size at submit (--fit)
        "wire": job.wire,  # the API the job came on, and its request there (bytes as size and digest)
        "wireRequest": job.wire_request,
    }


def _strip_images(model_input: dict[str, Any]) -> dict[str, Any]:
    """The request as recorded in the manifest: image bytes replaced by their size."""
    text = json.dumps(model_input)
    data = json.loads(text)

    def walk(node):
        if isinstance(node, dict):
            if "bytes" in node and isinstance(node["bytes"], str):
                node["bytes"] = f"<{len(node['bytes'])} base64 characters>"
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(data)
    return data


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, default=str).encode()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"

"""The worker: claim a job, render its shots, encode, publish, record. One failure path.

Every engine error, cancel and crash ends in ``end_unit`` (ending.py, via ``perform``), which marks the job
FAILED or CANCELED with a readable message and keeps the traceback in the log only. A unit whose
claim was lost (its lease expired while the worker was frozen or cut off, or the process is
stopping) ends quietly instead: its next attempt, elsewhere, owns the job now.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Generator, cast

from reelforge.config import Timings
from reelforge.engines import get_engine_class
from reelforge.errors import ReelforgeError
from reelforge.jobs.record import JobRecord, JobStatus, JobStore
from reelforge.engines.catalog import get_model
from reelforge.request.model import VideoRequest
from reelforge.request.check import check
from reelforge.jobs import layout
from reelforge.jobs.ending import completed, end_unit
from reelforge.jobs.engine_cache import EngineCache, is_remote_engine
from reelforge.jobs.folder import Folder
from reelforge.jobs.lane import drive
from reelforge.jobs.lease import JobProgress, LeaseKeeper
from reelforge.jobs.units import Unit, render_forwarded, shot_unit

log = logging.getLogger("reelforge.worker")


def perform(store: JobStore, job: JobRecord, worker_id: str, engines: EngineCache, timings: Timings, notify=None, fetch_s3=None, forwards=None) -> JobStatus:
    """Run one claimed unit of work to its end in this thread; never raises for a job's own failure.

    A coroutine engine's render is run to its end here too (``AsyncLane`` runs many at once instead).
    """
    return drive(unit_steps(store, job, worker_id, engines, timings, notify, fetch_s3, forwards=forwards))


def unit_steps(store: JobStore, job: JobRecord, worker_id: str, engines: EngineCache, timings: Timings, notify=None, fetch_s3=None,
               keeper: Callable[["JobProgress"], Any] | None = None, forwards=None) -> Generator[Any, Any, JobStatus]:
    """The steps of one claimed unit, as a generator that yields an ``Await`` where a coroutine engine
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
            return (yield from render_forwarded(store, job, worker_id, engines, timings, progress, forwards, keeper))
        spec = get_model(parent.model_id)
        request = VideoRequest.from_model_input(parent.model_input)
        _, shots = check(request, spec, fetch_s3)
        # The engine recorded with the job; only a job migrated from a log whose process did not know
        # its model leaves it empty, and gets its model's own engine (this process's settings are never read).
        engine_id, options = (parent.engine, parent.engine_options) if parent.engine else (spec.engine, dict(spec.engine_options))
        unit = Unit(store, job, worker_id, engines, engine_id, options, request, shots)
        unit.sound = parent.audio
        progress = unit.progress = JobProgress(store, job, worker_id, 1 if job.parent_id else len(shots), notify, timings)
        progress.deferred = keeper is not None
        with (keeper or LeaseKeeper)(progress), Folder(job.storage_uri) as out:
            # Temp files of an attempt that was killed are this unit's to remove (never another unit's files).
            owned = [layout.shot_file_name(cast(int, job.shot_index))] if job.parent_id else [layout.shot_file_name(i) for i in range(len(shots))]
            out.clear_leftovers(owned + [layout.VIDEO, layout.POSTER, layout.CONTACT_SHEET] * (job.parent_id is None))
            if job.parent_id is not None:
                return (yield from unit.render_one_shot(out))
            if len(shots) > 1 and get_engine_class(engine_id).splits_shots:
                done = store.children(job.id)
                if not done:
                    out.put_json(layout.MANIFEST, layout.manifest(job, engine_id, request))
                    if not store.split(job.id, worker_id, [shot_unit(job, i) for i in range(len(shots))], fence=job.fence):
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
        return completed(store, job, worker_id, metadata, timings)
    except BaseException as exc:  # noqa: BLE001 - the one failure path, KeyboardInterrupt included
        status = end_unit(store, job, worker_id, exc, progress, timings)
        if not isinstance(exc, Exception):
            raise
        return status

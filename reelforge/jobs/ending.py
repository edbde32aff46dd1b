"""How a unit ends: completed, failed (or retried), canceled or lost, and the files of a job that ended without a video."""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from typing import Any, cast

from reelforge.config import Timings
from reelforge.errors import JobCanceled, ReelforgeError
from reelforge.jobs import layout
from reelforge.jobs.folder import drop_checkpoints
from reelforge.jobs.lease import LeaseLost
from reelforge.jobs.record import JobRecord, JobStatus, JobStore
from reelforge.storage import join, local_path, storage_for

log = logging.getLogger("reelforge.worker")


def completed(store: JobStore, job: JobRecord, worker_id: str, metadata: dict[str, Any], timings: Timings) -> JobStatus:
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
            log.info("shot %d of job %s completed in %.1f s (%s)", cast(int, job.shot_index) + 1, job.parent_id, metadata.get("render_encode_s", 0.0), unit)
            finalize_parent(store, job.parent_id)
        else:
            render = f", rendering and encoding {metadata['render_encode_s']:.1f} s" if "render_encode_s" in metadata else ""
            log.info("job %s completed in %.1f s (%s engine%s; %s)", job.id, metadata.get("total_s", 0.0), metadata.get("engine"), render, unit)
        return JobStatus.COMPLETED
    log.warning("job %s: claim %d finished after it was lost; the job's next attempt stands", job.id, job.fence)
    return JobStatus.RUNNING


def end_unit(store: JobStore, job: JobRecord, worker_id: str, exc: BaseException, progress, timings: Timings) -> JobStatus:
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
            finalize_parent(store, job.parent_id)
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
        finalize_parent(store, job.parent_id)
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
            for empty in [*folder.glob(f"{layout.CHECKPOINTS}/*/"), folder / layout.CHECKPOINTS]:  # shots that kept nothing
                with contextlib.suppress(OSError):
                    empty.rmdir()
            if not folder.is_dir():
                return  # it never started writing: nothing to explain next to nothing
        storage_for(job.storage_uri).put_bytes(
            layout.to_json(layout.status_doc(job, 1, message)), join(job.storage_uri, layout.STATUS)
        )
    except Exception:  # the status file is a courtesy; the job log is the record
        log.exception("job %s: could not write video-generation-status.json", job.id)


def finalize_parent(store: JobStore, parent_id: str) -> None:
    """After a shot unit ends: if that ended its job without a video, finalize the job's files."""
    parent = store.get(parent_id)
    if parent.status is JobStatus.CANCELED:
        drop_checkpoints(parent.storage_uri)
    if parent.status in (JobStatus.FAILED, JobStatus.CANCELED):
        finalize_ended(parent, parent.failure_message or "Canceled.")

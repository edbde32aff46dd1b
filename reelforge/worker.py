"""The worker: claim a job, render its shots, encode, publish, record. One failure path.

Every engine error, cancel and crash ends in ``_end`` (via ``perform``), which marks the job
FAILED or CANCELED with a readable message and keeps the traceback in the log only.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

from . import media
from .engines import Engine, ShotPlan, get_engine_class
from .errors import JobCanceled, ReelforgeError
from .jobs import JobRecord, JobStatus, JobStore
from .models import engine_for, get_model
from .request import VideoRequest, check
from .storage import LocalStorage, join, local_path, storage_for

log = logging.getLogger("reelforge.worker")

LEASE_S = 30.0
HEARTBEAT_S = 0.5
MAX_ATTEMPTS = 3


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def worker_is_dead(worker_id: str | None) -> bool:
    """True when ``worker_id`` names a process on this host that no longer runs."""
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
    return False


class EngineCache:
    """One engine instance per (engine, options) per worker, reused across jobs (weights stay loaded)."""

    def __init__(self):
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def get(self, engine_id: str, options: dict[str, Any]) -> Engine:
        key = engine_id + json.dumps(options, sort_keys=True)
        with self._lock:
            if key not in self._engines:
                self._engines[key] = get_engine_class(engine_id)(options)
            return self._engines[key]

    def close(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                try:
                    engine.close()
                except Exception:  # closing must not hide the rest
                    log.exception("closing engine %s", engine.engine_id)
            self._engines.clear()


class JobProgress:
    """The progress callable handed to engines: records progress, renews the lease, carries cancel."""

    def __init__(self, store: JobStore, job: JobRecord, worker_id: str, shot_count: int, notify: Callable[[str], None] | None):
        self.store, self.job, self.worker_id = store, job, worker_id
        self.shot_count = shot_count
        self.shot = 0
        self.metadata: dict[str, Any] = {}
        self.notify = notify
        self._last = 0.0
        self.value = 0.0

    def __call__(self, done: int, total: int, stage: str = "") -> None:
        frac = (self.shot + (done / total if total else 0.0)) / self.shot_count
        self.value = max(self.value, min(frac, 1.0) * 0.97)  # the last 3% is encoding and publishing
        label = f"shot {self.shot + 1}/{self.shot_count}: {stage}" if self.shot_count > 1 else stage
        self.beat(label)

    def beat(self, stage: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < HEARTBEAT_S:
            return
        self._last = now
        canceled = self.store.heartbeat(self.job.id, self.worker_id, LEASE_S, self.value, stage)
        if self.notify:
            self.notify(self.job.id)
        if canceled:
            raise JobCanceled(self.job.id)


def perform(store: JobStore, job: JobRecord, worker_id: str, engines: EngineCache, notify=None, fetch_s3=None) -> JobStatus:
    """Run one claimed job to its end; never raises for a job's own failure."""
    started = time.time()
    staging: tempfile.TemporaryDirectory | None = None
    progress: JobProgress | None = None
    try:
        spec = get_model(job.model_id)
        request = VideoRequest.from_model_input(job.model_input)
        _, shots = check(request, spec, fetch_s3)
        engine_id, options = engine_for(spec)
        progress = JobProgress(store, job, worker_id, len(shots), notify)
        progress.beat("loading engine", force=True)
        engine = engines.get(engine_id, options)
        store_obj = storage_for(job.storage_uri)
        if isinstance(store_obj, LocalStorage):
            folder = local_path(job.storage_uri)
            folder.mkdir(parents=True, exist_ok=True)
        else:
            staging = tempfile.TemporaryDirectory(prefix=f"reelforge-{job.id}-")
            folder = Path(staging.name)
        manifest = _manifest(job, engine, request)
        store_obj.put_bytes(_json(manifest), join(job.storage_uri, "manifest.json"))

        multi = len(shots) > 1
        shot_files: list[Path] = []
        poster = None
        timings = {"render_encode_s": 0.0}
        for i, s in enumerate(shots):
            progress.shot = i
            plan = ShotPlan(i, len(shots), s.text, s.seed, s.duration_s, request.fps, request.width, request.height, s.image, job.model_id)
            path = folder / (f"shot_{i + 1:04d}.mp4" if multi else "output.mp4")
            t0 = time.perf_counter()
            with media.VideoWriter(path, request.fps, request.width, request.height) as writer:
                for k, frame in enumerate(engine.render_shot(plan, progress)):
                    writer.write(frame)
                    if poster is None and k == plan.frame_count // 3:
                        poster = frame
            timings["render_encode_s"] += time.perf_counter() - t0
            if writer.frames_written != plan.frame_count:
                raise ReelforgeError(f"engine {engine_id} made {writer.frames_written} frames for shot {i + 1}; {plan.frame_count} were asked for")
            shot_files.append(path)
        progress.beat("joining shots" if multi else "finishing", force=True)
        if multi:
            media.concat_mp4(shot_files, folder / "output.mp4")
        if poster is not None:
            media.save_poster(poster, folder / "poster.jpg")
        media.contact_sheet(folder / "output.mp4", folder / "contact_sheet.png")
        names = [p.name for p in shot_files] + (["output.mp4"] if multi else []) + ["poster.jpg", "contact_sheet.png"]
        if not isinstance(store_obj, LocalStorage):
            # output.mp4 goes last so that its presence means the rest is there
            for name in sorted(names, key=lambda n: n == "output.mp4"):
                if (folder / name).exists():
                    store_obj.put_file(folder / name, join(job.storage_uri, name))
        timings["total_s"] = time.time() - started
        metadata = {**progress.metadata, "engine": engine_id, "engine_options": options, "generative": engine.generative, "timings": timings}
        manifest.update(metadata=metadata, endTime=_iso(time.time()))
        store_obj.put_bytes(_json(manifest), join(job.storage_uri, "manifest.json"))
        store_obj.put_bytes(_json(_status_doc(job, len(shots), None)), join(job.storage_uri, "video-generation-status.json"))
        store.finish(job.id, worker_id, JobStatus.COMPLETED, metadata=metadata)
        return JobStatus.COMPLETED
    except BaseException as exc:  # noqa: BLE001 - the one failure path, KeyboardInterrupt included
        status = _end(store, job, worker_id, exc, progress)
        if not isinstance(exc, Exception):
            raise
        return status
    finally:
        if staging is not None:
            staging.cleanup()


def _end(store: JobStore, job: JobRecord, worker_id: str, exc: BaseException, progress) -> JobStatus:
    metadata = dict(progress.metadata) if progress else {}
    if isinstance(exc, JobCanceled):
        log.info("job %s canceled", job.id)
        store.finish(job.id, worker_id, JobStatus.CANCELED, failure_message="Canceled.", metadata=metadata or None)
        return JobStatus.CANCELED
    if isinstance(exc, ReelforgeError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        message = f"the engine failed with {message} (traceback in the log)"
    log.error("job %s failed: %s\n%s", job.id, message, "".join(traceback.format_exception(exc)))
    try:
        storage_for(job.storage_uri).put_bytes(_json(_status_doc(job, 1, message)), join(job.storage_uri, "video-generation-status.json"))
    except Exception:  # the status file is a courtesy; the job log is the record
        log.exception("job %s: could not write video-generation-status.json", job.id)
    store.finish(job.id, worker_id, JobStatus.FAILED, failure_message=message[:2048], metadata=metadata or None)
    return JobStatus.FAILED


def _status_doc(job: JobRecord, shots: int, failure: str | None) -> dict[str, Any]:
    if failure is None:
        shot_list = [{"status": "SUCCESS", "location": join(job.output_uri, f"shot_{i + 1:04d}.mp4")} for i in range(shots)] if shots > 1 else []
        return {"schemaVersion": "1.0", "shots": shot_list, "fullVideo": {"status": "SUCCESS", "location": join(job.output_uri, "output.mp4")}}
    fail = {"status": "FAILURE", "failureType": "INTERNAL_SERVER_EXCEPTION", "failureMessage": failure}
    return {"schemaVersion": "1.0", "shots": [], "fullVideo": fail}


def _manifest(job: JobRecord, engine: Engine, request: VideoRequest) -> dict[str, Any]:
    return {
        "schemaVersion": "1.0",
        "invocationId": job.id,
        "invocationArn": job.arn,
        "modelId": job.model_id,
        "clientRequestToken": job.client_token,
        "submitTime": _iso(job.submit_time),
        "engine": engine.engine_id,
        "generative": engine.generative,
        "request": _strip_images(request.to_model_input()),
        "output": {"fps": request.fps, "width": request.width, "height": request.height},
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

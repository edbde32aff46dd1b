"""Client and Job: the notebook's four steps as a Python API.

``Client()`` records jobs in the data dir's job log and makes sure a worker runs them: the data
dir's background worker (started on demand, shared by every script, outliving the one that
started the job), or worker threads in this process with ``Client(workers=N)``. The same calls
work against a reelforge server or Bedrock itself with ``Client(endpoint=URL)``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import background, config
from .errors import JobCanceledError, JobFailedError, StorageError, WaitTimeoutError
from .jobs import JobRecord, JobStatus, open_store
from .request import VideoRequest
from .runtime import Runtime, statuses
from .storage import join, local_path, storage_for

_runtimes: dict[str, Runtime] = {}
_runtimes_lock = threading.Lock()


def embedded_runtime(data_dir: str | os.PathLike | None = None) -> Runtime:
    """The process-wide runtime for a data dir (one job log, one set of workers per process)."""
    location = str(Path(data_dir).expanduser().resolve() / "jobs.sqlite3") if data_dir else config.job_store_location()
    with _runtimes_lock:
        if location not in _runtimes:
            _runtimes[location] = Runtime(open_store(location))
        return _runtimes[location]


class Client:
    """Start, find and list video jobs."""

    def __init__(self, endpoint: str | None = None, *, data_dir: str | os.PathLike | None = None, workers: int | None = None, **remote: Any):
        if endpoint is not None:
            from .remote import RemoteBackend

            self._backend = RemoteBackend(endpoint, **remote)
        else:
            self._backend = EmbeddedBackend(data_dir, workers)
        self.endpoint = endpoint
        self.data_dir = Path(data_dir) if data_dir else None

    def start(
        self,
        request: VideoRequest | dict[str, Any] | str,
        *,
        model: str = config.DEFAULT_MODEL,
        output: str | os.PathLike | None = None,
        client_token: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> "Job":
        """Validate and submit; the job is in the job log before this returns.

        ``request`` is a VideoRequest, Nova Reel ``modelInput`` dict, or a prompt. Passing the
        same ``client_token`` again returns the same job instead of starting a second one.
        """
        if isinstance(request, str):
            request = VideoRequest(text=request)
        tag_list = [{"key": k, "value": v} for k, v in (tags or {}).items()]
        job_id = self._backend.submit(model, request, output, client_token, tag_list)
        return Job(self, job_id)

    def get(self, ref: str) -> "Job":
        """A job by id or ARN."""
        record = self._backend.get(ref)
        return Job(self, record.id, record)

    def jobs(self, *, status: str | None = None, limit: int = 50) -> list["Job"]:
        return [Job(self, r.id, r) for r in self._backend.list(status, limit)]

    def close(self) -> None:
        self._backend.close()


class EmbeddedBackend:
    ENSURE_EVERY_S = 5.0  # while waiting: look again that a worker runs (one may have been killed)

    def __init__(self, data_dir, workers):
        self.runtime = embedded_runtime(data_dir)
        env = os.environ.get("REELFORGE_WORKERS")
        self.workers = workers if workers is not None else int(env) if env else 0
        self.output_default = Path(data_dir).expanduser() / "outputs" if data_dir else None
        self._ensured = 0.0

    def submit(self, model, request, output, client_token, tags) -> str:
        out = output if output is not None else self.output_default
        record, _ = self.runtime.submit(model, request, out, client_token=client_token, tags=tags)
        if self.workers > 0:
            if not self.runtime._threads:
                atexit.register(_hand_off_at_exit, self.runtime)
            self.runtime.start_workers(self.workers)
        self.ensure_worker()
        return record.id

    def ensure_worker(self) -> bool:
        """Start the data dir's background worker when no process works on this job log (True if started)."""
        self._ensured = time.monotonic()
        folder = self.runtime.folder
        if folder is None or not config.background_worker():
            return False
        return background.ensure_worker(folder)

    def get(self, ref: str) -> JobRecord:
        return self.runtime.get(ref.rsplit("/", 1)[-1])

    def list(self, status, limit) -> list[JobRecord]:
        return self.runtime.store.list(statuses=statuses(status), limit=limit)

    def cancel(self, job_id: str) -> JobRecord:
        return self.runtime.cancel(job_id)

    def wait_for_change(self, job_id: str, timeout: float) -> None:
        # Another process (the background worker) may be the one running it: poll the log as well.
        if time.monotonic() - self._ensured > self.ENSURE_EVERY_S:
            self.ensure_worker()
        self.runtime.wait_for_change(min(timeout, 0.25))

    def close(self) -> None:
        pass


class Job:
    """A handle on one job. Attributes read the job log (or the server) fresh on access."""

    def __init__(self, client: Client, job_id: str, record: JobRecord | None = None):
        self.client = client
        self.id = job_id
        self._cached = record

    def refresh(self) -> JobRecord:
        self._cached = self.client._backend.get(self.id)
        return self._cached

    @property
    def record(self) -> JobRecord:
        return self.refresh()

    @property
    def status(self) -> JobStatus:
        return self.record.status

    @property
    def progress(self) -> float:
        return self.record.progress

    @property
    def arn(self) -> str:
        return (self._cached or self.refresh()).arn

    @property
    def model_id(self) -> str:
        return (self._cached or self.refresh()).model_id

    @property
    def output_uri(self) -> str:
        return (self._cached or self.refresh()).output_uri

    @property
    def failure_message(self) -> str | None:
        return self.record.failure_message

    @property
    def request(self) -> VideoRequest:
        return VideoRequest.from_model_input((self._cached or self.refresh()).model_input)

    @property
    def local_dir(self) -> Path | None:
        """The job's folder when its output is on this machine."""
        uri = (self._cached or self.refresh()).storage_uri
        return local_path(uri) if uri.startswith("file://") else None

    @property
    def video_path(self) -> Path | None:
        folder = self.local_dir
        return folder / "output.mp4" if folder and self.status is JobStatus.COMPLETED else None

    def wait(self, timeout: float | None = None, on_progress: Callable[[JobRecord], None] | None = None) -> "Job":
        """Block until the job ends; raise JobFailedError / JobCanceledError / WaitTimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = None
        while True:
            rec = self.refresh()
            key = (rec.status, round(rec.progress, 3), rec.stage)
            if on_progress and key != seen:
                on_progress(rec)
            seen = key
            if rec.status.done:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeoutError(self.id, timeout)
            self.client._backend.wait_for_change(self.id, 60.0 if left is None else min(60.0, left))
        if rec.status is JobStatus.FAILED:
            raise JobFailedError(self.id, rec.failure_message or "unknown failure")
        if rec.status is JobStatus.CANCELED:
            raise JobCanceledError(self.id)
        return self

    def cancel(self) -> "Job":
        self._cached = self.client._backend.cancel(self.id)
        return self

    def download(self, dest: str | os.PathLike = ".", *, shots: bool = False) -> Path:
        """Copy output.mp4 to ``dest`` (a folder: saved as <job id>.mp4); return the path."""
        rec = self.refresh()
        if rec.status is not JobStatus.COMPLETED:
            raise StorageError(f"job {self.id} is {rec.status.value}; only a COMPLETED job has a video to download")
        dest = Path(dest).expanduser()
        target = dest / f"{self.id}.mp4" if dest.is_dir() or not dest.suffix else dest
        backend = getattr(self.client._backend, "download", None)
        fetch = backend or (lambda uri, path: storage_for(uri).download(uri, path))
        fetch(join(rec.storage_uri, "output.mp4"), target)
        if shots:
            for name in storage_for(rec.storage_uri).list(rec.storage_uri):
                if name.startswith("shot_") and name.endswith(".mp4"):
                    fetch(join(rec.storage_uri, name), target.with_name(f"{target.stem}_{name}"))
        return target

    def show(self, width: int = 640):
        """In a notebook: an inline player. Elsewhere: open the video in the system's player."""
        path = self.video_path or self.download(Path(config.data_dir()) / "downloads")
        if _in_notebook():
            from IPython.display import Video

            return Video(str(path), embed=True, mimetype="video/mp4", width=width)
        opener = "open" if sys.platform == "darwin" else "xdg-open"
        if shutil.which(opener) is None:
            raise StorageError(f"no video player found ({opener} is missing); the video is at {path}")
        subprocess.Popen([opener, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return path

    def _repr_html_(self) -> str:
        rec = self.refresh()
        head = f"<b>reelforge job {rec.id}</b> · {rec.model_id} · {rec.status.value} · {rec.progress:.0%}"
        if rec.status is JobStatus.COMPLETED and self.video_path:
            import base64

            data = base64.b64encode(self.video_path.read_bytes()).decode()
            return f'<div>{head}<br><video controls width="640" src="data:video/mp4;base64,{data}"></video></div>'
        extra = f"<br>{rec.failure_message}" if rec.failure_message else ""
        return f"<div>{head}{extra}</div>"

    def __repr__(self) -> str:
        rec = self._cached or self.refresh()
        return f"<Job {rec.id} {rec.status.value} {rec.model_id}>"


def _hand_off_at_exit(runtime: Runtime) -> None:
    """This process is exiting with worker threads: their units go back to the queue, for the background worker."""
    if runtime.release() and runtime.folder is not None and config.background_worker():
        background.ensure_worker(runtime.folder)


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def generate(prompt: str | VideoRequest, *, model: str = config.DEFAULT_MODEL, output: str | os.PathLike | None = None, timeout: float | None = None, **fields: Any) -> Job:
    """One line: make a video and wait for it. ``fields`` are VideoRequest fields (seed, duration_s, ...)."""
    request = prompt if isinstance(prompt, VideoRequest) else VideoRequest(text=prompt, **fields)
    return Client().start(request, model=model, output=output).wait(timeout)

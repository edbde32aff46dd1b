"""Client and Job: the notebook's four steps as a Python API.

``Client()`` records jobs in the data dir's job log and makes sure a worker runs them: the data
dir's background worker (started on demand, shared by every script, outliving the one that
started the job), or worker threads in this process with ``Client(workers=N)``. The same calls
work against a reelforge server or Bedrock itself with ``Client(endpoint=URL)``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, cast

from reelforge import config
from reelforge.client.backend import Backend
from reelforge.client.embedded import EmbeddedBackend
from reelforge.errors import JobCanceledError, JobFailedError, NoPlayerError, StorageError, WaitTimeoutError
from reelforge.jobs.listing import Page
from reelforge.jobs.record import JobRecord, JobStatus
from reelforge.request.model import VideoRequest
from reelforge.storage import join, local_path
from reelforge.jobs import layout

class Client:
    """Start, find and list video jobs."""

    def __init__(self, endpoint: str | None = None, *, data_dir: str | os.PathLike | None = None, workers: int | None = None, **remote: Any):
        self._backend: Backend
        if endpoint is not None:
            from reelforge.client.remote import RemoteBackend

            self._backend = RemoteBackend(endpoint, **remote)
        else:
            self._backend = EmbeddedBackend(data_dir, workers)
        self.endpoint = endpoint
        self.data_dir = Path(data_dir) if data_dir else None

    @property
    def backend(self) -> Backend:
        """What records and runs the jobs: an EmbeddedBackend (this machine) or a RemoteBackend (endpoint=)."""
        return self._backend

    def start(
        self,
        request: VideoRequest | dict[str, Any] | str,
        *,
        model: str = config.DEFAULT_MODEL,
        output: str | os.PathLike | None = None,
        client_token: str | None = None,
        tags: dict[str, str] | None = None,
        webhook: str | None = None,
        webhook_events: str | list[str] | None = None,
        audio: bool = True,
    ) -> "Job":
        """Validate and submit; the job is in the job log before this returns.

        ``request`` is a VideoRequest, Nova Reel ``modelInput`` dict, or a prompt. Passing the
        same ``client_token`` again returns the same job instead of starting a second one.
        ``webhook`` is notified of the job's events, signed (docs/webhooks.md): a URL (embedded;
        ``webhook_events`` picks the events), or the name of an endpoint registered with the server
        (``--webhook-endpoint NAME=URL``, sent as the tag ``reelforge:webhook``).
        ``audio=False`` makes the video silent even when the model makes sound (recorded with the job).
        """
        from reelforge.jobs.webhooks import TAG

        if isinstance(request, str):
            request = VideoRequest(text=request)
        tag_list = [{"key": k, "value": v} for k, v in (tags or {}).items()]
        if webhook is not None and "://" not in webhook:
            tag_list.append({"key": TAG, "value": webhook})
            webhook = None
        job_id = self._backend.submit(model, request, output, client_token, tag_list, webhook=webhook, webhook_events=webhook_events, audio=audio)
        return Job(self, job_id)

    def get(self, ref: str) -> "Job":
        """A job by id or ARN."""
        record = self._backend.get(ref)
        return Job(self, record.id, record)

    def jobs(
        self,
        *,
        status: str | JobStatus | None = None,
        model: str | None = None,
        q: str | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> "JobPage":
        """A page of jobs, newest first: a list of Job with ``.total`` and ``.next()``.

        ``status`` and ``model`` filter; ``q`` searches the prompt and shot texts (case-blind, at
        least 3 characters); ``after`` is the ``next_token`` of the page before.
        """
        query: dict[str, Any] = dict(status=status, model=model, q=q, limit=limit)
        page = self._backend.list(**query, after=after)
        jobs = [Job(self, r.id, r, prompts=page.prompts.get(r.id)) for r in page.records]
        return JobPage(jobs, page, lambda token: self.jobs(**query, after=token))

    def close(self) -> None:
        self._backend.close()


class JobPage(list):
    """One page of ``Client.jobs()``: the jobs (a list, as before), the total, and the next page.

    ``total`` counts every job matching the filters, not just this page (None where the backend
    cannot count: Amazon Bedrock); past 10,000 counting stops and ``total_is_lower_bound`` is True.
    """

    def __init__(self, jobs: list["Job"], page: Page, fetch: Callable[[str], "JobPage"]):
        super().__init__(jobs)
        self.total = page.total
        self.total_is_lower_bound = page.total_is_lower_bound
        self.offset = page.offset  # jobs on the pages before this one
        self.next_token = page.next_token  # pass as ``after=`` for the next page; None on the last page
        self._fetch = fetch

    def next(self) -> "JobPage":
        """The page after this one (empty after the last page)."""
        if self.next_token is None:
            return JobPage([], Page([], self.total, self.total_is_lower_bound, self.offset + len(self)), self._fetch)
        return self._fetch(self.next_token)


class Job:
    """A handle on one job. Attributes read the job log (or the server) fresh on access."""

    def __init__(self, client: Client, job_id: str, record: JobRecord | None = None, prompts: list[str] | None = None):
        self.client = client
        self.id = job_id
        self._cached = record
        self._prompts = prompts  # a listing's prompt texts, when its records carry no request

    def refresh(self) -> JobRecord:
        self._cached = self.client.backend.get(self.id)
        return self._cached

    @property
    def record(self) -> JobRecord:
        return self.refresh()

    @property
    def last_record(self) -> JobRecord:
        """The record as last read (by the listing or a refresh); read now only when it never was."""
        return self._cached or self.refresh()

    @property
    def status(self) -> JobStatus:
        return self.record.status

    @property
    def progress(self) -> float:
        return self.record.progress

    @property
    def arn(self) -> str:
        return self.last_record.arn

    @property
    def model_id(self) -> str:
        return self.last_record.model_id

    @property
    def output_uri(self) -> str:
        return self.last_record.output_uri

    @property
    def webhooks(self) -> list[dict[str, Any]]:
        """The job's webhook deliveries: endpoint, event, state (pending, delivered, failed), attempts, last response."""
        return self.client.backend.deliveries(self.id)

    @property
    def failure_message(self) -> str | None:
        return self.record.failure_message

    @property
    def request(self) -> VideoRequest:
        cached = self._cached
        if cached is None or not cached.model_input:  # a server's listing leaves the request (and its images) out
            cached = self.refresh()
        return VideoRequest.from_model_input(cached.model_input)

    @property
    def prompts(self) -> list[str]:
        """The prompt, or each shot's text."""
        if self._prompts is not None:
            return list(self._prompts)
        return self.request.shot_texts()

    @property
    def audio(self) -> dict[str, Any] | None:
        """The finished video's sound track (codec, sampleRate, channels, duration); None when it is silent."""
        return self.record.metadata.get("audio")

    @property
    def local_dir(self) -> Path | None:
        """The job's folder when its output is on this machine."""
        uri = self.last_record.storage_uri
        return local_path(uri) if uri.startswith("file://") else None

    @property
    def video_path(self) -> Path | None:
        folder = self.local_dir
        return folder / layout.VIDEO if folder and self.status is JobStatus.COMPLETED else None

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
                raise WaitTimeoutError(self.id, cast(float, timeout))  # a deadline comes from a timeout
            self.client.backend.wait_for_change(self.id, 60.0 if left is None else min(60.0, left))
        if rec.status is JobStatus.FAILED:
            raise JobFailedError(self.id, rec.failure_message or "unknown failure")
        if rec.status is JobStatus.CANCELED:
            raise JobCanceledError(self.id)
        return self

    def cancel(self) -> "Job":
        self._cached = self.client.backend.cancel(self.id)
        return self

    def download(self, dest: str | os.PathLike = ".", *, shots: bool = False) -> Path:
        """Copy output.mp4 to ``dest`` (a folder: saved as <job id>.mp4); return the path."""
        rec = self.refresh()
        if rec.status is not JobStatus.COMPLETED:
            raise StorageError(f"job {self.id} is {rec.status.value}; only a COMPLETED job has a video to download")
        dest = Path(dest).expanduser()
        target = dest / f"{self.id}.mp4" if dest.is_dir() or not dest.suffix else dest
        fetch = self.client.backend.download
        fetch(join(rec.storage_uri, layout.VIDEO), target)
        if shots:
            for name in self.client.backend.files(rec):
                if layout.SHOT_FILE.fullmatch(name):
                    fetch(join(rec.storage_uri, name), target.with_name(f"{target.stem}_{name}"))
        return target

    def show(self, width: int = 640):
        """In a notebook: an inline player. Elsewhere: open the video in the system's player; return its path.

        Raises NoPlayerError, whose ``path`` is the video, when nothing can open it here: on Linux
        without a display (neither DISPLAY nor WAYLAND_DISPLAY set), without ``xdg-open`` (``open``
        on macOS), or when the opener fails. A script on a server gets told why, not a silent no-op.
        """
        path = self.video_path or self.download(Path(config.data_dir()) / "downloads")
        if _in_notebook():
            from IPython.display import Video

            return Video(str(path), embed=True, mimetype="video/mp4", width=width)
        return open_in_player(path)

    def _repr_html_(self) -> str:
        rec = self.refresh()
        head = f"<b>reelforge job {rec.id}</b> · {rec.model_id} · {rec.status.value} · {rec.progress:.0%}"
        if rec.status is JobStatus.COMPLETED and self.video_path:
            import base64

            from reelforge.media.audio import sound_label

            data = base64.b64encode(self.video_path.read_bytes()).decode()
            sound = f"sound: {sound_label(rec.metadata.get('audio'), rec.audio)}"
            return f'<div>{head} · {sound}<br><video controls width="640" src="data:video/mp4;base64,{data}"></video></div>'
        extra = f"<br>{rec.failure_message}" if rec.failure_message else ""
        return f"<div>{head}{extra}</div>"

    def __repr__(self) -> str:
        rec = self.last_record
        return f"<Job {rec.id} {rec.status.value} {rec.model_id}>"


OPENER_WAIT_S = 5.0  # an opener still running after this is showing the player (some stay until it closes)


def open_in_player(path: Path) -> Path:
    """Hand ``path`` to the desktop's opener and check that it took it (NoPlayerError when not)."""
    if sys.platform == "win32":
        try:
            os.startfile(path)  # type: ignore[attr-defined]
        except OSError as exc:
            raise NoPlayerError(path, f"Windows could not open it: {exc.strerror or exc}") from None
        return path
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    if sys.platform != "darwin" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise NoPlayerError(path, "this session has no display (DISPLAY and WAYLAND_DISPLAY are unset)")
    exe = shutil.which(opener)
    if exe is None:
        raise NoPlayerError(path, f"{opener} is not installed")
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([exe, str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            code = proc.wait(OPENER_WAIT_S)
        except subprocess.TimeoutExpired:
            return path
        if code != 0:
            err.seek(0)
            said = err.read().decode("utf-8", "replace").strip().splitlines()
            raise NoPlayerError(path, f"{opener} exited with status {code}" + (f" ({said[-1][:200]})" if said else ""))
    return path


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

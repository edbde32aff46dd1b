"""EmbeddedBackend: ``Client()`` on this machine's job log, run by the data dir's background worker or threads here."""

from __future__ import annotations

import atexit
import builtins
import os
import threading
import time
from pathlib import Path
from typing import Any, cast

from reelforge import config
from reelforge.jobs import background
from reelforge.jobs.listing import Page, list_page
from reelforge.jobs.record import JobRecord
from reelforge.jobs.open import open_store
from reelforge.jobs.runtime import Runtime
from reelforge.jobs.listing import statuses
from reelforge.storage import storage_for

_runtimes: dict[str, Runtime] = {}
_runtimes_lock = threading.Lock()
_exit_hand_offs: set[int] = set()  # runtimes (by id) whose worker threads are handed off when this process exits


def embedded_runtime(data_dir: str | os.PathLike | None = None) -> Runtime:
    """The process-wide runtime for a data dir (one job log, one set of workers per process)."""
    location = str(Path(data_dir).expanduser().resolve() / "jobs.sqlite3") if data_dir else config.job_store_location()
    with _runtimes_lock:
        if location not in _runtimes:
            _runtimes[location] = Runtime(open_store(location))
        return _runtimes[location]


class EmbeddedBackend:
    """The Backend protocol (reelforge.client.backend) over this process's Runtime for a data dir."""

    ENSURE_EVERY_S = 5.0  # while waiting: look again that a worker runs (one may have been killed)

    def __init__(self, data_dir: str | os.PathLike | None, workers: int | None):
        self.runtime = embedded_runtime(data_dir)
        env = os.environ.get("REELFORGE_WORKERS")
        self.workers = workers if workers is not None else int(env) if env else 0
        self.output_default = Path(data_dir).expanduser() / "outputs" if data_dir else None
        self._ensured = 0.0

    def submit(self, model, request, output, client_token, tags, webhook=None, webhook_events=None, audio: bool = True) -> str:
        out = output if output is not None else self.output_default
        record, _ = self.runtime.submit(model, request, out, client_token=client_token, tags=tags, webhook=webhook, webhook_events=webhook_events, audio=audio)
        if self.workers > 0:
            if id(self.runtime) not in _exit_hand_offs:
                _exit_hand_offs.add(id(self.runtime))
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

    def list(self, *, status=None, model=None, q=None, limit=50, after=None) -> Page:
        return list_page(self.runtime.store, statuses=statuses(status), model_id=model, search=q, limit=limit, after=after)

    def files(self, record: JobRecord) -> builtins.list[str]:
        return storage_for(record.storage_uri).list(record.storage_uri)

    def cancel(self, job_id: str) -> JobRecord:
        return self.runtime.cancel(job_id)

    def deliveries(self, job_id: str) -> builtins.list[dict[str, Any]]:
        from reelforge.jobs.webhooks import shown

        return [shown(d) for d in cast(Any, self.runtime.store).deliveries(job_id)]

    def wait_for_change(self, job_id: str, timeout: float) -> None:
        # Another process (the background worker) may be the one running it: poll the log as well.
        if time.monotonic() - self._ensured > self.ENSURE_EVERY_S:
            self.ensure_worker()
        self.runtime.wait_for_change(min(timeout, 0.25))

    def download(self, uri: str, path: Path) -> Path:
        return storage_for(uri).download(uri, path)

    def ping(self) -> None:
        pass  # the job log is opened with the backend: nothing more to reach

    def hand_off(self) -> None:
        self.runtime.release()  # units this process was running go back to the queue at once
        self.ensure_worker()

    def close(self) -> None:
        pass


def _hand_off_at_exit(runtime: Runtime) -> None:
    """This process is exiting with worker threads: their units go back to the queue, for the background worker."""
    if runtime.release() and runtime.folder is not None and config.background_worker():
        background.ensure_worker(runtime.folder)

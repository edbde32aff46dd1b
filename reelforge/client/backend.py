"""The Backend protocol: what Client and Job ask of the side that records and runs jobs (embedded or remote)."""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from typing import Any, Protocol

from reelforge.jobs.listing import Page
from reelforge.jobs.record import JobRecord, JobStatus
from reelforge.request.model import VideoRequest


class Backend(Protocol):
    """Jobs by id: start, read, list, cancel, wait on and download them.

    ``EmbeddedBackend`` (reelforge.client.embedded) works on this machine's job log;
    ``RemoteBackend`` (reelforge.client.remote) talks to a reelforge server or Amazon Bedrock.
    """

    def submit(
        self,
        model: str,
        request: VideoRequest | dict[str, Any],
        output: str | os.PathLike | None,
        client_token: str | None,
        tags: list[dict[str, str]],
        webhook: str | None = None,
        webhook_events: str | list[str] | None = None,
        audio: bool = True,
    ) -> str:
        """Record a job (the same ``client_token`` gives the same job) and return its id."""
        ...

    def get(self, ref: str) -> JobRecord:
        """The job with this id or ARN (JobNotFoundError when there is none)."""
        ...

    def list(
        self,
        *,
        status: str | JobStatus | None = None,
        model: str | None = None,
        q: str | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page:
        """A page of jobs, newest first."""
        ...

    def files(self, record: JobRecord) -> builtins.list[str]:
        """The names of a job's output files."""
        ...

    def cancel(self, job_id: str) -> JobRecord:
        """Ask the job to stop; its record after the request."""
        ...

    def deliveries(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """The job's webhook deliveries, as shown to users."""
        ...

    def wait_for_change(self, job_id: str, timeout: float) -> None:
        """Return when the job may have changed, or after at most ``timeout`` seconds."""
        ...

    def download(self, uri: str, path: Path) -> Path:
        """Copy the output file at ``uri`` to ``path``, atomically; return ``path``."""
        ...

    def ping(self) -> None:
        """Raise UnreachableError now when the backend cannot be reached."""
        ...

    def hand_off(self) -> None:
        """This process stops watching: work it was running goes back to whoever runs jobs."""
        ...

    def close(self) -> None:
        ...

"""Jobs: their status, their record, and the job log (JobStore) that keeps them.

The embedded default is SQLite in the user data dir; the store interface is what the SQL stores
(jobs/sqlite.py, jobs/postgres.py; opened by jobs/open.py) implement. Every state change is one
statement, so two workers can never both claim a job, and a job recorded here is never lost: a
worker that dies leaves a lease that expires, and the job is run again or failed with a message.
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import json
import re
import secrets
import string
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, TypeVar

from reelforge.errors import RequestError

V = TypeVar("V")


class JobStatus(str, enum.Enum):
    """Where a job is: QUEUED, RUNNING, then one of COMPLETED, FAILED or CANCELED (``done``)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def done(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)

    @property
    def bedrock(self) -> str:
        """Bedrock's status word; a canceled job reads as Failed there, the only terminal word left."""
        return BEDROCK_STATUS[self]

    @classmethod
    def from_bedrock(cls, word: str) -> list["JobStatus"]:
        return [s for s, w in BEDROCK_STATUS.items() if w == word]


class Beat(str, enum.Enum):
    """What a worker learns from renewing its lease."""

    OK = "ok"
    CANCEL = "cancel"  # the job was asked to stop
    LOST = "lost"  # the claim is no longer this worker's (recovered, released or ended): stop, write nothing


BEDROCK_STATUS = {
    JobStatus.QUEUED: "InProgress",
    JobStatus.RUNNING: "InProgress",
    JobStatus.COMPLETED: "Completed",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELED: "Failed",
}

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_job_id() -> str:
    """12 characters of [a-z0-9], the shape of a Bedrock invocation id."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


JOB_ID = re.compile(r"[a-z0-9]{12}")  # what new_job_id makes: a path segment naming a job must match it whole


def request_fingerprint(model_id: str, model_input: Any, output: Any) -> str:
    """What must match for a repeated client token to mean the same request."""
    blob = json.dumps([model_id, model_input, output], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class JobRecord:
    id: str
    arn: str
    model_id: str
    model_input: dict[str, Any]
    output_uri: str  # what the caller sees: requested location + "/" + id
    storage_uri: str  # where the files go (differs only when a bucket is mapped to a folder)
    client_token: str | None = None
    fingerprint: str = ""
    status: JobStatus = JobStatus.QUEUED
    progress: float = 0.0
    stage: str = "queued"
    submit_time: float = field(default_factory=time.time)
    start_time: float | None = None
    end_time: float | None = None
    last_modified: float = field(default_factory=time.time)
    failure_message: str | None = None
    attempts: int = 0  # claims in which the engine started (a worker that died before that costs nothing)
    cancel_requested: bool = False
    worker_id: str | None = None
    lease_until: float | None = None
    output_config: dict[str, Any] = field(default_factory=dict)  # kmsKeyId, bucketOwner as given
    tags: list[dict[str, str]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None  # set on the shot units of a multi-shot job
    shot_index: int | None = None
    fence: int = 0  # raised by every claim; a worker's writes name the fence it holds
    counted_fence: int = 0  # the claim whose attempt was last counted
    wire: str = "bedrock"  # the API the job came on: bedrock, openai, gemini (docs/wires.md)
    wire_request: dict[str, Any] = field(default_factory=dict)  # that API's request, image and video bytes as size and digest
    deleted_time: float | None = None  # set when its files were deleted (OpenAI's DELETE); the record stays
    webhooks: dict[str, Any] = field(default_factory=dict)  # where its events go (webhooks.py); {} for none
    audio: bool = True  # False: the video is made silent even when its engine makes sound (--no-audio)
    engine: str = ""  # the engine that renders it and its options, fixed when the job was recorded
    engine_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d


@dataclass
class PrunedJob(JobRecord):
    """What a tombstone keeps of a job that retention removed: id, ARN, client token, fingerprint, final status.

    Returned by ``create`` for a repeated client token (the job it started is gone, and no new one
    starts) and carried by JobExpiredError; its request, files and metadata are gone.
    """

    pruned_time: float = 0.0


def options_text(options: dict[str, Any]) -> str:
    """An engine's options as the job log keeps them: one text per set of options (keys sorted), so the
    engines a worker holds loaded can be matched with the jobs that need them (jobs/sql.py, claim)."""
    return json.dumps(options, ensure_ascii=False, sort_keys=True)


SEARCH_MIN_CHARS = 3  # trigram indexes cannot look up anything shorter


def check_search(q: str | None) -> str:
    """The search text a listing filters on ("" for none), or RequestError naming ``q``."""
    q = unicodedata.normalize("NFC", (q or "").strip())
    if not q:
        return ""
    try:
        q.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError("q", "is not valid text (it holds a lone surrogate)") from None
    if "\0" in q:
        raise RequestError("q", "must not contain NUL characters")
    if len(q) < SEARCH_MIN_CHARS:
        raise RequestError("q", f"a search needs at least {SEARCH_MIN_CHARS} characters; got {q!r}")
    return q


def fold_search(text: str) -> str:
    """Case-blind form of text (canonical caseless match), applied in Python so both databases agree on non-ASCII."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold())


def search_text(model_input: Any) -> str:
    """What search looks in: the prompt and the shot texts of a request, folded; never keys, images or options."""
    if not isinstance(model_input, dict):
        return ""
    texts = []
    for key in ("textToVideoParams", "multiShotAutomatedParams"):
        params = model_input.get(key)
        if isinstance(params, dict) and isinstance(params.get("text"), str):
            texts.append(params["text"])
    params = model_input.get("multiShotManualParams")
    shots = params.get("shots") if isinstance(params, dict) else None
    for shot in shots if isinstance(shots, list) else []:
        if isinstance(shot, dict) and isinstance(shot.get("text"), str):
            texts.append(shot["text"])
    # A line break between texts keeps a match from spanning two shots.
    return fold_search("\n".join(texts))

class JobStore:
    """The job log's interface. Times are epoch seconds; every method is safe across threads."""

    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """Insert ``record``; with a known client token return the existing job and False."""
        raise NotImplementedError

    def get(self, job_id: str) -> JobRecord:
        raise NotImplementedError

    def view(self, job_id: str, make: Callable[[JobRecord], V]) -> V:
        """``make(record)`` of one job; a store that can tell its job log has not changed keeps the value until it does.

        ``make`` must depend only on the record (and on what does not change while the store
        lives); it is itself the key, so pass the same function object each time. What it
        raises is not kept."""
        return make(self.get(job_id))

    def list(
        self,
        *,
        statuses: list[JobStatus] | None = None,
        submitted_after: float | None = None,
        submitted_before: float | None = None,
        descending: bool = True,
        limit: int = 100,
        after: tuple[float, str] | None = None,
        search: str | None = None,
        model_id: str | None = None,
    ) -> list[JobRecord]:
        """Jobs in submit-time order; ``after`` is the (submit_time, id) of the last row already seen.

        ``search`` is a case-blind substring of the prompt and shot texts (``check_search`` refuses
        one shorter than 3 characters); ``%`` and ``_`` in it are literal."""
        raise NotImplementedError

    def count(
        self,
        *,
        statuses: builtins.list[JobStatus] | None = None,
        submitted_after: float | None = None,
        submitted_before: float | None = None,
        search: str | None = None,
        model_id: str | None = None,
        cap: int = 10_000,
    ) -> int:
        """How many jobs ``list`` would give with these filters, counting at most ``cap + 1`` ("10,000+")."""
        raise NotImplementedError

    def claim(self, worker_id: str, lease_s: float) -> JobRecord | None:
        """Atomically take a queued unit (raising its fence), or return None: the oldest, after model affinity.

        ``worker_id`` is ``PROCESS/CLAIM``; what PROCESS recorded with ``hold`` decides the affinity."""
        raise NotImplementedError

    def hold(self, worker_id: str, engines: builtins.list[tuple[str, dict[str, Any]]], slots: int) -> None:
        """Record that the worker process ``worker_id`` has ``engines`` (engine id, options) loaded and
        runs up to ``slots`` units at once, replacing what it recorded before (none: it holds nothing)."""
        raise NotImplementedError

    def begin_attempt(self, job_id: str, worker_id: str, fence: int) -> int | None:
        """The engine starts on claim ``fence``: count the attempt; return the count, None when not ours."""
        raise NotImplementedError

    def heartbeat(self, job_id: str, worker_id: str, lease_s: float, progress: float, stage: str, *, fence: int | None = None) -> Beat:
        """Renew the lease and record progress; say whether to go on, stop for a cancel, or stop silently."""
        raise NotImplementedError

    def finish(self, job_id: str, worker_id: str | None, status: JobStatus, *, failure_message: str | None = None, metadata: dict | None = None, fence: int | None = None) -> bool:
        """End a unit; False when it was not ours to end (fenced out, already ended)."""
        raise NotImplementedError

    def request_cancel(self, job_id: str) -> JobRecord:
        raise NotImplementedError

    def mark_deleted(self, job_id: str) -> JobRecord | None:
        """Record that an ended job's files were deleted (its record stays); None while it has not ended."""
        raise NotImplementedError

    def retry(self, job_id: str, worker_id: str, reason: str, *, fence: int | None = None) -> None:
        raise NotImplementedError

    # --- retention (jobs/retention.py drives these) ----------------------------------------
    def prunable(self, ended_before: float, *, after: tuple[float, str] | None = None, limit: int = 500) -> builtins.list[tuple[float, str]]:
        """(end_time, id) of ended jobs (no shot unit still queued or running) that ended before
        ``ended_before``, in that order, after the cursor ``after``."""
        raise NotImplementedError

    def prune(self, job_id: str, ended_before: float) -> PrunedJob | None:
        """In one transaction: replace the job and its shot units by a tombstone that still names the
        job's files; None (nothing changed) when the job no longer qualifies."""
        raise NotImplementedError

    def unfinished_prunes(self) -> builtins.list[PrunedJob]:
        """Tombstones whose files may still be there (a prune stopped before removing them)."""
        raise NotImplementedError

    def files_pruned(self, job_id: str) -> None:
        """The tombstone's files are gone: forget where they were."""
        raise NotImplementedError

    def forget_pruned_search(self) -> None:
        """After a prune round: drop the pruned jobs from a search index kept apart from their rows."""

    def release(self, worker_id: str) -> builtins.list[str]:
        """Requeue every unit ``worker_id`` runs (it is stopping), giving back begun attempts; return their ids."""
        raise NotImplementedError

    def listen(self, wake, stop, channel=None) -> None:
        """Call ``wake()`` when another process makes a job claimable, until the event ``stop`` is set."""

    def split(self, parent_id: str, worker_id: str, shots: builtins.list[JobRecord], *, fence: int | None = None) -> bool:
        """Record the shot units of a claimed job, which then waits for them holding no lease.

        Returns False, adding nothing, when ``worker_id`` no longer holds the job."""
        raise NotImplementedError

    def children(self, parent_id: str) -> builtins.list[JobRecord]:
        raise NotImplementedError

    def settle(self, parent_id: str) -> None:
        """Move a waiting job on once its shots are done: to QUEUED for joining, FAILED or CANCELED."""
        raise NotImplementedError

    def recover(self, max_attempts: int, is_dead=None, max_claims: int | None = None) -> builtins.list[str]:
        """Requeue (or fail, past ``max_attempts``) running units whose worker is gone; return their ids."""
        raise NotImplementedError


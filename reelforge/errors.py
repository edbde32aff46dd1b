"""Every error reelforge raises on purpose, as one tree.

ReelforgeError
├── RequestError            bad input: names the field and the allowed values (Bedrock: ValidationException)
│   └── ImageError          a conditioning image that cannot be used
├── UnknownModelError       a model id no engine serves (ValidationException)
├── ConflictError           a client token reused with a different request (ConflictException)
├── JobNotFoundError        no job with that id or ARN (ResourceNotFoundException)
│   └── JobExpiredError     the job was pruned by retention; ``.job`` is its tombstone (a PrunedJob)
├── EngineError             an engine cannot run: missing weights, missing extra, bad options
├── StorageError            an output location that cannot be read or written
│   └── JobStoreError       the job log cannot be reached or used (server: 503)
├── ConfigError             a REELFORGE_* setting that cannot be used
├── QueueFullError          a server's --max-queued jobs are already waiting (Bedrock: ServiceQuotaExceededException; OpenAI, Google: 429)
├── UnreachableError        a server (reelforge, Bedrock, S3) that does not answer at its URL
├── NoPlayerError           Job.show() outside a notebook with no display or player; ``.path`` is the video
├── JobFailedError          Job.wait() on a job that ended FAILED
├── JobCanceledError        Job.wait() on a job that ended CANCELED
└── WaitTimeoutError        Job.wait() ran past its timeout (the job keeps running)

JobCanceled is not a ReelforgeError: it is the signal a progress callback raises inside an
engine to stop it, and the worker turns it into the CANCELED status.

The CLI prints ``str(error)`` as one line; the server maps each class to Bedrock's error shape
in one function (``reelforge.server.errors``).
"""

from __future__ import annotations


class ReelforgeError(Exception):
    """Base class of every error reelforge raises on purpose."""


class RequestError(ReelforgeError, ValueError):
    """A request field is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ImageError(RequestError):
    """A conditioning image is missing, unreadable, too large or of the wrong kind."""


class UnknownModelError(ReelforgeError, ValueError):
    """A model id no engine serves; the message lists the ids there are."""

    def __init__(self, model_id: str, known: list[str]):
        self.model_id = model_id
        self.field = "modelId"
        super().__init__(
            f"modelId: unknown model {model_id!r}; available: {', '.join(known)} "
            "(run `reelforge models` for details)"
        )


class ConflictError(ReelforgeError):
    """The client request token was already used for a different request."""


class JobNotFoundError(ReelforgeError, LookupError):
    """No job with this id or ARN in the job log."""

    def __init__(self, ref: str):
        self.ref = ref
        super().__init__(f"no job {ref!r} in the job log (run `reelforge jobs list`)")


class JobExpiredError(JobNotFoundError):
    """The job existed but retention removed its record and files; ``job`` is what its tombstone keeps."""

    def __init__(self, ref: str, job):
        from datetime import datetime, timezone

        self.ref, self.job = ref, job

        def day(t):
            return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if t else "?"

        self.expiry = (
            f"it ended as {job.status.value} on {day(job.end_time)} and its record and files were removed "
            f"on {day(job.pruned_time)} by the retention setting"
        )
        ReelforgeError.__init__(self, f"job {ref!r} has expired: {self.expiry}")


class EngineError(ReelforgeError):
    """An engine cannot run as configured (weights, extras, options)."""


class StorageError(ReelforgeError):
    """An output location cannot be used."""


class JobStoreError(StorageError):
    """The job log cannot be reached or used."""


class ConfigError(ReelforgeError):
    """A setting (an environment variable or a configuration value) that cannot be used."""
class QueueFullError(ReelforgeError):
    """``limit`` jobs are already queued (reelforge serve --max-queued); nothing was recorded."""

    retry_after_s = 1

    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(
            f"{limit} jobs are already queued on this server, its limit (reelforge serve --max-queued); "
            "nothing was recorded: send the request again later"
        )


class UnreachableError(ReelforgeError, ConnectionError):
    """Nothing answers at ``url``; ``reason`` is what the connection attempt met."""

    def __init__(self, url: str, reason: str, hint: str = "", context: str = ""):
        self.url, self.reason = url, reason
        head = f"{context}: " if context else ""
        super().__init__(f"{head}cannot reach the server at {url}: {reason}" + (f"; {hint}" if hint else ""))


class NoPlayerError(ReelforgeError):
    """Job.show() found no way to open a player here; the video is at ``path``."""

    def __init__(self, path, why: str):
        self.path = path
        super().__init__(f"nothing opened the video: {why}; the video is at {path}")


class JobFailedError(ReelforgeError):
    """The job ended FAILED; ``failure_message`` says why."""

    def __init__(self, job_id: str, message: str):
        self.job_id = job_id
        self.failure_message = message
        super().__init__(f"job {job_id} failed: {message}")


class JobCanceledError(ReelforgeError):
    """The job ended CANCELED while it was waited on."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        super().__init__(f"job {job_id} was canceled")


class WaitTimeoutError(ReelforgeError, TimeoutError):
    """``Job.wait(timeout=...)`` ran out; the job itself keeps running."""

    def __init__(self, job_id: str, timeout: float):
        self.job_id = job_id
        super().__init__(
            f"job {job_id} still running after {timeout:g} s; it keeps running: "
            f"`reelforge jobs show {job_id}` follows it"
        )


class JobCanceled(Exception):
    """Raised by a progress callback to stop an engine because its job was canceled."""

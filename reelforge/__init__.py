"""reelforge: text-to-video as asynchronous jobs (Python API, CLI, Bedrock-compatible server)."""

import logging

from reelforge.client.client import Client, Job, JobPage, generate
from reelforge.engines import Audio, Engine, EngineOptions, RenderContext, ShotOutput, ShotPlan, register_engine
from reelforge.errors import (
    ConflictError,
    EngineError,
    ImageError,
    JobCanceledError,
    JobFailedError,
    JobNotFoundError,
    NoPlayerError,
    ReelforgeError,
    RequestError,
    StorageError,
    UnknownModelError,
    UnreachableError,
    WaitTimeoutError,
)
from reelforge.jobs.record import JobStatus
from reelforge.request.model import ImageInput, Shot, VideoRequest

__version__ = "0.1.0"

# Library code logs but never configures logging: without this, Python's last-resort handler would
# print reelforge's warnings and tracebacks on the caller's stderr. The CLI adds the log file.
logging.getLogger("reelforge").addHandler(logging.NullHandler())

__all__ = [
    "Audio",
    "Client",
    "ConflictError",
    "Engine",
    "EngineError",
    "EngineOptions",
    "ImageError",
    "ImageInput",
    "Job",
    "JobCanceledError",
    "JobFailedError",
    "JobNotFoundError",
    "JobPage",
    "JobStatus",
    "NoPlayerError",
    "ReelforgeError",
    "RenderContext",
    "RequestError",
    "Shot",
    "ShotOutput",
    "ShotPlan",
    "StorageError",
    "UnknownModelError",
    "UnreachableError",
    "VideoRequest",
    "WaitTimeoutError",
    "generate",
    "register_engine",
]

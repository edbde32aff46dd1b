"""reelforge: text-to-video as asynchronous jobs (Python API, CLI, Bedrock-compatible server)."""

from .client import Client, Job, generate
from .engines import Engine, EngineOptions, ShotPlan, register_engine
from .errors import (
    ConflictError,
    EngineError,
    ImageError,
    JobCanceledError,
    JobFailedError,
    JobNotFoundError,
    ReelforgeError,
    RequestError,
    StorageError,
    UnknownModelError,
    WaitTimeoutError,
)
from .jobs import JobStatus
from .request import ImageInput, Shot, VideoRequest

__version__ = "0.1.0"

__all__ = [
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
    "JobStatus",
    "ReelforgeError",
    "RequestError",
    "Shot",
    "ShotPlan",
    "StorageError",
    "UnknownModelError",
    "VideoRequest",
    "WaitTimeoutError",
    "generate",
    "register_engine",
]

"""Where reelforge keeps things and how its workers time themselves, read from the environment
once per use (so tests can relocate and speed them up)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from reelforge.errors import ConfigError

DEFAULT_MODEL = "amazon.nova-reel-v1:1"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "000000000000"
SERVER_READ_TIMEOUT = 10.0  # s for a request's headers to arrive (the body gets more per byte): server/protocol.py
SERVER_MAX_CONNECTIONS = 1000


def data_dir() -> Path:
    """The user data dir: job log, logs and default outputs. REELFORGE_HOME moves it."""
    return Path(os.environ.get("REELFORGE_HOME") or platformdirs.user_data_dir("reelforge")).expanduser()


def output_dir() -> Path:
    """Where videos go when no output is given. REELFORGE_OUTPUT moves it."""
    env = os.environ.get("REELFORGE_OUTPUT")
    return Path(env).expanduser() if env else data_dir() / "outputs"


def job_log_path() -> Path:
    return data_dir() / "jobs.sqlite3"


def job_store_location() -> str:
    """The job log: REELFORGE_DATABASE_URL (postgresql://...) for many machines, else the SQLite file."""
    return os.environ.get("REELFORGE_DATABASE_URL") or str(job_log_path())


def log_path() -> Path:
    return data_dir() / "logs" / "reelforge.log"


def region() -> str:
    return os.environ.get("REELFORGE_REGION") or DEFAULT_REGION


def account() -> str:
    return os.environ.get("REELFORGE_ACCOUNT") or DEFAULT_ACCOUNT


def env_number(name: str, default: float, minimum: float, integer: bool = False) -> float:
    """The number in environment variable ``name`` (``default`` when unset); ConfigError naming it when below ``minimum`` or not a number."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or value != value or value < minimum:  # NaN is not a setting
        kind = "a whole number" if integer else "a number of seconds"
        raise ConfigError(f"{name}={raw!r} is not usable; it must be {kind} of at least {minimum:g}")
    return value


@dataclass(frozen=True)
class Timings:
    """How workers time leases, heartbeats, recovery and retries (all in seconds).

    A job whose worker dies restarts within ``lease_s + recover_s`` (at once when the dead
    worker was on this machine: its process is gone). ``heartbeat_s`` is the least time between
    two progress writes of one job. ``backoff_s`` is the first pause after a job-log error,
    doubling up to ``backoff_max_s``. ``idle_exit_s``: a background worker exits after the queue
    has been empty this long. ``db_retry_s``: how long a job-log statement is retried through a
    lost connection before the caller gets an error. ``affinity_s``: how long a newly queued unit waits
    for an idle worker that holds its model loaded before any worker takes it (stores.py, claim).
    """

    lease_s: float = 30.0
    heartbeat_s: float = 0.5
    recover_s: float = 2.0
    max_attempts: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    idle_exit_s: float = 120.0
    db_retry_s: float = 15.0
    affinity_s: float = 10.0

    @classmethod
    def from_env(cls) -> "Timings":
        d = cls()
        return cls(
            lease_s=env_number("REELFORGE_LEASE_S", d.lease_s, 0.5),
            heartbeat_s=env_number("REELFORGE_HEARTBEAT_S", d.heartbeat_s, 0.0),
            recover_s=env_number("REELFORGE_RECOVER_S", d.recover_s, 0.05),
            max_attempts=int(env_number("REELFORGE_MAX_ATTEMPTS", d.max_attempts, 1, integer=True)),
            backoff_s=env_number("REELFORGE_BACKOFF_S", d.backoff_s, 0.01),
            backoff_max_s=env_number("REELFORGE_BACKOFF_MAX_S", d.backoff_max_s, 0.01),
            idle_exit_s=env_number("REELFORGE_WORKER_IDLE_S", d.idle_exit_s, 0.0),
            db_retry_s=env_number("REELFORGE_DB_RETRY_S", d.db_retry_s, 0.0),
            affinity_s=env_number("REELFORGE_AFFINITY_S", d.affinity_s, 0.0),
        )


def timings() -> Timings:
    return Timings.from_env()


def background_worker() -> bool:
    """Whether an embedded Client starts a background worker for its data dir when none runs.

    REELFORGE_BACKGROUND_WORKER=never turns it off (you run `reelforge worker` yourself); it is off
    for a PostgreSQL job log, whose workers run as services of their own.
    """
    value = (os.environ.get("REELFORGE_BACKGROUND_WORKER") or "auto").strip().lower()
    if value not in ("auto", "never"):
        raise ConfigError(f"REELFORGE_BACKGROUND_WORKER={value!r} is not usable; allowed: auto, never")
    return value == "auto" and not os.environ.get("REELFORGE_DATABASE_URL")


def gpu() -> str | None:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (None when it is not set;
    ``reelforge worker --gpus`` sets it for each of its workers). Workers put it in their id."""
    value = (os.environ.get("CUDA_VISIBLE_DEVICES") or "").strip()
    return value or None


def async_units() -> int:
    """How many units of coroutine engines one worker process follows at once (REELFORGE_ASYNC_UNITS, default 64)."""
    return int(env_number("REELFORGE_ASYNC_UNITS", 64, 1, integer=True))

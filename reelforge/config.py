"""Where reelforge keeps things, read from the environment once per use (so tests can relocate it)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

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

"""Opening the job log named by a location: a path (SQLite) or a postgresql:// URL."""

from __future__ import annotations

import os

from reelforge.jobs.postgres import PostgresJobStore
from reelforge.jobs.sql import SQLJobStore
from reelforge.jobs.sqlite import SQLiteJobStore


def open_store(location: str | os.PathLike) -> SQLJobStore:
    """A job store from a path (SQLite) or a postgresql:// URL."""
    text = os.fspath(location)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresJobStore(text)
    return SQLiteJobStore(text)

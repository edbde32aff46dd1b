"""The background worker of a data dir: embedded jobs finish even when the script that started them exits.

``Client.start`` (embedded) records the job, then makes sure some process is working on that
job log: if none holds the data dir's ``workers.lock``, it starts ``reelforge worker --background``,
a detached process that runs the queue and exits a while after it empties (REELFORGE_WORKER_IDLE_S),
so a model is loaded by one process, not by every script. Every process that runs workers on the
data dir (the background worker, ``reelforge worker``, ``reelforge serve``, a Client with
in-process workers) holds ``workers.lock`` shared while it does; ``background.lock`` keeps the
background worker to one at a time.

The race between a worker that is about to exit and a job recorded at that moment is closed by
order: a client checks the lock after its job is committed, and a worker gives up its lock before
it looks at the queue one last time (see ``Runtime.run``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("reelforge.background")

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; every Client runs its jobs in-process instead
    fcntl = None  # type: ignore[assignment]

PRESENCE = "workers.lock"
SINGLETON = "background.lock"


class FileLock:
    """An advisory lock on a file, held until ``release`` (or the process ends, however it ends)."""

    def __init__(self, path: Path, shared: bool):
        self.path = path
        self.shared = shared
        self._fd: int | None = None

    def acquire(self, wait: bool = False) -> bool:
        if fcntl is None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        flags = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def write_pid(self) -> None:
        """Note the holder's process id in the lock file (for people and tests looking for it)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)


def background_pid(folder: Path) -> int | None:
    """The process id of ``folder``'s background worker while one runs, else None."""
    lock = FileLock(Path(folder) / SINGLETON, shared=False)
    if lock.acquire():
        lock.release()
        return None
    try:
        return int((Path(folder) / SINGLETON).read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def presence(folder: Path) -> FileLock:
    """The shared lock a process holds on ``folder``'s job log while it runs workers."""
    return FileLock(Path(folder) / PRESENCE, shared=True)


def worker_alive(folder: Path) -> bool:
    """True when some process runs workers on the job log in ``folder``."""
    if fcntl is None:
        return True
    probe = FileLock(Path(folder) / PRESENCE, shared=False)
    if probe.acquire():
        probe.release()
        return False
    return True


def ensure_worker(folder: Path) -> bool:
    """Start the background worker for ``folder`` unless a worker already runs there; True if started."""
    if worker_alive(folder):
        return False
    spawn_worker(folder)
    return True


def spawn_worker(folder: Path) -> None:
    """Start ``reelforge worker --background`` on ``folder``'s job log, detached from this process."""
    env = dict(os.environ, REELFORGE_HOME=str(folder))
    env.pop("REELFORGE_DATABASE_URL", None)  # the folder's own SQLite log, whatever this process uses
    log.info("starting the background worker for %s", folder)
    subprocess.Popen(
        [sys.executable, "-m", "reelforge", "worker", "--background"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal, or the end of the script, does not reach it
        env=env,
        cwd=str(folder),
    )

"""A job's output folder while a unit writes it (in place, or staged for S3), and its shots' checkpoints."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

from reelforge.errors import ReelforgeError
from reelforge.jobs import layout
from reelforge.media import video as media
from reelforge.storage.base import LocalStorage, join, local_path, storage_for

log = logging.getLogger("reelforge.worker")

STAGING_PREFIX = "reelforge-stage-"  # temp folders for S3 outputs: reelforge-stage-<pid>-...


def drop_checkpoints(storage_uri: str, index: int | None = None) -> None:
    """Remove what attempts kept for the next one: one shot's checkpoint, or (no ``index``) the job's."""
    uri = join(storage_uri, layout.CHECKPOINTS, *([layout.checkpoint_name(index)] if index is not None else []))
    try:
        storage_for(storage_uri).remove_tree(uri)
        if index is not None and storage_uri.startswith("file://"):
            local_path(join(storage_uri, layout.CHECKPOINTS)).rmdir()  # only when no other shot keeps one
    except OSError:
        pass  # another shot's checkpoint is still there
    except ReelforgeError as exc:  # storage away: the job's deletion (or prune) removes them later
        log.warning("could not remove the checkpoints at %s: %s", uri, exc)


class Folder:
    """The job's folder: written in place when local, staged in a temp dir and uploaded for S3."""

    def __init__(self, uri: str):
        self.uri = uri
        self.storage = storage_for(uri)
        self.local = isinstance(self.storage, LocalStorage)
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> "Folder":
        if self.local:
            self.path = local_path(self.uri)
            media.make_dirs(self.path)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{os.getpid()}-")
            self.path = Path(self._tmp.name)
        return self

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def clear_leftovers(self, names: list[str]) -> None:
        """Remove temp files a killed attempt left for ``names`` (never another unit's files)."""
        if self.local:
            for name in names:
                for stale in self.path.glob(f".{name}.*.tmp"):
                    stale.unlink(missing_ok=True)

    def checkpoint(self, index: int) -> tuple[Path, Callable[[Path], None]]:
        """Shot ``index``'s checkpoint, <job>/.checkpoints/shot_NNNN/, as a local folder, and ``keep(path)``
        to persist a file written there. Local storage: the folder is the storage itself (keep does nothing),
        less the temp files of a write a killed attempt left. S3: what earlier attempts kept, on any
        machine, is downloaded into the staging folder, and keep uploads."""
        name = layout.checkpoint_name(index)
        folder, uri = self.path / layout.CHECKPOINTS / name, join(self.uri, layout.CHECKPOINTS, name)
        media.make_dirs(folder)
        if self.local:
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            return folder, lambda path: None
        for kept in self.storage.list(uri):
            self.storage.download(join(uri, kept), folder / kept)
        return folder, lambda path: self.storage.put_file(Path(path), join(uri, Path(path).relative_to(folder).as_posix()))

    def publish(self, names: list[str]) -> None:
        if not self.local:
            for name in names:
                self.storage.put_file(self.path / name, join(self.uri, name))

    def fetch(self, names: list[str]) -> None:
        if not self.local:
            for name in names:
                self.storage.download(join(self.uri, name), self.path / name)

    def put_json(self, name: str, doc: dict[str, Any]) -> None:
        self.storage.put_bytes(layout.to_json(doc), join(self.uri, name))


def sweep_staging(is_dead: Callable[[str], bool]) -> None:
    """Remove the S3 staging folders that workers of this machine left when they were killed."""
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{STAGING_PREFIX}*"):
        pid = folder.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and is_dead(f"{socket.gethostname()}:{pid}:x"):
            shutil.rmtree(folder, ignore_errors=True)

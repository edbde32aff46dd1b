"""Atomic file helpers: temp files beside the target, fsync, and a rename that publishes a file only whole."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from reelforge.errors import StorageError

__all__ = ["FILE_MODE", "PathLike", "atomic_write_bytes", "make_dirs", "publish", "publish_copy", "temp_path", "unlink_quietly", "write_then_publish"]

log = logging.getLogger("reelforge.media")

PathLike = str | os.PathLike


def _file_mode() -> int:
    """Permissions a plain open() would give a new file (mkstemp makes 0600, too tight for served files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


FILE_MODE = _file_mode()


def temp_path(path: Path) -> Path:
    """Reserve a hidden temp file next to ``path`` so the final os.replace stays on one filesystem."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise StorageError(f"cannot write {path}: {e.strerror or e}") from e
    os.close(fd)
    return Path(name)


def publish(tmp: Path, path: Path) -> None:
    """Rename a finished temp file to its name: its bytes reach the disk first, the new name after,
    so after a crash or power cut the file is the old one or the complete new one, never a part."""
    try:
        os.chmod(tmp, FILE_MODE)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except OSError as e:
        unlink_quietly(tmp)
        raise StorageError(f"cannot write {path}: {e.strerror or e}") from e


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(folder: Path) -> None:
    """``mkdir -p`` whose new folders survive a power cut (each new entry's parent is flushed)."""
    folder = Path(folder)
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        _fsync(new.parent)


def unlink_quietly(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:  # cleanup must never hide the error that caused it
        log.warning("could not remove temp file %s: %s", p, e)


def write_then_publish(path: PathLike, write: Callable[[Path], object]) -> Path:
    """Have ``write`` fill a temp file beside ``path``, then publish it: readers see the old file or the whole new one."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
    except BaseException as e:
        unlink_quietly(tmp)
        if isinstance(e, OSError):
            raise StorageError(f"cannot write {path}: {e.strerror or e}") from e
        raise
    publish(tmp, path)
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the complete new one, never a part."""
    return write_then_publish(path, lambda tmp: tmp.write_bytes(data))


def publish_copy(src: PathLike, dest: PathLike) -> Path:
    """Copy ``src`` to ``dest`` so that ``dest`` appears only complete (a finished file an engine handed back)."""
    return write_then_publish(dest, lambda tmp: shutil.copyfile(src, tmp))

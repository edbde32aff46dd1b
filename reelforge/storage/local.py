"""Local folders (file://) as output storage: writes through a temp file and a rename."""

from __future__ import annotations

import shutil
from pathlib import Path

from reelforge.errors import StorageError
from reelforge.media.files import atomic_write_bytes, make_dirs, publish, temp_path, unlink_quietly
from reelforge.storage.base import Storage
from reelforge.storage.uri import local_path


class LocalStorage(Storage):
    def put_file(self, path: Path, uri: str) -> None:
        dest = local_path(uri)
        if Path(path).resolve() == dest.resolve():
            return
        make_dirs(dest.parent)
        _copy_atomic(Path(path), dest)

    def put_bytes(self, data: bytes, uri: str) -> None:
        dest = local_path(uri)
        make_dirs(dest.parent)
        atomic_write_bytes(dest, data)

    def get_bytes(self, uri: str) -> bytes:
        try:
            return local_path(uri).read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc.strerror}") from None

    def exists(self, uri: str) -> bool:
        return local_path(uri).exists()

    def list(self, uri: str) -> list[str]:
        folder = local_path(uri)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))

    def download(self, uri: str, path: Path) -> Path:
        src = local_path(uri)
        if not src.exists():
            raise StorageError(f"{uri} does not exist")
        make_dirs(path.parent)
        if src.resolve() != path.resolve():
            _copy_atomic(src, path)
        return path

    def remove_tree(self, uri: str) -> None:
        folder = local_path(uri)
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot delete {uri}: {exc.strerror}") from None


def _copy_atomic(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` through a unique temp file next to it: concurrent copies never share
    a temp file, the last rename wins, and a failed copy leaves nothing behind."""
    tmp = temp_path(dest)
    try:
        shutil.copyfile(src, tmp)
    except BaseException:
        unlink_quietly(tmp)
        raise
    publish(tmp, dest)


"""The Storage interface every output backend implements (every write atomic: an object is complete or absent)."""

from __future__ import annotations

from pathlib import Path

from reelforge.media.files import atomic_write_bytes, make_dirs


class Storage:
    def put_file(self, path: Path, uri: str) -> None:
        raise NotImplementedError

    def put_bytes(self, data: bytes, uri: str) -> None:
        raise NotImplementedError

    def get_bytes(self, uri: str) -> bytes:
        raise NotImplementedError

    def exists(self, uri: str) -> bool:
        raise NotImplementedError

    def list(self, uri: str) -> list[str]:
        """Names of the objects directly under the folder ``uri``."""
        raise NotImplementedError

    def download(self, uri: str, path: Path) -> Path:
        make_dirs(path.parent)
        atomic_write_bytes(path, self.get_bytes(uri))
        return path

    def remove_tree(self, uri: str) -> None:
        """Delete the folder ``uri`` and everything under it (nothing there is fine)."""
        raise NotImplementedError

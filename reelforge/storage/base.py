"""Storage for job outputs: local folders (file://) and S3 (s3://, any S3-compatible endpoint).

Every write is atomic: an object is complete or absent. Local writes go through a temporary
file and a rename; an S3 PUT is atomic by itself.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

from reelforge.errors import RequestError, StorageError
from reelforge.media.video import _publish, _temp_path, _unlink_quietly, atomic_write_bytes, make_dirs


VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".webm", ".mkv"}


def check_location(uri: str, field: str = "output") -> str:
    """``uri``, refused (RequestError naming ``field``) when its S3 key or file path has an empty, '.' or '..' segment.

    Every output backend goes through this one check: S3 would store ``a/../b`` as a literal
    key that no folder view shows, a local folder would resolve it outside the place asked for.
    """
    if uri.startswith("s3://"):
        rest = uri[len("s3://"):].partition("/")[2]
    elif uri.startswith("file://"):
        rest = unquote(urlparse(uri).path).strip("/")
    else:
        return uri
    if rest and any(p in ("", ".", "..") for p in rest.split("/")):
        raise RequestError(field, f"{uri!r} has an empty, '.' or '..' path segment; write the location without them")
    return uri


def to_uri(location: str | os.PathLike) -> str:
    """A path or URI as a URI: plain paths become absolute file:// URIs."""
    text = os.fspath(location)
    if text.startswith(("s3://", "file://")):
        return check_location(text.rstrip("/")) if text not in ("s3://", "file://") else text
    if "://" in text:
        raise StorageError(f"output {text!r}: use a folder path, file:// or s3://bucket/prefix")
    if "\0" in text:
        raise StorageError(f"output {text!r} contains a NUL character, which no path can hold")
    path = Path(text).expanduser()
    if path.suffix.lower() in VIDEO_SUFFIXES and not path.is_dir():
        raise StorageError(
            f"output {text!r} looks like a file name, but the output is a folder (each job writes "
            "<folder>/<job id>/output.mp4); to save one file: reelforge jobs download JOB_ID -o " + text
        )
    try:
        return path.resolve().as_uri()
    except ValueError as exc:  # "embedded null byte" and the like
        raise StorageError(f"output {text!r} is not a usable path: {exc}") from None


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def local_path(uri: str) -> Path:
    if not uri.startswith("file://"):
        raise StorageError(f"{uri} is not a local file:// location")
    return Path(unquote(urlparse(uri).path))


def split_s3(uri: str) -> tuple[str, str]:
    u = urlparse(uri)
    if u.scheme != "s3" or not u.netloc:
        raise StorageError(f"{uri!r} is not an s3://bucket/key URI")
    return u.netloc, u.path.lstrip("/")


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
        _mkdir(path.parent)
        atomic_write_bytes(path, self.get_bytes(uri))
        return path

    def remove_tree(self, uri: str) -> None:
        """Delete the folder ``uri`` and everything under it (nothing there is fine)."""
        raise NotImplementedError


class LocalStorage(Storage):
    def put_file(self, path: Path, uri: str) -> None:
        dest = local_path(uri)
        if Path(path).resolve() == dest.resolve():
            return
        _mkdir(dest.parent)
        _copy_atomic(Path(path), dest)

    def put_bytes(self, data: bytes, uri: str) -> None:
        dest = local_path(uri)
        _mkdir(dest.parent)
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
        _mkdir(path.parent)
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


def _mkdir(folder: Path) -> None:
    make_dirs(folder)


def _copy_atomic(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` through a unique temp file next to it: concurrent copies never share
    a temp file, the last rename wins, and a failed copy leaves nothing behind."""
    tmp = _temp_path(dest)
    try:
        shutil.copyfile(src, tmp)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _publish(tmp, dest)


_s3_clients = threading.local()


class S3Storage(Storage):
    """S3 through boto3; AWS_ENDPOINT_URL_S3 points it at any S3-compatible server."""

    def __init__(self, client=None):
        self._client = client

    @property
    def client(self):
        if self._client is not None:
            return self._client
        # boto3's default session is not safe to make clients from in many threads: one client per thread.
        if getattr(_s3_clients, "client", None) is None:
            import boto3

            _s3_clients.client = boto3.session.Session().client("s3")
        return _s3_clients.client

    def _call(self, what: str, uri: str, fn, *args, **kw):
        from reelforge.client.aws_errors import botocore_errors

        context = f"cannot {what} {uri}"
        url = getattr(getattr(self.client, "meta", None), "endpoint_url", None) or "S3"
        with botocore_errors(url=url, fallback=StorageError, context=context,
                             client_error=lambda code, message: StorageError(f"{context}: {code}: {message}")):
            return fn(*args, **kw)

    def put_file(self, path: Path, uri: str) -> None:
        bucket, key = split_s3(uri)
        self._call("upload to", uri, self.client.upload_file, str(path), bucket, key)

    def put_bytes(self, data: bytes, uri: str) -> None:
        bucket, key = split_s3(uri)
        self._call("write", uri, self.client.put_object, Bucket=bucket, Key=key, Body=data)

    def get_bytes(self, uri: str) -> bytes:
        bucket, key = split_s3(uri)
        return self._call("read", uri, lambda: self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def exists(self, uri: str) -> bool:
        bucket, key = split_s3(uri)
        resp = self._call("list", uri, self.client.list_objects_v2, Bucket=bucket, Prefix=key, MaxKeys=1)
        return any(o["Key"] == key for o in resp.get("Contents", []))

    def list(self, uri: str) -> list[str]:
        bucket, key = split_s3(uri)
        prefix = key.rstrip("/") + "/" if key else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        return sorted(self._call("list", uri, lambda: [o["Key"][len(prefix):] for page in pages for o in page.get("Contents", [])]))

    def presigned_url(self, uri: str, expires_s: int = 3600) -> str:
        """A time-limited GET URL for one object (no request is sent to make it)."""
        bucket, key = split_s3(uri)
        return self._call("sign a URL for", uri, self.client.generate_presigned_url, "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s)

    def download(self, uri: str, path: Path) -> Path:
        bucket, key = split_s3(uri)
        _mkdir(path.parent)
        tmp = _temp_path(path)
        try:
            self._call("download", uri, self.client.download_file, bucket, key, str(tmp))
        except BaseException:
            _unlink_quietly(tmp)
            raise
        _publish(tmp, path)
        return path

    def remove_tree(self, uri: str) -> None:
        bucket, key = split_s3(uri)
        prefix = key.rstrip("/") + "/"

        def remove() -> None:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    self.client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})

        self._call("delete", uri, remove)


def storage_for(uri: str) -> Storage:
    if uri.startswith("s3://"):
        return S3Storage()
    return LocalStorage()

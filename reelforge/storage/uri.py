"""Output locations as URIs (file:// and s3://): checking, normalising, joining and splitting them."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from reelforge.errors import RequestError, StorageError


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

"""Output locations as URIs (file:// and s3://): checking, normalising, joining and splitting them."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from reelforge.errors import RequestError, StorageError


VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".webm", ".mkv"}
# s3://bucket[/key]: a bucket name of 3 to 63 lowercase letters, digits, '.' and '-'; "." stops at a newline, as in AWS
S3_URI = re.compile(r"s3://[a-z0-9][\.\-a-z0-9]{1,61}[a-z0-9](/.*)?")


def has_control_char(text: str) -> bool:
    """Whether ``text`` holds a control character (NUL, a newline, ... or DEL), which no location or URL here may."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


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
    """(bucket, key) of ``s3://bucket/key``: the key as written ('?' and '#' are part of it), StorageError otherwise."""
    scheme, sep, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if scheme.lower() != "s3" or not sep or not bucket:
        raise StorageError(f"{uri!r} is not an s3://bucket/key URI")
    return bucket, key.lstrip("/")

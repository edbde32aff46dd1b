"""S3 locations on this server: the checks on an output or image URI, and where one lives under --bucket-dir."""

from __future__ import annotations

from pathlib import Path

from reelforge.errors import ImageError, RequestError
from reelforge.storage import S3_URI, check_location, has_control_char, split_s3

OUTPUT_FIELD = "outputDataConfig.s3OutputDataConfig.s3Uri"
IMAGE_FIELD = "s3Location.uri"


def check_default_output(uri: str) -> str:
    """``uri`` without a trailing '/' when it can be a job's output location, else a one-line ValueError."""
    uri = uri.rstrip("/")
    if has_control_char(uri):
        raise ValueError(f"{uri!r} contains a control character, which an output location may not")
    if not S3_URI.fullmatch(uri):
        raise ValueError(f"{uri!r} is not an S3 location; write it as s3://bucket/prefix (a bucket name of 3 to 63 lowercase letters, digits, '.' and '-')")
    try:
        return check_location(uri)
    except RequestError as exc:
        raise ValueError(exc.message) from None


_MAX_SEGMENT = 255  # bytes in one file name on the usual filesystems


def missing_message(uri: str) -> str:
    """Why an image at ``uri`` cannot be read from the bucket folder."""
    # One message for "not there" and "leads outside the folder": a difference would tell a
    # client whether a file exists somewhere else on the server's disk.
    return f"{uri} does not exist in the server's bucket folder"


def check_s3_uri(uri: str, field: str) -> tuple[str, str]:
    """(bucket, key) of ``uri`` when it is ``s3://bucket[/key]`` with a valid bucket name, else a RequestError."""
    if not isinstance(uri, str):
        raise RequestError(field, "must be an s3://bucket/key URI")
    if has_control_char(uri):
        raise RequestError(field, f"{uri!r} contains a control character (such as NUL or a newline); S3 URIs here may not")
    if not S3_URI.fullmatch(uri):
        raise RequestError(
            field,
            f"{uri!r} is not an S3 location; write it as s3://bucket/key (a bucket name of 3 to 63 lowercase letters, digits, '.' and '-')",
        )
    return split_s3(uri)


def bucket_path(bucket_dir: Path, s3_uri: str, field: str) -> Path:
    """Where ``s3_uri`` lives under ``bucket_dir``; RequestError (ImageError for an image) when it could leave it."""
    bucket, key = check_s3_uri(s3_uri, field)
    check_location(s3_uri, field)
    parts = key.split("/") if key else []
    if any(len(p.encode("utf-8", "surrogatepass")) > _MAX_SEGMENT for p in parts):
        raise RequestError(field, f"{s3_uri!r} has a path segment longer than {_MAX_SEGMENT} bytes, which a local bucket folder cannot hold")
    path = Path(bucket_dir, bucket, *parts)
    try:
        inside = path.resolve().is_relative_to(bucket_dir.resolve())
    except (OSError, ValueError, RuntimeError):  # a symlink loop, say
        inside = False
    if not inside:
        if field == IMAGE_FIELD:
            raise ImageError(field, missing_message(s3_uri))
        raise RequestError(field, f"{s3_uri!r} leads outside the server's bucket folder (through a symbolic link)")
    return path.resolve()

"""Output storage: local folders and S3 behind one interface, and the URIs that name output locations."""

from reelforge.storage.base import Storage
from reelforge.storage.local import LocalStorage
from reelforge.storage.s3 import S3Storage
from reelforge.storage.uri import S3_URI, VIDEO_SUFFIXES, check_location, has_control_char, join, local_path, split_s3, to_uri

__all__ = [
    "LocalStorage", "S3Storage", "S3_URI", "Storage", "VIDEO_SUFFIXES", "check_location", "has_control_char", "join",
    "local_path", "split_s3",
    "storage_for", "to_uri",
]


def storage_for(uri: str) -> Storage:
    """The storage that holds ``uri``: S3 for s3://, local folders otherwise."""
    if uri.startswith("s3://"):
        return S3Storage()
    return LocalStorage()

"""S3 (s3://, any S3-compatible endpoint) as output storage: an S3 PUT is atomic by itself."""

from __future__ import annotations

import threading
from pathlib import Path

from reelforge.errors import StorageError
from reelforge.storage.aws_errors import botocore_errors
from reelforge.media.files import make_dirs, publish, temp_path, unlink_quietly
from reelforge.storage.base import Storage
from reelforge.storage.uri import split_s3

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
        make_dirs(path.parent)
        tmp = temp_path(path)
        try:
            self._call("download", uri, self.client.download_file, bucket, key, str(tmp))
        except BaseException:
            unlink_quietly(tmp)
            raise
        publish(tmp, path)
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

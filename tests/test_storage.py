"""reelforge.storage: atomic local copies and downloads through unique temp files, and to_uri's errors."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from reelforge.storage import local as storage
from reelforge.errors import StorageError
from reelforge.media.files import FILE_MODE
from reelforge.storage import LocalStorage, S3Storage, to_uri


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(set(os.listdir(folder)) - keep)


def test_to_uri_nul_byte_is_a_storage_error():
    with pytest.raises(StorageError, match="NUL"):
        to_uri("videos/a\x00b")


def test_to_uri_plain_paths(tmp_path):
    assert to_uri(tmp_path) == tmp_path.resolve().as_uri()
    assert to_uri("s3://bucket/prefix/") == "s3://bucket/prefix"


def _failing_copy(written: list):
    def copyfile(src, dst):
        Path(dst).write_bytes(b"half")  # a partial copy, then the disk fills up
        written.append(Path(dst))
        raise OSError(28, "No space left on device")

    return copyfile


@pytest.mark.parametrize("how", ["put_file", "download"])
def test_failed_local_copy_leaves_no_temp_file(tmp_path, monkeypatch, how):
    src = tmp_path / "src.mp4"
    src.write_bytes(b"video")
    out = tmp_path / "out"
    out.mkdir()
    (out / "v.mp4").write_bytes(b"old")
    written: list[Path] = []
    monkeypatch.setattr(storage.shutil, "copyfile", _failing_copy(written))
    with pytest.raises(OSError):
        if how == "put_file":
            LocalStorage().put_file(src, (out / "v.mp4").as_uri())
        else:
            LocalStorage().download(src.as_uri(), out / "v.mp4")
    assert written and written[0].parent == out  # the temp file was next to the target...
    assert leftovers(out, {"v.mp4"}) == []  # ...and is gone
    assert (out / "v.mp4").read_bytes() == b"old"  # the old file is untouched


class _FailingS3:
    def __init__(self):
        self.targets = []

    def download_file(self, bucket, key, filename):
        from botocore.exceptions import ClientError

        Path(filename).write_bytes(b"partial")
        self.targets.append(filename)
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "try later"}}, "GetObject")


def test_failed_s3_download_leaves_no_temp_file(tmp_path):
    fake = _FailingS3()
    with pytest.raises(StorageError, match="SlowDown"):
        S3Storage(fake).download("s3://bucket/job/output.mp4", tmp_path / "v.mp4")
    assert fake.targets and Path(fake.targets[0]).parent == tmp_path
    assert os.listdir(tmp_path) == []


class _SlowS3:
    """download_file that waits until every caller has written its file, as parallel downloads would."""

    def __init__(self, n):
        self.barrier = threading.Barrier(n, timeout=10)
        self.names = []

    def download_file(self, bucket, key, filename):
        Path(filename).write_bytes(key.encode())
        self.names.append(filename)
        self.barrier.wait()


def test_concurrent_s3_downloads_to_one_target(tmp_path):
    fake = _SlowS3(3)
    errors = []

    def fetch(i):
        try:
            S3Storage(fake).download(f"s3://bucket/key{i}", tmp_path / "v.mp4")
        except Exception as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert len(set(fake.names)) == 3  # every download had its own temp file
    assert (tmp_path / "v.mp4").read_bytes() in {b"key0", b"key1", b"key2"}
    assert os.listdir(tmp_path) == ["v.mp4"]


@pytest.mark.parametrize("how", ["put_file", "download"])
def test_two_concurrent_copies_to_one_target_both_succeed(tmp_path, monkeypatch, how):
    """Both copies finish writing before either renames: with one shared temp name the second rename failed."""
    sources = []
    for i in range(2):
        p = tmp_path / f"src{i}.mp4"
        p.write_bytes(f"video {i}".encode() * 1000)
        sources.append(p)
    out = tmp_path / "out"
    barrier = threading.Barrier(2, timeout=10)
    real_copy = storage.shutil.copyfile
    temps = []

    def copyfile(src, dst):
        real_copy(src, dst)
        temps.append(dst)
        barrier.wait()

    monkeypatch.setattr(storage.shutil, "copyfile", copyfile)
    errors = []

    def copy(src):
        try:
            if how == "put_file":
                LocalStorage().put_file(src, (out / "v.mp4").as_uri())
            else:
                LocalStorage().download(src.as_uri(), out / "v.mp4")
        except Exception as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=copy, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert len(set(map(str, temps))) == 2
    assert (out / "v.mp4").read_bytes() in {s.read_bytes() for s in sources}
    assert os.listdir(out) == ["v.mp4"]
    assert (out / "v.mp4").stat().st_mode & 0o777 == FILE_MODE  # as a plain open() would make it, not mkstemp's 0600

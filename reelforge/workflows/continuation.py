"""Extending a video: a new shot rendered from its last frame, then the two joined by stream copy.

``plan`` runs when the extension is submitted: it reads the source video (a finished job's, or
uploaded bytes), takes its last frame as the image of an image-to-video request at the source's
size and frame rate, and readies the source to become the job's ``shot_0001.mp4``: as it is when
its stream can be joined to what this machine's encoder writes, else re-encoded once. ``place``
puts it in the job's folder before the job is recorded; the worker then renders the new shot and
joins the two (``jobs.units.Unit.append_to_source``), so the job's ``output.mp4`` is the whole video
and its shots are Bedrock's usual ``shot_0001.mp4``, ``shot_0002.mp4``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from reelforge.request import images
from reelforge.media import video as media
from reelforge.errors import RequestError, StorageError
from reelforge.jobs import layout
from reelforge.jobs.record import JobRecord, JobStatus
from reelforge.request.model import ImageInput, VideoRequest
from reelforge.storage.base import join, storage_for

SOURCE_NAME = "shot_0001.mp4"  # where an extension's source sits in its folder


@dataclass
class Plan:
    request: VideoRequest  # the new shot: image-to-video from the source's last frame
    width: int
    height: int
    total_seconds: str  # source and new shot together, as the OpenAI wire shows it
    folder: Path
    source: Path  # the file that becomes shot_0001.mp4

    def place(self, record: JobRecord) -> None:
        storage_for(record.storage_uri).put_file(self.source, join(record.storage_uri, SOURCE_NAME))

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def plan(source: JobRecord | None, upload: bytes | None, prompt: str, seconds: int, field: str) -> Plan:
    """What extending ``source`` (a finished job) or ``upload`` (MP4 bytes) by ``seconds`` needs; RequestError naming ``field``."""
    folder = Path(tempfile.mkdtemp(prefix="reelforge-extend-"))
    try:
        path = folder / "source.mp4"
        seed = None
        if source is not None:
            if source.status is not JobStatus.COMPLETED:
                raise RequestError(field, f"job {source.id} is {source.status.value.lower()}; only a completed video can be extended")
            try:
                storage_for(source.storage_uri).download(join(source.storage_uri, layout.VIDEO), path)
            except StorageError:
                raise RequestError(field, f"job {source.id} has no output.mp4 to extend (its files were removed)") from None
            seed = (source.model_input.get("videoGenerationConfig") or {}).get("seed")
        else:
            path.write_bytes(upload or b"")
        try:
            info = media.probe(path)
            last = media.read_frame(path, info.frames - 1) if info.frames else None
        except Exception as exc:  # PyAV raises many kinds for bytes that are not a video
            raise RequestError(field, f"is not a video this server can read ({type(exc).__name__}); send an MP4") from None
        fps = round(info.fps)
        if last is None or not fps or abs(info.fps - fps) > 0.01:
            raise RequestError(field, f"has {info.frames} frames at {info.fps:g} fps; an extension needs a video with frames at a whole frame rate")
        if info.width % 2 or info.height % 2:
            raise RequestError(field, f"is {info.width}x{info.height}; an extension needs an even width and height")
        png = images.encode_png(Image.fromarray(np.asarray(last, dtype=np.uint8)))
        request = VideoRequest(
            text=prompt, image=ImageInput(format="png", bytes_b64=images.to_base64(png)),
            duration_s=seconds, fps=fps, width=info.width, height=info.height, seed=seed,
        )
        total = info.frames / fps + seconds
        joinable = _joinable(path, folder, fps, info.width, info.height)
        return Plan(request, info.width, info.height, f"{total:g}", folder, path if joinable else _reencode(path, folder, fps))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _joinable(path: Path, folder: Path, fps: int, width: int, height: int) -> bool:
    """Whether ``path`` joins by stream copy with what the worker will encode at this size and rate."""
    probe = media.encode_mp4([np.zeros((height, width, 3), np.uint8)] * 2, folder / "probe.mp4", fps)
    return media.streams_match([path, probe])


def _reencode(path: Path, folder: Path, fps: int) -> Path:
    out = folder / "normalized.mp4"
    return media.encode_mp4(media.read_frames(path), out, fps)

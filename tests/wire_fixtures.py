"""Helpers for the OpenAI and Google wire tests: unmodified clients, images made in code, decoded videos."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from reelforge import media

warnings.filterwarnings("ignore", message=".*Sora API is scheduled.*", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*generate_videos method with prompt.*", category=DeprecationWarning)


def openai_client(url: str, api_key: str = "sk-test", strict: bool = True, **kw):
    """The unmodified openai client pointed at reelforge: only base_url changes (and one attempt, so a refusal is one request)."""
    import openai

    return openai.OpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0, _strict_response_validation=strict, **kw)


def gradient(width: int, height: int) -> Image.Image:
    """A smooth picture (H.264 keeps it closely) that differs across the frame in both directions."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), np.full((height, width), 90.0)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def close_to(frame: np.ndarray, img: Image.Image, tolerance: float = 8.0) -> bool:
    """Whether a decoded frame is the image, up to the encoder's loss."""
    return float(np.abs(frame.astype(np.int16) - np.asarray(img, dtype=np.int16)).mean()) < tolerance


def decoded(data: bytes, folder: Path, name: str = "video.mp4") -> media.VideoInfo:
    """The probe of MP4 bytes, decoded frame by frame (so a broken file fails here)."""
    path = folder / name
    path.write_bytes(data)
    return media.probe(path)


def first_frame(data: bytes, folder: Path, name: str = "first.mp4") -> np.ndarray:
    path = folder / name
    path.write_bytes(data)
    return media.read_frame(path, 0)


def job_count(server) -> int:
    return len(server.runtime.store.list(limit=10_000))

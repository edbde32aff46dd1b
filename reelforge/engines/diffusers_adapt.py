"""Fitting a request to what a video model can generate, and mapping the result back.

Pure numpy/Pillow, no torch: the diffusers engine plans a generation (size, frame count, fps
the model accepts), runs it, then adapts the frames to exactly what was asked:

- size: the requested frame is the *center crop of the generated frame with the requested
  aspect ratio*, scaled to the requested size (same as "scale to cover, then center crop").
  Rounding sides *up* to the model's multiple keeps the scale at 1 (a pure crop) whenever the
  request fits the model's pixel budget.
- time: output frame i (at t = i / fps) shows the generated frame nearest to t ("realtime").
  When the generated clip is shorter than the request (a fixed-length model such as CogVideoX,
  or a frame cap), the clip is stretched over the requested duration (slow motion) instead.
- image-to-video: the conditioning image goes through the inverse of the size mapping (scaled to
  the crop box, then edge-padded to the generation size), so the output's first frame lines up
  with the image instead of being stretched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image

from ..errors import EngineError


@dataclass(frozen=True)
class ModelRules:
    """What a loaded pipeline accepts; measured from its config, not assumed."""

    side_multiple: int  # height and width must be multiples of this
    frame_multiple: int  # frame counts must be k * frame_multiple + 1
    max_frames: int
    max_pixels: int  # generation budget; larger requests are generated smaller and scaled up
    fixed_size: tuple[int, int] | None = None  # (width, height) for fixed-size models
    fixed_frames: int | None = None
    fixed_fps: int | None = None  # the fps the model was trained at, when it takes no fps input

    def frame_rule(self) -> str:
        return f"{self.frame_multiple}k+1"


@dataclass(frozen=True)
class GenerationPlan:
    width: int
    height: int
    frames: int
    fps: int
    notes: tuple[str, ...] = ()


def valid_frames_at_least(n: int, multiple: int) -> int:
    """Smallest k * multiple + 1 that is >= n (and >= multiple + 1)."""
    k = max(1, math.ceil((n - 1) / multiple))
    return k * multiple + 1


def valid_frames_at_most(n: int, multiple: int) -> int:
    return max(1, (n - 1) // multiple) * multiple + 1


def _round_up(x: float, multiple: int) -> int:
    return max(multiple, math.ceil(x / multiple - 1e-9) * multiple)


def plan_generation(
    rules: ModelRules,
    width: int,
    height: int,
    duration_s: float,
    fps: int,
    *,
    gen_width: int | None = None,
    gen_height: int | None = None,
    gen_frames: int | None = None,
    gen_fps: int | None = None,
) -> GenerationPlan:
    """The size, frame count and fps to ask the model for; overrides are checked, never rounded."""
    notes: list[str] = []
    # size
    if gen_width or gen_height:
        w, h = gen_width or width, gen_height or height
        for name, v in (("generation_width", w), ("generation_height", h)):
            if v % rules.side_multiple:
                raise EngineError(f"{name}={v} is not a multiple of {rules.side_multiple}, which this model needs")
        notes.append("size from options")
    elif rules.fixed_size:
        w, h = rules.fixed_size
        notes.append(f"model generates a fixed {w}x{h}")
    else:
        scale = 1.0
        if width * height > rules.max_pixels:
            scale = math.sqrt(rules.max_pixels / (width * height))
            notes.append(f"request above the model's ~{rules.max_pixels} px budget: generated smaller, scaled up")
        w, h = _round_up(width * scale, rules.side_multiple), _round_up(height * scale, rules.side_multiple)
    # fps
    if gen_fps:
        g_fps = gen_fps
    elif rules.fixed_fps:
        g_fps = rules.fixed_fps
    else:
        g_fps = fps
    # frames
    if gen_frames:
        if (gen_frames - 1) % rules.frame_multiple:
            raise EngineError(f"generation_frames={gen_frames} is not {rules.frame_rule()}, which this model needs")
        frames = gen_frames
    elif rules.fixed_frames:
        frames = rules.fixed_frames
    else:
        frames = valid_frames_at_least(math.ceil(duration_s * g_fps - 1e-9), rules.frame_multiple)
        if frames > rules.max_frames:
            if not rules.fixed_fps and not gen_fps:
                # the model takes its fps as an input: generate fewer frames per second, same motion speed
                g_fps = max(1, (rules.max_frames - 1) // max(1, math.ceil(duration_s)))
                frames = valid_frames_at_least(math.ceil(duration_s * g_fps - 1e-9), rules.frame_multiple)
                notes.append(f"fps lowered to {g_fps} to stay within {rules.max_frames} frames")
            cap = valid_frames_at_most(rules.max_frames, rules.frame_multiple)
            if frames > cap:
                frames = cap
                notes.append(f"capped at {cap} frames: the clip is stretched over the requested duration")
    return GenerationPlan(w, h, frames, g_fps, tuple(notes))


@dataclass(frozen=True)
class TimeMap:
    indices: tuple[int, ...]  # source frame for each output frame
    mode: str  # "realtime" or "stretched"
    speed: float  # 1.0 realtime; < 1 slow motion
    repeated: int  # output frames that repeat the previous source frame
    dropped: int  # source frames never shown


def time_map(n_out: int, out_fps: float, n_src: int, src_fps: float) -> TimeMap:
    """Nearest-frame resampling of n_src frames at src_fps onto n_out frames at out_fps."""
    if n_src < 1 or n_out < 1:
        raise EngineError(f"cannot resample {n_src} generated frames onto {n_out}")
    speed = min(1.0, (n_src / src_fps) / (n_out / out_fps))
    step = src_fps / out_fps * speed
    idx = tuple(min(n_src - 1, int(math.floor(i * step + 0.5))) for i in range(n_out))
    repeated = sum(1 for a, b in zip(idx, idx[1:]) if a == b)
    dropped = n_src - len(set(idx))
    return TimeMap(idx, "realtime" if speed == 1.0 else "stretched", round(speed, 6), repeated, dropped)


@dataclass(frozen=True)
class SizeMap:
    crop: tuple[int, int, int, int]  # x, y, w, h of the region of the generated frame that is kept
    scaled: bool  # whether the crop is then resized to the requested size

    def describe(self, gen: tuple[int, int], out: tuple[int, int]) -> str:
        x, y, w, h = self.crop
        text = f"center crop {w}x{h} at ({x},{y}) of {gen[0]}x{gen[1]}"
        return text + (f", scaled to {out[0]}x{out[1]} (Lanczos)" if self.scaled else "")


def size_map(gen_w: int, gen_h: int, out_w: int, out_h: int) -> SizeMap:
    s = max(out_w / gen_w, out_h / gen_h)  # scale that makes the generated frame cover the request
    cw, ch = min(gen_w, round(out_w / s)), min(gen_h, round(out_h / s))
    crop = ((gen_w - cw) // 2, (gen_h - ch) // 2, cw, ch)
    return SizeMap(crop, (cw, ch) != (out_w, out_h))


def adapt_frame(frame: np.ndarray, smap: SizeMap, out_w: int, out_h: int) -> np.ndarray:
    x, y, w, h = smap.crop
    region = frame[y : y + h, x : x + w]
    if not smap.scaled:
        return np.ascontiguousarray(region)
    return np.asarray(Image.fromarray(region).resize((out_w, out_h), Image.LANCZOS))


def adapt_frames(frames: np.ndarray, tmap: TimeMap, smap: SizeMap, out_w: int, out_h: int) -> Iterator[np.ndarray]:
    """Yield the requested frames lazily (memory stays at one output frame beyond the source)."""
    for i in tmap.indices:
        yield adapt_frame(frames[i], smap, out_w, out_h)


def fit_conditioning_image(image: Image.Image, smap: SizeMap, gen_w: int, gen_h: int) -> Image.Image:
    """Place an image of the requested size where the output crop will take it back from."""
    x, y, w, h = smap.crop
    img = image.convert("RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.LANCZOS)
    arr = np.asarray(img)
    padded = np.pad(arr, ((y, gen_h - h - y), (x, gen_w - w - x), (0, 0)), mode="edge")
    return Image.fromarray(padded)

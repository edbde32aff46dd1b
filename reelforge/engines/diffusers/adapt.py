"""Fitting a request to what a video model can generate, and mapping the result back.

Pure numpy/Pillow, no torch: the diffusers engine plans a generation (size, frame count, fps
the model accepts), runs it, then adapts the frames to exactly what was asked:

- size: the generated size is the request rounded *up* to the model's side multiple and the
  requested frame is its center crop (a pure crop, never a scale, within the model's grid).
- time: output frame i (at t = i / fps) shows the generated frame nearest to t ("realtime"):
  the fps is resampled. Requests that would need a clip stretched over a longer duration (slow
  motion) or a frame scaled are refused by ``plan_generation``, naming the field.
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

from reelforge.errors import EngineError, RequestError


DIMENSION = "videoGenerationConfig.dimension"
DURATION = "videoGenerationConfig.durationSeconds"


@dataclass(frozen=True)
class ModelRules:
    """A model's grid: what its pipeline accepts, from its configs, and its documented budgets."""

    side_multiple: int  # height and width must be multiples of this
    frame_multiple: int  # frame counts must be k * frame_multiple + 1
    max_frames: int
    max_pixels: int  # the largest width x height it was trained for
    fixed_size: tuple[int, int] | None = None  # (width, height) for fixed-size models
    fixed_frames: int | None = None
    native_fps: int = 24  # the fps it was trained at
    takes_fps: bool = False  # the pipeline takes the fps as an input: generate at the fps asked
    target_size: int | None = None  # image-to-video picks its own size bucket around this (HunyuanVideo 1.5)

    def frame_rule(self) -> str:
        return f"{self.frame_multiple}k+1"

    def describe(self) -> str:
        size = (f"{self.fixed_size[0]}x{self.fixed_size[1]}" if self.fixed_size
                else f"sides multiple of {self.side_multiple} up to {self.max_pixels} pixels")
        return f"{size}, {self.frame_rule()} frames up to {self.max_frames}"


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
    model: str = "this model",
    gen_width: int | None = None,
    gen_height: int | None = None,
    gen_frames: int | None = None,
    gen_fps: int | None = None,
) -> GenerationPlan:
    """The size, frame count and fps to ask the model for, within its grid.

    The only adaptations allowed are a crop of less than one side multiple on each side (the
    generated size is the request rounded up) and resampling the fps; a request that needs
    anything else (scaling, slow motion) raises RequestError naming the field. Overrides are
    checked, never rounded.
    """
    m = rules.side_multiple
    notes: list[str] = []
    # size
    if gen_width or gen_height:
        w, h = gen_width or width, gen_height or height
        for name, v in (("generation_width", w), ("generation_height", h)):
            if v % m:
                raise EngineError(f"{name}={v} is not a multiple of {m}, which this model needs")
        notes.append("size from options")
    elif rules.fixed_size:
        w, h = rules.fixed_size
    else:
        if width * height > rules.max_pixels:
            raise RequestError(DIMENSION, f"{width}x{height} is above {model}'s grid of {rules.max_pixels} pixels; "
                                          f"allowed: {rules.describe()}")
        w, h = _round_up(width, m), _round_up(height, m)
    if not (0 <= w - width < m and 0 <= h - height < m):
        what = "generates" if rules.fixed_size or gen_width or gen_height else "would generate"
        allowed = f"{w}x{h}, or less than {m} px smaller a side (a center crop; nothing is scaled)"
        raise RequestError(DIMENSION, f"{width}x{height} is outside {model}'s grid: it {what} {w}x{h}; allowed: {allowed}")
    if (w, h) != (width, height):
        notes.append(f"generated at {w}x{h} (sides multiple of {m}), center-cropped")
    # fps
    g_fps = gen_fps or (fps if rules.takes_fps else rules.native_fps)
    if g_fps != fps:
        notes.append(f"generated at {g_fps} fps, resampled to {fps}")
    # frames
    if gen_frames:
        if (gen_frames - 1) % rules.frame_multiple:
            raise EngineError(f"generation_frames={gen_frames} is not {rules.frame_rule()}, which this model needs")
        frames = gen_frames
    elif rules.fixed_frames:
        frames = rules.fixed_frames
    else:
        frames = valid_frames_at_least(math.ceil(duration_s * g_fps - 1e-9), rules.frame_multiple)
        if frames > rules.max_frames and rules.takes_fps and not gen_fps:
            # the model takes its fps as an input: generate fewer frames per second, same motion speed
            g_fps = max(1, (rules.max_frames - 1) // max(1, math.ceil(duration_s)))
            frames = valid_frames_at_least(math.ceil(duration_s * g_fps - 1e-9), rules.frame_multiple)
            notes.append(f"fps lowered to {g_fps} to stay within {rules.max_frames} frames, resampled to {fps}")
    if frames > rules.max_frames or frames / g_fps < duration_s - 1e-9:
        longest = int(min(frames, rules.max_frames) / g_fps + 1e-9) if rules.fixed_frames or gen_frames else \
            int((valid_frames_at_most(rules.max_frames, rules.frame_multiple) - 1) / g_fps + 1e-9)
        raise RequestError(DURATION, f"{duration_s:g} s does not fit {model}'s grid ({rules.frame_rule()} frames, at "
                                     f"most {rules.max_frames}, at {g_fps} fps); allowed: 1 to {max(1, longest)}")
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
    """A center crop of the requested size when the generated frame covers it (the grid's case), else
    the center crop with the requested aspect ratio, scaled (a pipeline that returned another size)."""
    if gen_w >= out_w and gen_h >= out_h:
        return SizeMap(((gen_w - out_w) // 2, (gen_h - out_h) // 2, out_w, out_h), False)
    s = max(out_w / gen_w, out_h / gen_h)  # scale that makes the generated frame cover the request
    cw, ch = min(gen_w, round(out_w / s)), min(gen_h, round(out_h / s))
    crop = ((gen_w - cw) // 2, (gen_h - ch) // 2, cw, ch)
    return SizeMap(crop, (cw, ch) != (out_w, out_h))


def adapt_frame(frame: np.ndarray, smap: SizeMap, out_w: int, out_h: int) -> np.ndarray:
    x, y, w, h = smap.crop
    region = frame[y : y + h, x : x + w]
    if not smap.scaled:
        return np.ascontiguousarray(region)
    return np.asarray(Image.fromarray(region).resize((out_w, out_h), Image.Resampling.LANCZOS))


def adapt_frames(frames: np.ndarray, tmap: TimeMap, smap: SizeMap, out_w: int, out_h: int) -> Iterator[np.ndarray]:
    """Yield the requested frames lazily (memory stays at one output frame beyond the source)."""
    for i in tmap.indices:
        yield adapt_frame(frames[i], smap, out_w, out_h)


def fit_conditioning_image(image: Image.Image, smap: SizeMap, gen_w: int, gen_h: int) -> Image.Image:
    """Place an image of the requested size where the output crop will take it back from."""
    x, y, w, h = smap.crop
    img = image.convert("RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.LANCZOS)
    arr = np.asarray(img)
    padded = np.pad(arr, ((y, gen_h - h - y), (x, gen_w - w - x), (0, 0)), mode="edge")
    return Image.fromarray(padded)

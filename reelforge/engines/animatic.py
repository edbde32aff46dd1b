"""The animatic engine: a weight-free previsualization renderer, not a generative model.

It illustrates a request instead of imagining it: a background seeded from (prompt, seed) and
tinted by colour words in the prompt, a few parallax shapes, the prompt as a caption, the camera
move named in the prompt (zoom, pan, tilt, dolly, orbit, static) applied to the whole frame, the
conditioning image as the exact first frame, and a slate with the shot number at each shot start.
Same prompt and seed give the same frames, byte for byte.
"""

from __future__ import annotations

import hashlib
import math
import textwrap
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from reelforge.engines.base import Engine, EngineOptions, Progress, ShotPlan
from reelforge.request.prompts import camera_motion

# The canvas is larger than the frame so the camera has room to move; at rest it shows the middle.
CANVAS_SCALE = 1.5
REST_ZOOM = CANVAS_SCALE

# Words that tint the background, so a prompt about the sea looks different from one about a forest.
PALETTE_WORDS = {
    "sand": (214, 190, 140), "beach": (222, 200, 150), "desert": (210, 160, 90),
    "sea": (40, 110, 170), "ocean": (30, 90, 160), "wave": (70, 140, 190), "water": (60, 130, 180),
    "river": (60, 120, 150), "sky": (120, 170, 230), "cloud": (200, 210, 225),
    "forest": (40, 110, 50), "tree": (60, 120, 60), "grass": (90, 160, 70), "jungle": (30, 100, 40),
    "snow": (230, 235, 245), "ice": (190, 220, 240), "night": (20, 25, 60), "city": (110, 110, 125),
    "sunset": (240, 120, 60), "sunrise": (250, 170, 90), "fire": (230, 80, 30), "neon": (200, 40, 200),
    "space": (10, 10, 30), "mountain": (120, 120, 140), "red": (200, 40, 40), "green": (40, 170, 70),
    "blue": (40, 80, 200), "yellow": (230, 200, 40), "orange": (240, 140, 30), "purple": (130, 60, 170),
    "pink": (240, 130, 180), "white": (235, 235, 235), "black": (25, 25, 25), "gold": (212, 175, 55),
}
MOTIONS = ("static", "zoom in", "zoom out", "pan left", "pan right", "tilt up", "tilt down", "dolly in", "dolly out", "orbit")


def smooth(t: float) -> float:
    return t * t * (3 - 2 * t)


def camera(motion: str, t: float) -> tuple[float, float, float]:
    """Camera at time t in [0, 1]: (centre x, centre y) as canvas fractions and a zoom factor.

    Zoom is canvas size over view size, so REST_ZOOM shows exactly one frame's worth of canvas.
    Every move starts at rest, which is what makes a conditioning image the exact first frame.
    """
    s = smooth(t)
    reach = 0.5 - 0.5 / REST_ZOOM  # farthest the centre can move at rest zoom
    if motion == "zoom in":
        return 0.5, 0.5, REST_ZOOM * (1 + 0.5 * s)
    if motion == "zoom out":
        return 0.5, 0.5, REST_ZOOM / (1 + 0.5 * s)
    if motion == "dolly in":
        return 0.5, 0.5, REST_ZOOM * (1 + 0.25 * s)
    if motion == "dolly out":
        return 0.5, 0.5, REST_ZOOM / (1 + 0.25 * s)
    if motion in ("pan left", "pan right"):
        return 0.5 + (reach if motion == "pan right" else -reach) * s, 0.5, REST_ZOOM
    if motion in ("tilt up", "tilt down"):
        return 0.5, 0.5 + (reach if motion == "tilt down" else -reach) * s, REST_ZOOM
    if motion == "orbit":
        a = 2 * math.pi * t
        return 0.5 + 0.9 * reach * math.sin(a), 0.5 + 0.45 * reach * (1 - math.cos(a)), REST_ZOOM
    return 0.5, 0.5, REST_ZOOM


def prompt_motion(text: str) -> str:
    """The camera move a prompt names, as one of MOTIONS (static when it names none)."""
    return camera_motion(text) or "static"


def seeded_rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _palette(text: str, rng: np.random.Generator) -> np.ndarray:
    lowered = text.lower()
    colours = [c for word, c in PALETTE_WORDS.items() if word in lowered][:3]
    while len(colours) < 3:
        r, g, b = (int(v) for v in rng.integers(30, 226, 3))
        colours.append((r, g, b))
    return np.array(colours, dtype=np.float32)


def _background(width: int, height: int, text: str, rng: np.random.Generator) -> Image.Image:
    """A smooth, seeded field: three palette colours blended by value noise and a slanted gradient."""
    colours = _palette(text, rng)
    coarse = Image.fromarray((rng.random((height // 64 + 2, width // 64 + 2)) * 255).astype(np.uint8))
    noise = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    grad = (np.cos(angle) * xx / width + np.sin(angle) * yy / height + 1) / 2.5
    w0 = np.clip(1 - grad - 0.5 * noise, 0, 1)[..., None]
    w2 = np.clip(noise * 0.8, 0, 1)[..., None]
    w1 = np.clip(1 - w0 - w2, 0, 1)
    img = w0 * colours[0] + w1 * colours[1] + w2 * colours[2]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def image_canvas(image: Image.Image, cw: int, ch: int) -> Image.Image:
    """The conditioning image in the middle of a canvas whose margin is a dimmed, blurred copy of it."""
    margin = image.resize((cw // 8, ch // 8), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(2))
    canvas = Image.eval(margin.resize((cw, ch), Image.Resampling.BILINEAR), lambda v: v * 6 // 10)
    canvas.paste(image, ((cw - image.width) // 2, (ch - image.height) // 2))
    return canvas


class _Scene:
    """Everything about one shot that does not change from frame to frame."""

    def __init__(self, shot: ShotPlan, options: "AnimaticEngine.Options"):
        self.shot = shot
        self.options = options
        w, h = shot.width, shot.height
        self.cw, self.ch = round(w * CANVAS_SCALE), round(h * CANVAS_SCALE)
        rng = seeded_rng(shot.seed, shot.text, shot.index)
        self.motion = prompt_motion(shot.text)
        if shot.image is not None:
            self.canvas = image_canvas(shot.image.convert("RGB").resize((w, h)) if shot.image.size != (w, h) else shot.image.convert("RGB"), self.cw, self.ch)
        else:
            self.canvas = _background(self.cw, self.ch, shot.text, rng)
        # Parallax shapes: position on the canvas, radius, depth (farther moves less), colour.
        self.shapes = [
            (rng.uniform(0.2, 0.8), rng.uniform(0.25, 0.75), rng.uniform(0.03, 0.09) * h, rng.uniform(0.3, 1.0),
             tuple(int(v) for v in rng.integers(0, 256, 3)))
            for _ in range(0 if shot.image is not None else 4)
        ]
        self.overlay = Overlay(shot, options)

    def frame(self, i: int) -> np.ndarray:
        shot = self.shot
        w, h, n = shot.width, shot.height, shot.frame_count
        t = i / max(1, n - 1)
        cx, cy, zoom = camera(self.motion, t)
        vw, vh = self.cw / zoom, self.ch / zoom
        x0 = min(max(cx * self.cw - vw / 2, 0), self.cw - vw)
        y0 = min(max(cy * self.ch - vh / 2, 0), self.ch - vh)
        if (vw, vh) == (w, h) and x0 == int(x0) and y0 == int(y0):
            img = self.canvas.crop((int(x0), int(y0), int(x0) + w, int(y0) + h))  # exact at rest
        else:
            img = self.canvas.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + vw, y0 + vh))
        draw = ImageDraw.Draw(img)
        scale = zoom / REST_ZOOM
        for sx, sy, r, depth, colour in self.shapes:
            # Near shapes (depth 1) follow the camera fully; far ones lag, which reads as depth.
            px = (sx * self.cw - x0) * w / vw * depth + w * sx * (1 - depth)
            py = (sy * self.ch - y0) * h / vh * depth + h * sy * (1 - depth)
            rr = r * (scale ** (1 + depth) if self.motion.startswith("dolly") else scale)
            draw.ellipse((px - rr, py - rr, px + rr, py + rr), fill=colour, outline=(255, 255, 255), width=2)
        self.overlay.draw(img, draw, i, self.motion)
        return np.asarray(img)


class Overlay:
    """What every previz frame carries over the picture: the caption, the slate at each shot start,
    the PREVIZ label with shot, move, seed and frame, and the time bar."""

    def __init__(self, shot: ShotPlan, options: "AnimaticEngine.Options"):
        self.shot, self.options = shot, options
        h = shot.height
        hue = seeded_rng("border", shot.index).integers(60, 256, 3)
        self.border = tuple(int(v) for v in hue)
        size = max(14, h // 30)
        self.font = ImageFont.load_default(size=size)
        self.big_font = ImageFont.load_default(size=max(24, h // 8))
        self.caption = self._caption(size) if options.caption else None

    def _caption(self, size: int) -> tuple[Image.Image, tuple[int, int]]:
        w, h = self.shot.width, self.shot.height
        chars = max(20, int(w * 0.9 / (size * 0.55)))
        lines = textwrap.wrap(self.shot.text, chars)[:3] or [""]
        if len(textwrap.wrap(self.shot.text, chars)) > 3:
            lines[-1] = lines[-1][: max(0, chars - 1)] + "…"
        pad = size // 2
        bar_h = len(lines) * int(size * 1.3) + 2 * pad
        bar = Image.new("RGBA", (w, bar_h), (0, 0, 0, 150))
        draw = ImageDraw.Draw(bar)
        for i, line in enumerate(lines):
            draw.text((pad, pad + i * int(size * 1.3)), line, font=self.font, fill=(255, 255, 255, 255))
        return bar, (0, h - bar_h - max(4, h // 60))

    def draw(self, img: Image.Image, draw: ImageDraw.ImageDraw, i: int, motion: str) -> None:
        shot = self.shot
        w, h, n = shot.width, shot.height, shot.frame_count
        slate = i < min(self.options.slate_frames, max(1, n // 4))  # short shots keep most frames clear
        frame_width = max(6, h // 40)
        if slate:  # the border first, so the caption and the label stay readable over it
            draw.rectangle((0, 0, w - 1, h - 1), outline=self.border, width=frame_width)
        if self.caption is not None:
            bar, pos = self.caption
            img.paste(bar, pos, bar)
        label = f"PREVIZ  shot {shot.index + 1}/{shot.count}  {motion}  seed {shot.seed}  frame {i + 1}/{n}"
        margin = frame_width + 6
        draw.text((margin, margin), label, font=self.font, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
        bw = max(2, h // 120)
        draw.rectangle((0, h - bw, int(w * (i + 1) / n), h), fill=self.border)  # time bar
        if slate:
            text = f"SHOT {shot.index + 1}"
            box = draw.textbbox((0, 0), text, font=self.big_font)
            tx, ty = (w - (box[2] - box[0])) // 2, (h - (box[3] - box[1])) // 2
            draw.text((tx, ty), text, font=self.big_font, fill=self.border, stroke_width=4, stroke_fill=(0, 0, 0))


class AnimaticEngine(Engine):
    """Previsualization renderer: shows framing, timing and camera moves, with no model weights."""

    engine_id = "animatic"
    summary = "previsualization renderer (no weights, not a generative model)"
    generative = False

    class Options(EngineOptions):
        caption: bool = True
        slate_frames: int = 12  # frames at the start of each shot that show its number (at most a quarter)

    options: Options

    def render_shot(self, shot: ShotPlan, progress: Progress) -> Iterable[np.ndarray]:
        scene = _Scene(shot, self.options)
        progress.metadata.setdefault("camera_motion", []).append(scene.motion)
        n = shot.frame_count
        for i in range(n):
            progress(i, n, "render")
            frame = scene.frame(i)
            if i == 0 and shot.image is not None:
                # The slate is drawn over frame 0; the conditioning image itself must open the shot.
                frame = np.asarray(shot.image.convert("RGB"))
            yield frame
        progress(n, n, "render")

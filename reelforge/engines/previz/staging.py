"""Where the previz's subjects stand: each one's place, size and heading, from the prompt and then the seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reelforge.engines.base import ShotPlan
from reelforge.engines.previz.palette import grade
from reelforge.engines.previz.reading import Reading, Subject
from reelforge.engines.previz.shapes import SHAPES
from reelforge.engines.previz.vocabulary import WATER

DEPTH = {"background": (0.45, 0.55), "middle": (0.7, 1.0), "foreground": (1.0, 1.5)}  # parallax, size
HORIZON = 0.46


@dataclass
class Placed:
    subject: Subject
    x: float  # world px from the frame's centre
    y: float  # world px of the box's bottom (its centre for sky subjects)
    w: float
    h: float
    p: float  # parallax
    rgb: tuple[int, int, int]
    heading: int  # +1 right, -1 left
    label: str


def layout(reading: Reading, shot: ShotPlan, rng: np.random.Generator) -> list[Placed]:
    """Where each subject stands: its side and depth from the prompt, the rest from the seed."""
    W, H = shot.width, shot.height
    kinds = reading.kinds
    water = any(k in WATER for k in kinds)
    base = {"left": -0.28, "centre": 0.0, "right": 0.28}
    sides = ["left", "right"] if rng.random() < 0.5 else ["right", "left"]
    used: dict[str, int] = {}
    placed: dict[str, Placed] = {}
    order = [s for s in reading.subjects if not s.near] + [s for s in reading.subjects if s.near]  # targets first
    for k, s in enumerate(order):
        if s.side is None and s.near is None:
            s.side = sides[k % 2]
        n = used.get(s.side or "", 0)
        used[s.side or ""] = n + 1
        if s.near and s.near.split()[-1] in placed:
            other = placed[s.near.split()[-1]]
            way = -1 if s.near.startswith("left") else 1 if s.near.startswith("right") else (1 if rng.random() < 0.5 else -1)
            fx = other.x / W + way * 0.2
            s.side = "left" if fx < -0.08 else "right" if fx > 0.08 else "centre"
            if s.depth == "middle":
                s.depth = other.subject.depth
        else:
            jitter = 0.04 if s.side == "centre" else 0.07
            spread = (n * 0.16) * (-1 if s.side == "left" else 1) if s.side != "centre" else n * 0.2 * (1 if k % 2 else -1)
            fx = base[s.side or "centre"] + spread + rng.uniform(-jitter, jitter)
        s.x = float(fx)
        aspect, rel_h, _ = SHAPES[s.noun]
        p, scale = DEPTH[s.depth]
        h = min(0.75, rel_h * scale * s.size) * H
        w = h * aspect
        if w > 0.9 * W:
            w, h = 0.9 * W, 0.9 * W / aspect
        horizon = HORIZON * H
        if s.place == "sky" or "space" in kinds:
            y = H * (0.16 + rng.uniform(0, 0.14)) if "space" not in kinds else H * (0.45 + rng.uniform(-0.1, 0.1))
        elif s.place == "water" and water:
            y = horizon + {"background": 0.03, "middle": 0.08, "foreground": 0.13}[s.depth] * H
        elif s.place == "sand":
            y = H * (0.8 if s.size >= 2.4 else 0.84) + h * 0.1  # sits a little into the sand
        else:
            y = {"background": horizon + 0.08 * H, "middle": 0.74 * H, "foreground": 0.8 * H if s.size >= 2.4 else 0.84 * H}[s.depth]
        heading = {"right": 1, "left": -1}.get(s.heading or "", 0) or (1 if fx < -0.05 else -1 if fx > 0.05 else (1 if rng.random() < 0.5 else -1))
        if s.motion and s.heading is None:
            s.heading = "right" if heading > 0 else "left"
        rgb = grade(s.rgb, reading.light, reading.weather)
        label = f"{s.colour} {s.noun}" if s.colour else s.noun
        placed[s.noun] = Placed(s, fx * W, y, w, h, p, rgb, heading, label)
    # far to near, so nearer subjects cover farther ones
    return sorted(placed.values(), key=lambda q: (q.p, q.y))

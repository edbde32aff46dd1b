"""reelforge.animatic-v2: a previsualization renderer that reads the prompt; not a generative model.

It blocks the scene the prompt describes with flat shapes in a 2.5D set, lit for the time of
day and shot by the named camera, with no weights, no GPU and no network. docs/previz.md lists
the vocabulary and the grammar; :func:`read_prompt` is the reading, :class:`PrevizSet` the set.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from reelforge.engines.animatic import AnimaticEngine
from reelforge.engines.base import Engine, Progress, ShotPlan
from reelforge.engines.previz.reading import Reading, read_prompt
from reelforge.engines.previz.render import PrevizSet

__all__ = ["PrevizEngine", "PrevizSet", "Reading", "read_prompt"]


class PrevizEngine(Engine):
    """Previsualization renderer: the prompt's setting, light, weather, subjects and camera, as a set."""

    engine_id = "animatic-v2"
    summary = "previsualization renderer that blocks the prompt's scene with flat shapes (no weights, not a generative model)"
    generative = False
    Options = AnimaticEngine.Options

    def render_shot(self, shot: ShotPlan, progress: Progress) -> Iterable[np.ndarray]:
        scene = PrevizSet(shot, self.options)
        progress.metadata.setdefault("camera_motion", []).append(scene.reading.camera)
        progress.metadata.setdefault("previz", []).append(scene.reading.manifest())
        n = shot.frame_count
        for i in range(n):
            progress(i, n, "render")
            yield scene.frame(i)
        progress(n, n, "render")

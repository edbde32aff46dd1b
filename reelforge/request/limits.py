"""The limits a request is checked against, per model id, and the rows of the Nova Reel ids.

One table per model id; the catalog of every id and the engine that serves it is
reelforge.engines.catalog. Nova Reel's numbers are the service's documented limits
(512 / 4000 characters, 6 s or 12-120 s in steps of 6, 24 fps, 1280x720, seed 0-2147483646);
local models may allow more and say so in their own row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

TEXT_VIDEO: Final = "TEXT_VIDEO"
MULTI_SHOT_AUTOMATED: Final = "MULTI_SHOT_AUTOMATED"
MULTI_SHOT_MANUAL: Final = "MULTI_SHOT_MANUAL"
TASK_TYPES = (TEXT_VIDEO, MULTI_SHOT_AUTOMATED, MULTI_SHOT_MANUAL)

SEED_MAX = 2_147_483_646
DEFAULT_SEED = 42  # Nova Reel's default when a request leaves the seed out


@dataclass(frozen=True)
class Limits:
    task_types: tuple[str, ...]
    text_max: int = 512
    automated_text_max: int = 4000
    # TEXT_VIDEO durations; None means any whole number in duration_range
    text_video_durations: tuple[int, ...] | None = (6,)
    duration_range: tuple[int, int] = (1, 120)
    automated_durations: tuple[int, ...] = tuple(range(12, 121, 6))
    shot_seconds: int = 6  # each MULTI_SHOT_MANUAL shot on Nova Reel
    shot_durations: tuple[int, ...] | None = None  # per-shot override allowed by local engines
    max_shots: int = 20
    fps: tuple[int, ...] = (24,)
    sizes: tuple[tuple[int, int], ...] | None = ((1280, 720),)
    max_side: int = 1920  # when sizes is None: any even size up to this
    seed_max: int = SEED_MAX
    image_exact_size: bool = True  # Nova: the image must already be the video size
    image_input: bool = True  # False for text-to-video-only models

    grid: str | None = None  # the sizes in words where the engine's own grid decides (a pixel budget, side multiples)

    def allowed_sizes_text(self) -> str:
        if self.grid:
            return self.grid
        if self.sizes:
            return ", ".join(f"{w}x{h}" for w, h in self.sizes)
        return f"any even WIDTHxHEIGHT from 64 to {self.max_side}"


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    engine: str
    summary: str
    limits: Limits
    engine_options: dict[str, Any] = field(default_factory=dict)
    # True for ids that belong to AWS (kept so Bedrock code keeps working)
    bedrock_id: bool = False
    # the modelInput schema requests arrive in: "nova" (Nova Reel's taskType form) or "luma" (luma.py)
    input_format: str = "nova"


NOVA_REEL_V1_0 = Limits(task_types=(TEXT_VIDEO,))
NOVA_REEL_V1_1 = Limits(task_types=TASK_TYPES)
LOCAL = Limits(
    task_types=TASK_TYPES,
    text_max=4000,
    text_video_durations=None,
    automated_durations=tuple(range(2, 121)),
    shot_durations=tuple(range(1, 61)),
    max_shots=50,
    fps=(8, 12, 15, 16, 24, 25, 30),
    sizes=None,
    image_exact_size=False,
)


ANIMATIC_MODEL = "reelforge.animatic-v1"
PREVIZ_MODEL = "reelforge.animatic-v2"
NOVA_BACKEND_DEFAULT = PREVIZ_MODEL  # what serves the Nova Reel ids for new jobs unless REELFORGE_NOVA_BACKEND says


NOVA_MODELS = (
    ModelSpec(
        "amazon.nova-reel-v1:0",
        "animatic",
        "Nova Reel v1.0 request format: 6 s TEXT_VIDEO (retired on AWS 2026-09-30)",
        NOVA_REEL_V1_0,
        bedrock_id=True,
    ),
    ModelSpec(
        "amazon.nova-reel-v1:1",
        "animatic",
        "Nova Reel v1.1 request format: TEXT_VIDEO and multi-shot up to 120 s",
        NOVA_REEL_V1_1,
        bedrock_id=True,
    ),
)

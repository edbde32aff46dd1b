"""Model ids, the engine behind each, and the limits a request is checked against.

One table per model id. Nova Reel's numbers are the service's documented limits
(512 / 4000 characters, 6 s or 12-120 s in steps of 6, 24 fps, 1280x720, seed 0-2147483646);
local models may allow more and say so in their own row.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from reelforge.errors import EngineError, ReelforgeError, UnknownModelError

log = logging.getLogger("reelforge.models")

TEXT_VIDEO = "TEXT_VIDEO"
MULTI_SHOT_AUTOMATED = "MULTI_SHOT_AUTOMATED"
MULTI_SHOT_MANUAL = "MULTI_SHOT_MANUAL"
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


def builtin_models() -> list[ModelSpec]:
    from reelforge.engines import luma

    return [
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
        ModelSpec(
            luma.MODEL_ID,
            "animatic",
            "Luma Ray2 request format (prompt, aspect_ratio, duration 5s/9s, resolution 540p/720p); served by a local model unless forwarded",
            Limits(
                task_types=(TEXT_VIDEO,), text_max=luma.PROMPT_MAX, text_video_durations=tuple(luma.DURATIONS.values()),
                fps=(luma.FPS,), sizes=luma.SIZES, image_exact_size=False,
            ),
            bedrock_id=True,
            input_format="luma",
        ),
        ModelSpec(
            "reelforge.animatic-v1",
            "animatic",
            "Previsualization renderer: no weights, any machine; not a generative model",
            LOCAL,
        ),
        ModelSpec(
            PREVIZ_MODEL,
            "animatic-v2",
            "Previsualization renderer that blocks the prompt's set, light, subjects and camera "
            "with flat shapes: no weights, any machine; not a generative model",
            LOCAL,
        ),
    ]


_forwarded: dict[str, str] = {}  # model id -> engine kind, for ids only an upstream serves (forward.py)


def add_forwarded(model_id: str, kind: str) -> None:
    """Make a forwarded id that no local engine serves known to the model table (its checks are the upstream's)."""
    _forwarded[model_id] = kind


def forwarded_spec(model_id: str, kind: str) -> ModelSpec:
    """The spec a forwarded job is checked with: the local row when there is one, else a permissive row for the upstream."""
    return ModelSpec(model_id, kind, f"forwarded ({kind}); the upstream's own limits apply there", LOCAL)


def local_backend() -> str:
    """The local model that serves Bedrock ids (REELFORGE_NOVA_BACKEND when it names a local model, else the animatic)."""
    backend = os.environ.get("REELFORGE_NOVA_BACKEND", ANIMATIC_MODEL)
    try:
        return backend if not _registry()[backend].bedrock_id else ANIMATIC_MODEL
    except KeyError:
        return ANIMATIC_MODEL


def _registry() -> dict[str, ModelSpec]:
    models: dict[str, ModelSpec] = {m.model_id: m for m in builtin_models()}
    from reelforge.engines import engine_classes

    for cls in engine_classes().values():
        for spec in getattr(cls, "models", lambda: [])():
            models.setdefault(spec.model_id, spec)
    for model_id, kind in _forwarded.items():
        models.setdefault(model_id, forwarded_spec(model_id, kind))
    return models


def all_models() -> list[ModelSpec]:
    return list(_registry().values())


def get_model(model_id: str) -> ModelSpec:
    models = _registry()
    try:
        return models[model_id]
    except KeyError:
        raise UnknownModelError(model_id, sorted(models)) from None


@dataclass(frozen=True)
class Served:
    """Who renders a model id: the model whose engine, options and limits really run its jobs."""

    model: ModelSpec  # the spec itself, or the model REELFORGE_NOVA_BACKEND names for a Nova Reel id
    engine: str
    options: dict[str, Any]
    via: str | None = None  # why another model serves it ("REELFORGE_NOVA_BACKEND=..."), None when it serves itself


def serving(spec: ModelSpec, environ: Mapping[str, str] | None = None) -> Served:
    """The engine, options and model that render ``spec``'s jobs, as this process's settings say.

    Read once, when a job is recorded (``Runtime.submit``); the job keeps the answer and workers
    never read their own settings to decide. Bedrock ids (Nova Reel, Luma Ray2) are served by
    another model's engine, chosen with REELFORGE_NOVA_BACKEND (a model id; default the previz,
    reelforge.animatic-v2), so the notebook's model id and Luma-on-Bedrock code keep working offline;
    a recorded job keeps the engine it was submitted with (v1 for jobs from before v2).
    REELFORGE_<ENGINE>_OPTIONS (a JSON object, e.g.
    REELFORGE_DIFFUSERS_OPTIONS='{"dtype": "float16"}') adds options to every model of that engine.
    """
    env = os.environ if environ is None else environ
    target, via = spec, None
    if spec.bedrock_id:
        backend = env.get("REELFORGE_NOVA_BACKEND") or NOVA_BACKEND_DEFAULT
        if backend != spec.model_id:
            named = get_model(backend)
            if not named.bedrock_id:
                target = named
                via = f"REELFORGE_NOVA_BACKEND={backend}" if backend != NOVA_BACKEND_DEFAULT else None
    engine, options = target.engine, dict(target.engine_options)
    var = f"REELFORGE_{engine.upper().replace('-', '_')}_OPTIONS"
    if env.get(var):
        try:
            extra = json.loads(env[var])
        except ValueError as exc:
            raise EngineError(f"{var} is not valid JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise EngineError(f"{var} must be a JSON object of engine options, e.g. '{{\"dtype\": \"float16\"}}'")
        options.update(extra)
    return Served(target, engine, options, via)


def engine_for(spec: ModelSpec) -> tuple[str, dict[str, Any]]:
    """The engine id and options a job of ``spec`` recorded now would keep (see ``serving``)."""
    served = serving(spec)
    return served.engine, served.options


def engine_of_old_job(model_id: str) -> tuple[str, dict[str, Any]]:
    """What a job recorded before jobs kept their engine would have run, decided by this process's
    settings (the job log's migration calls it once). A model id or setting that cannot be read
    here falls back to the model's own engine, then to the animatic."""
    try:
        spec = get_model(model_id)
    except UnknownModelError:
        return "", {}  # an engine not installed here: its worker resolves it from its model table
    env = dict(os.environ)
    env["REELFORGE_NOVA_BACKEND"] = env.get("REELFORGE_NOVA_BACKEND") or ANIMATIC_MODEL  # the default before the previz
    try:
        served = serving(spec, env)
        return served.engine, served.options
    except ReelforgeError as exc:
        fallback = get_model(ANIMATIC_MODEL) if spec.bedrock_id else spec
        log.warning("job log migration: jobs of %s run on the %s engine (%s)", model_id, fallback.engine, exc)
        return fallback.engine, dict(fallback.engine_options)

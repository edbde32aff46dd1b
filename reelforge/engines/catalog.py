"""The model catalog: every model id, the engine that serves it and the options it runs with.

Built-in rows, the models each installed engine declares and forwarded ids, looked up by id;
``serving`` decides which model really renders a Bedrock id. The limits themselves are
reelforge.request.limits.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping

from reelforge.engines import engine_classes, luma
from reelforge.errors import EngineError, ReelforgeError, UnknownModelError
from reelforge.request.limits import ANIMATIC_MODEL, LOCAL, NOVA_BACKEND_DEFAULT, NOVA_MODELS, PREVIZ_MODEL, TEXT_VIDEO, Limits, ModelSpec

log = logging.getLogger("reelforge.models")


def builtin_models() -> list[ModelSpec]:
    return [
        *NOVA_MODELS,
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


"""Engine discovery: built-ins and third-party engines register through the same entry-point group."""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib.metadata import entry_points

from reelforge.errors import EngineError
from reelforge.engines.base import Audio, Engine, EngineOptions, NullProgress, Progress, RenderContext, ShotOutput, ShotPlan

__all__ = ["Audio", "Engine", "EngineOptions", "NullProgress", "Progress", "RenderContext", "ShotOutput", "ShotPlan", "engine_classes", "get_engine_class", "register_engine"]

log = logging.getLogger("reelforge.engines")
GROUP = "reelforge.engines"
_extra: dict[str, type[Engine]] = {}


# Built-in engines by import path: found from a source checkout too, before `pip install -e` has
# written the entry points of a newly added one (an installed entry point of the same name wins).
# The remote engines are listed here too, so the registry imports no engine module itself: the engines
# (remote ones included) may use the registry and the catalog without an import cycle.
_BUILTIN = {
    "bedrock": "reelforge.engines.remote:BedrockEngine",
    "openai-videos": "reelforge.engines.openai_videos:OpenAIVideosEngine",
    "animatic-v2": "reelforge.engines.previz:PrevizEngine",
}


@lru_cache(maxsize=1)
def _entry_point_engines() -> dict[str, type[Engine]]:
    from importlib import import_module

    found: dict[str, type[Engine]] = {}
    for name, path in _BUILTIN.items():
        module, _, attr = path.partition(":")
        found[name] = getattr(import_module(module), attr)
    for ep in entry_points(group=GROUP):
        try:
            cls = ep.load()
        except ImportError as exc:  # an engine whose optional extra is missing still lists the others
            log.debug("engine %s not loadable: %s", ep.name, exc)
            continue
        found[ep.name] = cls
    return found


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Register an engine class at run time (what an entry point does at install time)."""
    _extra[cls.engine_id] = cls
    return cls


def engine_classes() -> dict[str, type[Engine]]:
    return {**_entry_point_engines(), **_extra}


def get_engine_class(engine_id: str) -> type[Engine]:
    classes = engine_classes()
    if engine_id not in classes:
        raise EngineError(f"no engine {engine_id!r}; installed: {', '.join(sorted(classes))}")
    return classes[engine_id]

"""The engines a worker process keeps loaded across jobs, and what kind of engine a job's is."""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Any, Callable

from reelforge.engines import Engine, get_engine_class
from reelforge.errors import ReelforgeError
from reelforge.jobs.record import options_text

log = logging.getLogger("reelforge.worker")


class EngineCache:
    """One engine instance per (engine, options) per worker, reused across jobs (weights stay loaded).

    ``on_load()`` is called after an engine is loaded (the runtime records what its process holds,
    ``held``, for model affinity: stores.py, claim)."""

    def __init__(self, on_load: Callable[[], None] | None = None):
        self._engines: dict[tuple[str, str], tuple[dict[str, Any], Engine]] = {}
        self._lock = threading.Lock()
        self.on_load = on_load

    def get(self, engine_id: str, options: dict[str, Any]) -> Engine:
        key = (engine_id, options_text(options))
        with self._lock:
            found = self._engines.get(key)
            loaded = found is None
            if loaded:
                found = self._engines[key] = (dict(options), get_engine_class(engine_id)(options))
        if loaded and self.on_load is not None:
            self.on_load()
        return found[1]

    def held(self) -> list[tuple[str, dict[str, Any]]]:
        """The engines loaded now, as (engine id, options)."""
        with self._lock:
            return [(engine_id, options) for (engine_id, _), (options, _) in self._engines.items()]

    def close(self) -> None:
        with self._lock:
            for _, engine in self._engines.values():
                try:
                    engine.close()
                except Exception:  # closing must not hide the rest
                    log.exception("closing engine %s", engine.engine_id)
            self._engines.clear()


def is_remote_engine(engine_id: str | None) -> bool:
    """True for the engines that forward whole jobs upstream (engines/remote.py)."""
    try:
        return bool(engine_id) and getattr(get_engine_class(engine_id), "remote", False)
    except ReelforgeError:
        return False


def is_coroutine_engine(engine_id: str) -> bool:
    """True when the engine's ``render`` is ``async def``: its units can run on an AsyncLane."""
    try:
        return inspect.iscoroutinefunction(get_engine_class(engine_id).render)
    except ReelforgeError:
        return False  # not installed here: the unit fails in perform, with the reason

"""The engines a worker process keeps loaded across jobs, what kind of engine a job's is, and what the process holds (model affinity)."""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Any, Callable, cast

from reelforge.engines import Engine, get_engine_class
from reelforge.errors import ReelforgeError
from reelforge.jobs.record import JobStore, options_text

log = logging.getLogger("reelforge.worker")
runtime_log = logging.getLogger("reelforge.runtime")  # what a process holds is the runtime's to say


class EngineCache:
    """One engine instance per (engine, options) per worker, reused across jobs (weights stay loaded).

    ``on_load()`` is called after an engine is loaded (the runtime records what its process holds,
    ``held``, for model affinity: jobs/sql.py, claim)."""

    def __init__(self, on_load: Callable[[], None] | None = None):
        self._engines: dict[tuple[str, str], tuple[dict[str, Any], Engine]] = {}
        self._lock = threading.Lock()
        self.on_load = on_load

    def get(self, engine_id: str, options: dict[str, Any]) -> Engine:
        key = (engine_id, options_text(options))
        with self._lock:
            found = self._engines.get(key)
            loaded = found is None
            if found is None:
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
        return bool(engine_id) and getattr(get_engine_class(cast(str, engine_id)), "remote", False)
    except ReelforgeError:
        return False


def is_coroutine_engine(engine_id: str) -> bool:
    """True when the engine's ``render`` is ``async def``: its units can run on an AsyncLane."""
    try:
        return inspect.iscoroutinefunction(get_engine_class(engine_id).render)
    except ReelforgeError:
        return False  # not installed here: the unit fails in perform, with the reason


class Holdings:
    """Model affinity: what this process holds loaded, recorded in the job log for every worker's claims (sql.py, claim)."""

    def __init__(self, store: JobStore, worker_id: str, engines: EngineCache, slots: Callable[[], int], stop: threading.Event):
        self.store, self.worker_id, self.engines = store, worker_id, engines
        self.slots, self._stop = slots, stop

    def held(self) -> list[tuple[str, dict[str, Any]]]:
        """The loaded engines that hold a worker thread while they render (not remote, not coroutine engines)."""
        return [(e, o) for e, o in self.engines.held() if not is_remote_engine(e) and not is_coroutine_engine(e)]

    def record(self, beat: bool = False) -> None:
        """Record (or, with ``beat``, renew while there is any) what this process holds and how many units it runs at once."""
        held = self.held()
        if (beat and not held) or self._stop.is_set():  # stopping: stop() forgets what is held
            return
        try:
            self.store.hold(self.worker_id, held, max(self.slots(), 1))
        except Exception:  # affinity is a preference: a job log that blinks must not fail the job that loaded it
            runtime_log.warning("could not record the engines this worker holds", exc_info=True)

    def forget(self) -> None:
        """Erase this process's record (it stops): other workers no longer leave it jobs."""
        if self.engines.held():
            try:
                self.store.hold(self.worker_id, [], 0)
            except Exception:  # recovery forgets them once they are not renewed for a lease
                runtime_log.warning("could not forget the engines this worker held", exc_info=True)

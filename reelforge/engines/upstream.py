"""What every remote engine shares: one poller per upstream, the per-upstream slot limit, kept-alive httpx
clients per event loop, file downloads, whether an upstream is another reelforge, and the Busy/UpstreamFailed signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from reelforge.errors import ReelforgeError

log = logging.getLogger("reelforge.engines.remote")

POLL_S = float(os.environ.get("REELFORGE_FORWARD_POLL_S", "0.5"))  # between two rounds of a poller
BACKOFF_S, BACKOFF_MAX_S = 0.5, 15.0
WAIT_STEP_S = 1.0  # a follower wakes at least this often to see a cancel


class UpstreamFailed(ReelforgeError):
    """The upstream job ended FAILED; the message is the upstream's."""


class Busy(Exception):
    """The upstream refused for now (throttling, a full queue): back off and try again with the same token."""


# --- one poller per upstream ---------------------------------------------------------------------


@dataclass
class _Watch:
    state: dict[str, Any] | None = None
    error: BaseException | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Poller:
    """One task, on the event loop of the jobs it follows, that reads the state of every job followed
    at one upstream, round after round: followers await their watch's event, so neither threads nor
    requests grow with jobs (one ``fetch`` per job and round)."""

    def __init__(self, name: str, fetch: Callable[[str], Awaitable[dict[str, Any]]], interval: float = POLL_S):
        self.name, self.fetch, self.interval = name, fetch, interval
        self._watches: dict[str, _Watch] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def watch(self, upstream_id: str) -> _Watch:
        w = self._watches.setdefault(upstream_id, _Watch())
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"poller {self.name}")
        self._wake.set()
        return w

    def unwatch(self, upstream_id: str) -> None:
        self._watches.pop(upstream_id, None)
        if not self._watches:
            self._wake.set()  # the task ends now, not a round later (a stopping loop finds nothing pending)

    async def _run(self) -> None:
        while self._watches:
            for upstream_id in list(self._watches):
                try:
                    state, error = await self.fetch(upstream_id), None
                except Exception as exc:  # noqa: BLE001 - the follower decides what an error means
                    state, error = None, exc
                w = self._watches.get(upstream_id)
                if w is not None:
                    w.state, w.error = state, error
                    w.changed.set()
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)


# --- what every remote engine shares ---------------------------------------------------------------


class Upstream:
    """An upstream's shared parts in this process: the concurrency limit (across every thread and
    loop of the process) and, per event loop, its poller and clients."""

    def __init__(self, key: str, concurrency: int):
        self.key = key
        self.concurrency = concurrency
        self.slots = threading.BoundedSemaphore(concurrency)
        self._per_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def on_loop(self) -> dict[str, Any]:
        """What this upstream keeps on the running loop (its poller, its httpx clients)."""
        return self._per_loop.setdefault(asyncio.get_running_loop(), {})

    def poller(self, fetch) -> Poller:
        mine = self.on_loop()
        if "poller" not in mine:
            mine["poller"] = Poller(self.key, fetch)
        return mine["poller"]


_upstreams: dict[str, Upstream] = {}
_upstreams_lock = threading.Lock()


def upstream_for(forward) -> Upstream:
    """The process's one Upstream for ``forward``'s upstream (made anew when its concurrency changes)."""
    key = forward.upstream_key()
    with _upstreams_lock:
        up = _upstreams.get(key)
        if up is None or up.concurrency != forward.concurrency:
            up = _upstreams[key] = Upstream(key, forward.concurrency)
        return up


async def wait_for_slot(up: Upstream, progress) -> None:
    """A slot of the upstream's limit; the wait holds no thread (the limit spans every loop of the process)."""
    waited = 0.0
    while not up.slots.acquire(blocking=False):
        if waited >= WAIT_STEP_S:
            progress(0, 1, f"waiting for one of {up.concurrency} upstream slots")
            waited = 0.0
        await asyncio.sleep(0.05)
        waited += 0.05


_HEALTH: dict[str, dict[str, Any]] = {}


async def reelforge_health(url: str) -> dict[str, Any]:
    """An upstream's /reelforge/health when it is another reelforge, else {}; remembered per URL once it answers."""
    import httpx

    if url == "aws":
        return {}
    if url not in _HEALTH:
        try:
            r = await shared_http().get(url + "/reelforge/health", timeout=5)
            doc = r.json() if r.status_code == 200 else {}
            _HEALTH[url] = doc if isinstance(doc, dict) and doc.get("service") == "reelforge" else {}
        except (httpx.HTTPError, ValueError):
            return {}  # not remembered: it may answer later
    return _HEALTH[url]


async def is_reelforge(url: str) -> bool:
    """Whether ``url`` is another reelforge server (its /reelforge/health says so)."""
    return bool(await reelforge_health(url))


_loop_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> {key: httpx.AsyncClient}


def loop_client(key: str, make: Callable[[], Any]):
    """One kept-alive httpx.AsyncClient per key on the running loop (a client's connections belong to one loop)."""
    clients = _loop_clients.setdefault(asyncio.get_running_loop(), {})
    if key not in clients:
        clients[key] = make()
    return clients[key]


def shared_http():
    """The running loop's kept-alive client for requests to reelforge upstreams."""
    import httpx

    return loop_client("", lambda: httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10), limits=httpx.Limits(max_connections=64)))


async def fetch_file(client, url: str, path: Path, params: dict[str, str] | None = None) -> None:
    async with client.stream("GET", url, params=params) as r:
        if r.status_code != 200:
            raise ReelforgeError(f"cannot download {url}: HTTP {r.status_code}")
        with open(path, "wb") as f:
            async for chunk in r.aiter_bytes():
                f.write(chunk)

"""Job-change notification for the event loop: one thread bridges the runtime's Condition to asyncio.

Worker threads call ``Runtime.notify``; server-sent event streams live on the event loop. A
single thread waits on the runtime and wakes every subscriber; it also wakes them once a second
so that changes made by another process (a separate ``reelforge worker``) are seen too.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from starlette.responses import StreamingResponse

from reelforge.jobs.runtime import Runtime


PING = ": ping\n\n"  # an SSE comment: keeps proxies from closing a quiet stream


def sse_event(event: str, data: Any) -> str:
    """One server-sent event: ``data`` as compact JSON."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def sse_response(stream) -> StreamingResponse:
    """A text/event-stream response of ``stream``'s events, neither cached nor buffered by a proxy."""
    return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class ChangeHub:
    def __init__(self, runtime: Runtime, tick_s: float = 1.0):
        self.runtime = runtime
        self.tick_s = tick_s
        self._subscribers: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="reelforge-change-hub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.runtime.notify()
        if self._thread is not None:
            self._thread.join(5)
        self._wake()  # subscribers see the stop and end their streams

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._subscribers.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._subscribers.discard(event)

    def _wake(self) -> None:
        for event in list(self._subscribers):
            event.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.runtime.wait_for_change(self.tick_s)
            if self._loop is not None and self._subscribers:
                try:
                    self._loop.call_soon_threadsafe(self._wake)
                except RuntimeError:  # the loop closed under us: the server is stopping
                    return

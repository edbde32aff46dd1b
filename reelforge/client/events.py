"""EventFollower: one thread per job reading a reelforge server's server-sent events for RemoteBackend.wait_for_change."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from reelforge.errors import JobNotFoundError, ReelforgeError

log = logging.getLogger("reelforge.remote")

ENDED = ("COMPLETED", "FAILED", "CANCELED")


class EventFollower(threading.Thread):
    """Reads one job's server-sent events and calls ``on_event`` on each (and once more when the stream ends).

    ``open_stream()`` opens the events response (JobNotFoundError: the server has no such route,
    which makes the follower ``fatal``); ``closed()`` says the backend was closed.
    """

    def __init__(self, job_id: str, open_stream: Callable[[], Any], on_event: Callable[[], None], closed: Callable[[], bool]):
        super().__init__(name=f"reelforge-events-{job_id}", daemon=True)
        self.job_id = job_id
        self.open_stream, self.on_event, self.closed = open_stream, on_event, closed
        self.started = time.monotonic()
        self.fatal = False  # the server has no events route: never try again
        self._response: Any = None

    def run(self) -> None:
        try:
            self._response = self.open_stream()
            with self._response as r:
                for line in r:
                    if self.closed():
                        return
                    if line.startswith(b"data:"):
                        self.on_event()
                        if json.loads(line[5:]).get("status") in ENDED:
                            return
        except JobNotFoundError:
            self.fatal = True
        except (OSError, ValueError, ReelforgeError) as exc:
            log.info("event stream for %s ended: %s", self.job_id, exc)
        finally:
            self.on_event()

    def stop(self) -> None:
        r = self._response
        if r is not None:
            try:
                r.close()
            except OSError:
                pass

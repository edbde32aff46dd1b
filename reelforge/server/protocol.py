"""How `reelforge serve` holds HTTP/1.1 connections: uvicorn's h11 protocol with the guards it lacks.

uvicorn 0.54 has no header or body read timeout (its keep-alive timer starts only after a
response), so idle or slow clients can hold connections, and with them file descriptors, for
ever; it also writes its own error replies as plain text. ``GuardedH11Protocol`` adds:

- **Read deadlines.** A request's headers must be complete within ``read_timeout`` seconds of
  the connection opening (or of the previous response), and its body within ``read_timeout``
  plus one second per ``MIN_BODY_RATE`` bytes received. A connection that sent nothing is
  closed, as uvicorn's keep-alive timer does; one that started a request gets a 408 first.
- **A connection budget** (``max_connections``, uvicorn's ``limit_concurrency``). A new
  connection beyond it closes the connection idle longest (one with no request in the app:
  waiting for headers, kept alive, or draining a refused body), so idle clients cannot lock
  others out; when every connection is busy, new requests get 503 (botocore retries those).
- **Draining a refused body.** The server answers 413 as soon as a declared Content-Length is
  over the limit; what the client keeps sending is read and dropped, up to ``DRAIN_MAX``
  bytes, so that a client still writing its body (boto3 sends no ``Expect: 100-continue``)
  reads the 413 instead of a connection reset. Then the connection is closed.
- **Bedrock's error shape** on the replies it writes itself: 400 (not HTTP), 431 (headers
  over ``MAX_HEADER_BYTES``), 408 and 503; the OpenAI or Google shape instead when the request's
  path is known and belongs to one of those wires (errors.wire_of): a 408 for a slow body, a 503.
"""

from __future__ import annotations

import asyncio
import http
import itertools
import logging
import uuid
from typing import TYPE_CHECKING

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from reelforge.server.errors import BEDROCK, ApiError, error_body, error_response, request_id_header, wire_of

if TYPE_CHECKING:
    from reelforge.server.app import ServerSettings

log = logging.getLogger("reelforge.server")

MIN_BODY_RATE = 32 * 1024  # bytes/s a body must average (after read_timeout of grace): 256 kbit/s
DRAIN_MAX = 64 * 1024 * 1024  # most bytes of a refused body read and dropped before closing
MAX_HEADER_BYTES = 64 * 1024  # request line and headers; h11's default is 16 KiB
BACKLOG = 2048  # uvicorn's default; the kernel caps it at net.core.somaxconn

_HEADERS, _BODY = "headers", "body"


class _Connection(h11.Connection):
    """h11's server side, keeping the last protocol error so the 400 can say what it was."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self):
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise


def _head_size(scope) -> int:
    headers = scope["headers"]
    return len(scope["raw_path"]) + len(scope["query_string"]) + sum(map(len, itertools.chain.from_iterable(headers))) + 4 * len(headers)


def _head_too_large(limit: int) -> ApiError:
    return ApiError(431, "ValidationException", f"The request line and headers are over {limit} bytes, this server's limit.")


def raw_error(status: int, code: str, message: str, wire: str = BEDROCK) -> bytes:
    """A whole HTTP/1.1 error reply in ``wire``'s shape (Bedrock's by default), for the protocol's own replies."""
    body, headers = error_body(wire, status, code, message)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"{extra}"
        f"{request_id_header(wire)}: {uuid.uuid4()}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines, a connection budget and Bedrock-shaped replies."""

    settings: "ServerSettings"

    @classmethod
    def for_settings(cls, settings: "ServerSettings") -> type["GuardedH11Protocol"]:
        return type(cls.__name__, (cls,), {"settings": settings})

    def __init__(self, config, server_state, app_state, _loop=None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._max_head = config.h11_max_incomplete_event_size or MAX_HEADER_BYTES
        self.conn: _Connection = _Connection(h11.SERVER, self._max_head)
        # uvicorn's own concurrency check answers in plain text; _admit makes the same check.
        self.budget, self.limit_concurrency = self.limit_concurrency, None
        self._app, self.app = self.app, self._admit
        self._timer: asyncio.TimerHandle | None = None
        self._phase: str | None = None
        self._phase_start = 0.0
        self._phase_bytes = 0
        self._drained = 0
        self.last_active = self.loop.time()

    # --- the connection budget ----------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """No request of this connection is in the app (none yet, kept alive, or a refused body draining)."""
        return (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing()

    def _open(self) -> list:
        """The connections not closing yet (closed ones leave the set only on the loop's next turn)."""
        return [c for c in self.connections if c.transport is not None and not c.transport.is_closing()]

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._enter(_HEADERS)
        if self.budget is not None and len(self.connections) > self.budget:
            open_ = self._open()
            if len(open_) > self.budget:
                idle = [c for c in open_ if c is not self and isinstance(c, GuardedH11Protocol) and c.idle]
                if idle:
                    min(idle, key=lambda c: c.last_active).transport.close()
                    log.info("at %d connections: closed the one idle longest", len(open_))

    def _over_budget(self) -> bool:
        if self.budget is None:
            return False
        return len(self.tasks) > self.budget or (len(self.connections) > self.budget and len(self._open()) > self.budget)

    async def _admit(self, scope, receive, send) -> None:
        error = None
        if self._over_budget():
            log.warning("over the limit of %d connections: refusing a request with 503", self.budget)
            error = ApiError(503, "ServiceUnavailableException", f"The server is at its limit of {self.budget} connections; try again shortly (reelforge serve --max-connections).")
        elif _head_size(scope) > self._max_head:  # h11 measures only a head that arrives in pieces
            error = _head_too_large(self._max_head)
        if error is None:
            return await self._app(scope, receive, send)
        reply = error_response(error, str(uuid.uuid4()), wire_of(scope.get("path", "")))
        reply.headers["connection"] = "close"
        await reply(scope, receive, send)

    # --- read deadlines -----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        self._phase_bytes += len(data)
        if self._phase == _BODY and self.cycle is not None and self.cycle.response_complete:
            self._drained += len(data)  # uvicorn drops these bytes; bound how many
            if self._drained > DRAIN_MAX:
                self.transport.close()
                return
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        phase = _HEADERS if state is h11.IDLE else _BODY if state is h11.SEND_BODY else None
        if phase != self._phase:
            self._enter(phase)

    def _enter(self, phase: str | None) -> None:
        # One timer per connection, armed when a phase starts and none is pending: a pending one
        # fires early for the new phase's deadline and re-arms itself (cheaper than one per phase,
        # since a kept-alive request passes through two phases).
        self._phase, self._phase_start, self._phase_bytes = phase, self.loop.time(), 0
        if phase is not None and self._timer is None:
            self._timer = self.loop.call_later(self.settings.read_timeout, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._phase is None:  # closed, or the request is in the app
            return
        allowed = self.settings.read_timeout + (self._phase_bytes / MIN_BODY_RATE if self._phase == _BODY else 0)
        left = self._phase_start + allowed - self.loop.time()
        if left > 0:
            self._timer = self.loop.call_later(left, self._check_deadline)
            return
        cycle = self.cycle if self._phase == _BODY else None
        if (self._phase == _HEADERS and not self._phase_bytes) or (cycle is not None and cycle.response_started):
            self.transport.close()  # nothing asked, or the reply is already out: just close
            return
        if cycle is not None:  # the app waits for the body: it now sees a disconnect and writes nothing
            cycle.disconnected = True
            cycle.message_event.set()
        what = "headers" if self._phase == _HEADERS else "body"
        log.info("closing a connection whose request %s did not arrive in time", what)
        wire = wire_of(cycle.scope.get("path", "")) if cycle is not None else BEDROCK  # headers unfinished: no path yet
        self.transport.write(
            raw_error(408, "RequestTimeoutException", f"The request's {what} did not arrive in time (reelforge serve --read-timeout {self.settings.read_timeout:g}).", wire)
        )
        self.transport.close()

    def connection_lost(self, exc) -> None:
        self._enter(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    # --- uvicorn's own error replies ----------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        error = self.conn.error
        if error is not None and error.error_status_hint == 431:
            too_large = _head_too_large(self._max_head)
            reply = raw_error(too_large.status, too_large.code, too_large.message)
        else:
            detail = f" ({str(error)[:200]})" if error is not None and str(error) else ""
            reply = raw_error(400, "ValidationException", f"The request is not valid HTTP/1.1{detail}.")
        self.transport.write(reply)
        self.transport.close()


def uvicorn_config(app, settings: "ServerSettings", log_level: str = "warning"):
    """The uvicorn configuration `reelforge serve` runs with (tests and benchmarks use it too)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        http=GuardedH11Protocol.for_settings(settings),
        ws="none",
        lifespan="on",
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        backlog=BACKLOG,
        timeout_graceful_shutdown=5,
        server_header=False,  # no "server: uvicorn" banner on every reply
    )

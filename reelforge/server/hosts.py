"""The DNS-rebinding guard: which Host headers a loopback-bound server answers."""

from __future__ import annotations

import ipaddress
import uuid

from reelforge.server.errors import access_denied, error_response, wire_of


LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str | None:
    """The host name of a Host header (``name``, ``name:port``, ``[v6]:port``), lowercased; None when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1:] if end >= 0 else ""
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return value[1:end]
    name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".")


class LoopbackHostMiddleware:
    """On a loopback-bound server, refuse requests whose Host header is not a loopback name.

    A DNS-rebinding page (``http://evil.example:8787`` re-pointed at 127.0.0.1) reaches a
    loopback server from the visitor's browser with ``Host: evil.example:8787``; its Origin then
    matches its own Host, so only the Host itself gives it away. Accepted: 127.0.0.0/8, ::1,
    ``localhost`` (and ``*.localhost``), the host the server was bound to and ``--allowed-host``
    names (a reverse proxy's public name). A request without
    Host (HTTP/1.0 from a program) passes: browsers always send one.
    """

    KEPT_VERDICTS = 256

    def __init__(self, app, settings):  # a ServerSettings: its host and allowed_hosts
        self.app = app
        self.names = LOOPBACK_NAMES | {_host_name(h) or h.lower() for h in (settings.host, *settings.allowed_hosts)}
        self.active = is_loopback(settings.host)
        self._verdicts: dict[bytes, bool] = {}  # Host values seen and whether they pass: the same few, request after request

    def allowed(self, host: str) -> bool:
        name = _host_name(host)
        return name is not None and (name in self.names or is_loopback(name))

    def _passes(self, raw: bytes) -> bool:
        verdict = self._verdicts.get(raw)
        if verdict is None:
            verdict = self.allowed(raw.decode("latin-1"))
            if len(self._verdicts) < self.KEPT_VERDICTS:  # made-up Host values cannot grow it
                self._verdicts[raw] = verdict
        return verdict

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.active:
            return await self.app(scope, receive, send)
        hosts = [v for k, v in scope["headers"] if k == b"host"]
        if len(hosts) > 1 or (hosts and not self._passes(hosts[0])):
            shown = hosts[0].decode("latin-1")[:100]
            exc = access_denied(
                f"Host {shown!r} is not a loopback name; this server listens on loopback and answers only "
                "requests addressed to 127.0.0.1, localhost or ::1 (a guard against DNS rebinding; "
                "reelforge serve --allowed-host NAME adds a reverse proxy's name)."
            )
            return await error_response(exc, str(uuid.uuid4()), wire_of(scope["path"]))(scope, receive, send)
        return await self.app(scope, receive, send)

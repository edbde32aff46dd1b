"""Where a webhook may be sent: URLs resolved and checked (public addresses only, unless allowed), and one POST to exactly the address checked."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from reelforge.errors import RequestError

MAX_URL = 2048
MAX_RESPONSE = 64 * 1024  # what is read of a receiver's reply (its status is what counts)


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (tests replace this to play a DNS that changes its answer)."""
    return list(dict.fromkeys(cast(str, info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


def public(address: str) -> bool:
    """Whether ``address`` is on the public internet (an IPv4-mapped IPv6 address is judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # as in the URL (the Host header and TLS name)
    port: int
    path: str
    addresses: tuple[str, ...]  # resolved and checked


def check_url(url: Any, allow_private: bool, field: str) -> Target:
    """``url`` as a webhook target, resolved and checked; RequestError naming ``field`` when it may not be used."""
    if not isinstance(url, str) or not url:
        raise RequestError(field, "must be a URL: https://host/path")
    if len(url) > MAX_URL or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise RequestError(field, f"must be a URL of at most {MAX_URL} characters without spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RequestError(field, f"{url[:200]!r} is not a URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise RequestError(field, f"{url[:200]!r} is not an http(s) URL; write https://host/path")
    if parts.username is not None or parts.password is not None:
        raise RequestError(field, "must not carry a user name or password (it would be shown wherever the URL is)")
    if parts.scheme == "http" and not allow_private:
        raise RequestError(field, f"{url[:200]!r} must use https (plain http is allowed only with --allow-private-webhooks)")
    port = port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise RequestError(field, f"the host {host!r} of {url[:200]!r} does not resolve ({exc})") from None
    if not allow_private:
        refused = [a for a in addresses if not public(a)]
        if refused or not addresses:
            raise RequestError(
                field,
                f"{url[:200]!r} resolves to {', '.join(refused) or 'nothing'}, which is not a public address (loopback, private, "
                "link-local and metadata, CGNAT and unspecified addresses are refused unless the server runs with --allow-private-webhooks)",
            )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url, parts.scheme, host, port, path, tuple(addresses))


class _Pinned(http.client.HTTPSConnection):
    """HTTPS to one checked address, the certificate checked against the URL's host name (SNI too)."""

    _context: ssl.SSLContext  # set by HTTPSConnection.__init__ (not in its stubs)

    def __init__(self, address: str, port: int, hostname: str, timeout: float):
        super().__init__(address, port, timeout=timeout, context=ssl.create_default_context())
        self._hostname = hostname

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._hostname)


def post(target: Target, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` to the first of the target's checked addresses; the status (redirects are not followed)."""
    address = target.addresses[0]
    if target.scheme == "https":
        conn: http.client.HTTPConnection = _Pinned(address, target.port, target.host, timeout)
    else:
        conn = http.client.HTTPConnection(address, target.port, timeout=timeout)
    default_port = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    try:
        conn.request("POST", target.path, body=body, headers={
            "Host": host if target.port == default_port else f"{host}:{target.port}",
            "Content-Type": "application/json", "User-Agent": "reelforge-webhooks", **headers,
        })
        response = conn.getresponse()
        response.read(MAX_RESPONSE)
        return response.status
    finally:
        conn.close()

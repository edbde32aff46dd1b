"""What the server does for browsers: the same-origin rule for state-changing requests, and the
headers that keep its pages from being framed or from loading anything from elsewhere.

The gallery has no cookies or sessions, so the threat is another site's page making the
visitor's browser send a request to this server (it often listens on 127.0.0.1): a form post
that starts jobs, a click inside a hidden frame that cancels one. Browsers mark every
cross-site request, so no token is needed. Every request whose method is not GET, HEAD or
OPTIONS passes :func:`same_origin_problem`, once, in the server's middleware:

- ``Sec-Fetch-Site``, when sent, must be ``same-origin`` (or ``none``: typed or bookmarked);
- ``Origin``, when sent, must be this server's own origin (``null`` never is);
- without ``Origin``, a ``Referer``, when sent, must point at this server.

A request with none of these headers comes from a program, not a browser page, and passes:
such a client could as well call the API. Behind a proxy that rewrites ``Host``, the proxy must
pass the original one (``proxy_set_header Host $host``), or every post is refused.

Every reply carries :func:`security_headers`: ``frame-ancestors 'none'`` and
``X-Frame-Options: DENY`` (no framing), and a Content-Security-Policy that allows scripts,
styles and connections from this server only, images and media from this server and from
the S3 endpoint that the files route redirects to for S3 outputs.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

from starlette.requests import Request

_DEFAULT_PORTS = {"http": 80, "https": 443}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
AWS_S3_SOURCES = ("https://*.amazonaws.com", "https://*.amazonaws.com.cn")


def _origin_of(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname.lower(), port


def same_origin_problem(request: Request) -> str | None:
    """Why ``request`` looks cross-site, or None when it may change things."""
    host = request.headers.get("host", "")
    own = _origin_of(f"{request.url.scheme}://{host}")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"the browser says it was sent from a {site} page"
    origin = request.headers.get("origin")
    if origin is not None:
        return None if _origin_of(origin) == own and own is not None else f"it was sent from {origin[:100]}, not from this server"
    referer = request.headers.get("referer")
    if referer is not None and (_origin_of(referer) != own or own is None):
        return "it was sent from another site"
    return None


def s3_sources(environ=os.environ) -> tuple[str, ...]:
    """CSP sources for S3 objects: the endpoint boto3 is pointed at (with its virtual-hosted buckets), or AWS's."""
    url = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if not url:
        return AWS_S3_SOURCES
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return AWS_S3_SOURCES
    if parts.scheme not in _DEFAULT_PORTS or not host:
        return AWS_S3_SOURCES
    netloc = f"[{host}]" if ":" in host else host
    suffix = f":{port}" if port else ""
    out = [f"{parts.scheme}://{netloc}{suffix}"]
    try:
        ipaddress.ip_address(host)
    except ValueError:  # a name: buckets may be addressed as bucket.name
        out.append(f"{parts.scheme}://*.{host}{suffix}")
    return tuple(out)


def content_security_policy(media_sources: tuple[str, ...]) -> str:
    media = " ".join(("'self'", *media_sources))
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {media} data:",
            f"media-src {media}",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )


DATA_POLICY = "default-src 'none'; frame-ancestors 'none'"  # a JSON reply loads nothing and is framed by no page


_NOT_FRAMED_NOR_SNIFFED = [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff")]


def security_headers(environ=os.environ) -> list[tuple[bytes, bytes]]:
    """The headers every page and file carries (a reply that sets its own CSP keeps it)."""
    return [
        (b"content-security-policy", content_security_policy(s3_sources(environ)).encode("latin-1")),
        *_NOT_FRAMED_NOR_SNIFFED,
        (b"referrer-policy", b"same-origin"),
    ]


# What a JSON reply carries instead: it is no page, so it loads nothing (and sends no Referer), and no
# page may frame it or have it read as anything but JSON.
DATA_HEADERS = [(b"content-security-policy", DATA_POLICY.encode()), *_NOT_FRAMED_NOR_SNIFFED]

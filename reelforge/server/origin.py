"""Cross-site request forgery protection for browser posts (gallery forms, cancel): a same-origin check.

The gallery has no cookies or sessions, so the threat is another site's page making the
visitor's browser post a form to this server (it often listens on 127.0.0.1) to start jobs.
Browsers mark every cross-site POST, so no token is needed:

- ``Sec-Fetch-Site``, when sent, must be ``same-origin`` (or ``none``: typed or bookmarked);
- ``Origin``, when sent, must be this server's own origin (``null`` never is);
- without ``Origin``, a ``Referer``, when sent, must point at this server.

A request with none of these headers comes from a program, not a browser page, and passes:
such a client could as well call the API. Behind a proxy that rewrites ``Host``, the proxy must
pass the original one (``proxy_set_header Host $host``), or every post is refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request

_DEFAULT_PORTS = {"http": 80, "https": 443}


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
        return f"the browser says this form was posted from a {site} page"
    origin = request.headers.get("origin")
    if origin is not None:
        return None if _origin_of(origin) == own and own is not None else f"the form was posted from {origin}, not from this server"
    referer = request.headers.get("referer")
    if referer is not None and (_origin_of(referer) != own or own is None):
        return "the form was posted from another site"
    return None

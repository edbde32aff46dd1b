"""Webhooks: where a job's events go, how they are signed, and the dispatcher that sends them.

A job's endpoints are fixed when it is recorded (``endpoints_for``): the server-wide ones
(``reelforge serve --webhook URL``, REELFORGE_WEBHOOKS) hear every job, a named one
(``--webhook-endpoint NAME=URL``) only the jobs that name it (the Bedrock tag ``reelforge:webhook``),
and a job may bring its own URL (``Client.start(webhook=...)``, ``reelforge generate --webhook``).
Every status change of the job then writes one delivery per endpoint to the outbox in the job log,
in the same transaction (the ``jobs_webhooks`` trigger, jobs/sql.py), and a ``Dispatcher`` in
every process that runs workers sends them: signed by the Standard Webhooks convention (the same
``webhook-id`` on every attempt), with timeouts, no redirects, exponential back-off with jitter for
up to a day. Deliveries are claimed with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL), so many
dispatchers never send the same one at once.

URLs are checked when a job is submitted and again before every attempt, after DNS resolution:
an address that is not public (loopback, private, link-local and metadata, CGNAT, unspecified,
multicast, reserved) is refused unless private webhooks are allowed, and the connection goes to
exactly the address that was checked (the Host header and TLS SNI carry the name). Plain http
needs the same permission. The secret is never logged, written to manifests or shown: deliveries
name it by a fingerprint (``key``), and a dispatcher only takes deliveries whose secret it holds.

Which addresses may be reached: webhook_targets.py; the body, signing and sending: webhook_dispatch.py.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from reelforge.config import env_number
from reelforge.errors import ConfigError, RequestError
from reelforge.jobs.record import JobRecord
from reelforge.jobs.webhook_targets import check_url

log = logging.getLogger("reelforge.webhooks")

KINDS = ("started", "completed", "failed", "canceled", "progress")
DEFAULT_KINDS = ("started", "completed", "failed", "canceled")  # progress only for endpoints that ask
# OpenAI's Videos API has two events; a canceled video reads as failed there (its status is "failed").
OPENAI_EVENTS = {"completed": "video.completed", "failed": "video.failed", "canceled": "video.failed"}
TAG = "reelforge:webhook"  # a Bedrock tag whose value names an endpoint registered with --webhook-endpoint


def event_type(wire: str, kind: str) -> str:
    return OPENAI_EVENTS[kind] if wire == "openai" else f"job.{kind}"


def parse_kinds(text: str | list[str] | None, field: str) -> tuple[str, ...]:
    """Event kinds from ``job.completed,job.progress`` (or bare names); RequestError naming ``field``."""
    if text is None or text == "":
        return DEFAULT_KINDS
    items = text if isinstance(text, (list, tuple)) else str(text).replace(",", " ").split()
    kinds = []
    for item in items:
        name = str(item).strip().removeprefix("job.")
        if name not in KINDS:
            raise RequestError(field, f"{item!r} is not an event; allowed: {', '.join('job.' + k for k in KINDS)}")
        if name not in kinds:
            kinds.append(name)
    return tuple(kinds)


def key_of(secret: str) -> str:
    """The name deliveries give their secret: a fingerprint that reveals nothing of it."""
    return hashlib.sha256(b"reelforge-webhook-key\0" + secret.encode()).hexdigest()[:16]


def check_secret(secret: str, field: str) -> str:
    if not secret.startswith("whsec_"):
        raise ConfigError(f"{field}: a webhook secret is whsec_ followed by base64 (24 to 64 random bytes); make one with: reelforge webhooks secret")
    try:
        raw = base64.b64decode(secret[6:], validate=True)
    except ValueError:
        raise ConfigError(f"{field}: the part after whsec_ is not base64; make a secret with: reelforge webhooks secret") from None
    if len(raw) < 24:
        raise ConfigError(f"{field}: the secret has {len(raw)} bytes; use at least 24 (reelforge webhooks secret makes 32)")
    return secret


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True)
class Settings:
    """Webhook settings of a process: the same for ``serve`` (flags), ``worker`` and the embedded client (environment)."""

    urls: tuple[str, ...] = ()  # hear every job
    named: dict[str, str] = field(default_factory=dict)  # NAME -> URL, for jobs that name it
    kinds: tuple[str, ...] = DEFAULT_KINDS  # what the server's endpoints hear
    secret: str | None = None
    allow_private: bool = False
    timeout_s: float = 10.0
    backoff_s: float = 5.0
    backoff_max_s: float = 3600.0
    give_up_s: float = 86400.0
    senders: int = 4

    def __repr__(self) -> str:  # never the secret, wherever settings are printed
        return f"Settings(urls={self.urls!r}, named={self.named!r}, kinds={self.kinds!r}, secret={'set' if self.secret else None}, allow_private={self.allow_private})"

    @property
    def key(self) -> str | None:
        return key_of(self.secret) if self.secret else None

    @classmethod
    def from_env(cls, environ=os.environ, **overrides) -> "Settings":
        """REELFORGE_WEBHOOKS (URLs, space-separated), REELFORGE_WEBHOOK_ENDPOINTS (NAME=URL ...),
        REELFORGE_WEBHOOK_EVENTS, REELFORGE_WEBHOOK_SECRET, REELFORGE_ALLOW_PRIVATE_WEBHOOKS (1/0) and
        the timings REELFORGE_WEBHOOK_TIMEOUT_S, _BACKOFF_S, _BACKOFF_MAX_S, _GIVE_UP_S; ``overrides`` win."""
        d = cls()
        values: dict[str, Any] = dict(
            urls=tuple(environ.get("REELFORGE_WEBHOOKS", "").split()),
            named=parse_named(environ.get("REELFORGE_WEBHOOK_ENDPOINTS", "").split(), "REELFORGE_WEBHOOK_ENDPOINTS"),
            secret=environ.get("REELFORGE_WEBHOOK_SECRET") or None,
            allow_private=flag(environ.get("REELFORGE_ALLOW_PRIVATE_WEBHOOKS"), "REELFORGE_ALLOW_PRIVATE_WEBHOOKS"),
            timeout_s=env_number("REELFORGE_WEBHOOK_TIMEOUT_S", d.timeout_s, 0.05),
            backoff_s=env_number("REELFORGE_WEBHOOK_BACKOFF_S", d.backoff_s, 0.01),
            backoff_max_s=env_number("REELFORGE_WEBHOOK_BACKOFF_MAX_S", d.backoff_max_s, 0.01),
            give_up_s=env_number("REELFORGE_WEBHOOK_GIVE_UP_S", d.give_up_s, 0.0),
        )
        try:
            values["kinds"] = parse_kinds(environ.get("REELFORGE_WEBHOOK_EVENTS"), "REELFORGE_WEBHOOK_EVENTS")
        except RequestError as exc:
            raise ConfigError(f"{exc.field}: {exc.message}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """ConfigError naming the setting that cannot be used (at start, not at the first job)."""
        if self.secret:
            check_secret(self.secret, "--webhook-secret / REELFORGE_WEBHOOK_SECRET")
        elif self.urls or self.named:
            raise ConfigError("webhooks need a signing secret: --webhook-secret whsec_... or REELFORGE_WEBHOOK_SECRET (make one with: reelforge webhooks secret)")
        for url in self.urls:
            _config_url(url, self.allow_private, "--webhook / REELFORGE_WEBHOOKS")
        for name, url in self.named.items():
            _config_url(url, self.allow_private, f"--webhook-endpoint {name}")


def _config_url(url: str, allow_private: bool, where: str) -> None:
    try:
        check_url(url, allow_private, "url")
    except RequestError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def flag(value: str | None, name: str) -> bool:
    text = (value or "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name}={value!r} is not usable; allowed: 1 or 0")


def parse_named(items, where: str) -> dict[str, str]:
    named = {}
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or not url or any(c in name for c in "?&%=") or len(name) > 128:
            raise ConfigError(f"{where}: {item!r} is not NAME=URL (a name of 1 to 128 characters without ?, &, % or =)")
        named[name] = url
    return named


# --- what is recorded with a job ---------------------------------------------------------------


def endpoints_for(settings: Settings, record: JobRecord, *, url: str | None = None, kinds=None, field: str = "webhook",
                  named: str | None = None, named_field: str = "tags", base: str | None = None) -> dict[str, Any]:
    """The ``webhooks`` a job is recorded with: its endpoints (each with the kinds it hears) and where its files are served."""
    endpoints = []

    def add(name: str, target_url: str, wanted) -> None:
        wanted = [k for k in wanted if record.wire != "openai" or k in OPENAI_EVENTS]  # OpenAI's wire: its own events only
        if wanted:
            endpoints.append({"name": name, "url": target_url, "kinds": wanted, "key": settings.key})

    if (url or named) and not settings.secret:
        raise RequestError(field if url else named_field, "this server has no webhook signing secret (reelforge serve --webhook-secret, or REELFORGE_WEBHOOK_SECRET); webhooks cannot be sent")
    for i, server_url in enumerate(settings.urls):
        add(f"server-{i + 1}" if len(settings.urls) > 1 else "server", server_url, settings.kinds)
    if named is not None:
        if named not in settings.named:
            known = ", ".join(sorted(settings.named)) or "none (reelforge serve --webhook-endpoint NAME=URL registers one)"
            raise RequestError(named_field, f"tag {TAG}={named[:128]!r} names no webhook endpoint of this server; registered: {known}")
        add(named, settings.named[named], settings.kinds)
    if url is not None:
        check_url(url, settings.allow_private, field)
        add("job", url, parse_kinds(kinds, field + "_events"))
    return {"endpoints": endpoints, **({"base": base.rstrip("/")} if base else {})} if endpoints else {}


def shown(delivery: dict[str, Any]) -> dict[str, Any]:
    """A delivery as the API, ``jobs show``, ``Job.webhooks`` and the gallery show it (no lease, no key)."""
    keep = ("id", "endpoint", "url", "kind", "state", "attempts", "created", "next_attempt", "last_code", "last_error", "ended", "history")
    return {k: delivery[k] for k in keep}


def tag_endpoint(tags: list[dict[str, str]] | None) -> str | None:
    for tag in tags or ():
        if tag.get("key") == TAG:
            return tag.get("value", "")
    return None

"""Webhooks: where a job's events go, how they are signed, and the dispatcher that sends them.

A job's endpoints are fixed when it is recorded (``endpoints_for``): the server-wide ones
(``reelforge serve --webhook URL``, REELFORGE_WEBHOOKS) hear every job, a named one
(``--webhook-endpoint NAME=URL``) only the jobs that name it (the Bedrock tag ``reelforge:webhook``),
and a job may bring its own URL (``Client.start(webhook=...)``, ``reelforge generate --webhook``).
Every status change of the job then writes one delivery per endpoint to the outbox in the job log,
in the same transaction (the ``jobs_webhooks`` trigger, stores.py), and a :class:`Dispatcher` in
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
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import ipaddress
import json
import logging
import os
import random
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

from reelforge.config import _number
from reelforge.errors import ConfigError, RequestError
from reelforge.jobs.record import JobRecord, JobStatus

log = logging.getLogger("reelforge.webhooks")

KINDS = ("started", "completed", "failed", "canceled", "progress")
DEFAULT_KINDS = ("started", "completed", "failed", "canceled")  # progress only for endpoints that ask
# OpenAI's Videos API has two events; a canceled video reads as failed there (its status is "failed").
OPENAI_EVENTS = {"completed": "video.completed", "failed": "video.failed", "canceled": "video.failed"}
TAG = "reelforge:webhook"  # a Bedrock tag whose value names an endpoint registered with --webhook-endpoint
MAX_URL = 2048
MAX_BODY = 256 * 1024  # the largest notification sent; a bigger job view is cut to its links
MAX_RESPONSE = 64 * 1024  # what is read of a receiver's reply (its status is what counts)
HISTORY = 30  # attempts remembered per delivery (the count goes on)


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
            timeout_s=_number("REELFORGE_WEBHOOK_TIMEOUT_S", d.timeout_s, 0.05),
            backoff_s=_number("REELFORGE_WEBHOOK_BACKOFF_S", d.backoff_s, 0.01),
            backoff_max_s=_number("REELFORGE_WEBHOOK_BACKOFF_MAX_S", d.backoff_max_s, 0.01),
            give_up_s=_number("REELFORGE_WEBHOOK_GIVE_UP_S", d.give_up_s, 0.0),
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


# --- which addresses may be reached -------------------------------------------------------------


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (tests replace this to play a DNS that changes its answer)."""
    return list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


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


# --- the notification ----------------------------------------------------------------------------


def links(record: JobRecord, base: str | None) -> dict[str, str]:
    """Where the files of a completed job are fetched (the wire's own download URL when it has one)."""
    from reelforge.server import openai_api

    if base:
        if record.wire == "openai":
            video = f"{base}/v1/videos/{openai_api.video_id(record)}/content"
            return {"video": video, "thumbnail": video + "?variant=thumbnail"}
        if record.wire == "gemini":
            return {"video": f"{base}/v1beta/files/{record.id}:download?alt=media"}
        return {"video": f"{base}/reelforge/jobs/{record.id}/files/output.mp4", "poster": f"{base}/reelforge/jobs/{record.id}/files/poster.jpg"}
    return {"video": record.output_uri.rstrip("/") + "/output.mp4", "poster": record.output_uri.rstrip("/") + "/poster.jpg"}


def view(record: JobRecord) -> dict[str, Any]:
    """The job as the wire that created it shows it; files as links, never inline bytes."""
    if record.wire == "openai":
        from reelforge.server.openai_api import video

        return video(record)
    if record.wire == "gemini":
        from reelforge.server.gemini_api import operation_view

        return operation_view(record)
    from reelforge.server.wire import summary

    return summary(record)


def as_of(record: JobRecord, delivery: dict[str, Any]) -> JobRecord:
    """The job as it was when the event happened: a job.started sent late still reads as running."""
    status = JobStatus(delivery["job_status"])
    if status is record.status:
        return record
    return dataclasses.replace(record, status=status, progress=delivery["job_progress"], end_time=None, failure_message=None,
                               last_modified=delivery["created"])


def body_for(delivery: dict[str, Any], record: JobRecord) -> str:
    """The notification's JSON text, made on the first attempt and kept: every retry sends the same bytes.

    Its time is the event's (when the status changed), so a first attempt cut short before its
    body was kept makes the same text again unless the job itself changed since."""
    now = delivery["created"]
    kind = delivery["kind"]
    record = as_of(record, delivery)
    data = view(record)
    extra = {"links": links(record, record.webhooks.get("base"))} if record.status is JobStatus.COMPLETED and record.deleted_time is None else {}
    if record.wire == "openai":  # OpenAI's event envelope, with the whole video where OpenAI sends its id only
        doc = {"id": "evt_" + delivery["id"].removeprefix("msg_"), "object": "event", "created_at": int(now),
               "type": event_type(record.wire, kind), "data": data, **extra}
    else:  # the envelope Standard Webhooks recommends
        doc = {"type": event_type(record.wire, kind), "timestamp": _iso(now), "data": data, **extra}
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > MAX_BODY:
        doc["data"] = {k: v for k, v in data.items() if not isinstance(v, (dict, list, str)) or len(json.dumps(v)) < 4096}
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return text


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (signed with the standardwebhooks package)."""
    from standardwebhooks.webhooks import Webhook

    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=timezone.utc), body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


# --- sending ---------------------------------------------------------------------------------------


class _Pinned(http.client.HTTPSConnection):
    """HTTPS to one checked address, the certificate checked against the URL's host name (SNI too)."""

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


def backoff(attempts: int, settings: Settings) -> float:
    """Seconds before attempt ``attempts + 1``: doubling from backoff_s up to backoff_max_s, with full jitter on the upper half."""
    pause = min(settings.backoff_s * 2 ** min(attempts - 1, 40), settings.backoff_max_s)
    return pause * random.uniform(0.5, 1.0)


class Dispatcher:
    """Sends the outbox's due deliveries signed with this process's secret, from ``settings.senders`` threads.

    ``wake()`` (called on every local job change, and by LISTEN on PostgreSQL) starts a look at
    once; otherwise the threads look when the next delivery is due, at least every second."""

    def __init__(self, store, settings: Settings, stop: threading.Event, get_record: Callable[[str], JobRecord] | None = None):
        self.store, self.settings, self._stop = store, settings, stop
        self.get_record = get_record or store.get
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Condition()
        self._pending_wake = False
        self.threads: list[threading.Thread] = []

    @property
    def keys(self) -> list[str]:
        return [self.settings.key] if self.settings.key else []

    def start(self) -> None:
        if not self.keys or self.threads:
            return
        for n in range(self.settings.senders):
            t = threading.Thread(target=self._loop, name=f"reelforge-webhooks-{n}", daemon=True)
            t.start()
            self.threads.append(t)
        t = threading.Thread(target=self.store.listen, args=(self.wake, self._stop, _webhook_channel()), name="reelforge-webhooks-listen", daemon=True)
        t.start()
        self.threads.append(t)

    def pending(self) -> bool:
        """Whether deliveries this process could send are waiting (sent now or after a back-off)."""
        try:
            return self.store.next_delivery_time(self.keys) is not None
        except Exception:
            return False

    def wake(self, *_: Any) -> None:
        with self._wake:
            self._pending_wake = True
            self._wake.notify_all()

    def _sleep(self) -> None:
        try:
            due = self.store.next_delivery_time(self.keys)
        except Exception:
            due = None
        wait = 1.0 if due is None else max(0.0, min(1.0, due - time.time()))
        with self._wake:
            if not self._pending_wake:
                self._wake.wait(wait)
            self._pending_wake = False

    def _loop(self) -> None:
        self.store.relax_commits()
        pause = 0.5
        while not self._stop.is_set():
            try:
                if not self.run_one():
                    self._sleep()
                pause = 0.5
            except Exception:  # the job log may be away: keep the dispatcher alive
                log.warning("webhook dispatcher round failed; trying again in %.1f s", pause, exc_info=True)
                self._stop.wait(pause)
                pause = min(pause * 2, 30.0)

    def run_one(self) -> bool:
        """Send one due delivery; False when none is due."""
        owner = f"{self.id}:{uuid.uuid4().hex[:8]}"
        s = self.settings
        delivery = self.store.claim_delivery(owner, 3 * s.timeout_s + 1, self.keys)  # the lease outlasts one attempt
        if delivery is None:
            return False
        started = time.time()
        code, error, body = None, None, None
        window_start = delivery.get("retried") or delivery["created"]
        try:
            record = self.get_record(delivery["job_id"])
            body = delivery.get("body") or body_for(delivery, record)  # kept with the attempt's outcome, below
            target = check_url(delivery["url"], s.allow_private, "url")  # again, after DNS resolution
            stamp = int(time.time())
            code = post(target, body.encode(), sign(s.secret, delivery["id"], stamp, body), s.timeout_s)
            if not 200 <= code < 300:
                error = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
        except RequestError as exc:
            error = exc.message
        except Exception as exc:  # noqa: BLE001 - a receiver's failure of any kind is recorded, never raised
            error = f"{type(exc).__name__}: {exc}"[:500] if str(exc) else type(exc).__name__
        ms = round((time.time() - started) * 1000)
        history = (delivery["history"] + [{"at": round(started, 3), "code": code, "error": error, "ms": ms}])[-HISTORY:]
        if error is None:
            state, next_at = "delivered", started
            log.info("webhook %s (job %s, %s) delivered to endpoint %s: HTTP %s", delivery["id"], delivery["job_id"], delivery["kind"], delivery["endpoint"], code)
        else:
            next_at = time.time() + backoff(delivery["attempts"], s)
            state = "pending" if next_at - window_start <= s.give_up_s else "failed"
            log.warning("webhook %s (job %s, %s) to endpoint %s: attempt %d failed: %s%s", delivery["id"], delivery["job_id"], delivery["kind"],
                        delivery["endpoint"], delivery["attempts"], error, "; trying again later" if state == "pending" else "; giving up")
        self.store.end_delivery_attempt(delivery["id"], owner, state=state, next_attempt=next_at, code=code, error=error, history=history, body=body)
        return True


def _webhook_channel() -> str:
    from reelforge.jobs.outbox import WEBHOOK_CHANNEL

    return WEBHOOK_CHANNEL

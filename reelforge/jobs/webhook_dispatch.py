"""Sending webhooks: the notification's body (the job as its wire shows it), its signature, and the Dispatcher that works through the outbox."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, cast

from reelforge.errors import RequestError
from reelforge.jobs import layout
from reelforge.jobs.layout import iso
from reelforge.jobs.record import JobRecord, JobStatus
from reelforge.jobs.outbox import WEBHOOK_CHANNEL
from reelforge.jobs.views import openai_video_id, view
from reelforge.jobs.webhook_targets import check_url, post
from reelforge.jobs.webhooks import Settings, event_type
from reelforge.storage import join

log = logging.getLogger("reelforge.webhooks")

MAX_BODY = 256 * 1024  # the largest notification sent; a bigger job view is cut to its links
HISTORY = 30  # attempts remembered per delivery (the count goes on)


def links(record: JobRecord, base: str | None) -> dict[str, str]:
    """Where the files of a completed job are fetched (the wire's own download URL when it has one)."""
    if base:
        if record.wire == "openai":
            video = f"{base}/v1/videos/{openai_video_id(record)}/content"
            return {"video": video, "thumbnail": video + "?variant=thumbnail"}
        if record.wire == "gemini":
            return {"video": f"{base}/v1beta/files/{record.id}:download?alt=media"}
        files = f"{base}/reelforge/jobs/{record.id}/files"
        return {"video": f"{files}/{layout.VIDEO}", "poster": f"{files}/{layout.POSTER}"}
    return {"video": join(record.output_uri, layout.VIDEO), "poster": join(record.output_uri, layout.POSTER)}


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
        doc = {"type": event_type(record.wire, kind), "timestamp": iso(now), "data": data, **extra}
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > MAX_BODY:
        doc["data"] = {k: v for k, v in data.items() if not isinstance(v, (dict, list, str)) or len(json.dumps(v)) < 4096}
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return text


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (signed with the standardwebhooks package)."""
    from standardwebhooks.webhooks import Webhook

    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=timezone.utc), body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


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
        t = threading.Thread(target=self.store.listen, args=(self.wake, self._stop, WEBHOOK_CHANNEL), name="reelforge-webhooks-listen", daemon=True)
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
            code = post(target, body.encode(), sign(cast(str, s.secret), delivery["id"], stamp, body), s.timeout_s)
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

"""Bedrock model lifecycle: documented dates, live reads of ``modelLifecycle``, warnings and refusals.

For a Bedrock id forwarded upstream, the lifecycle is read with the Bedrock control plane's
``GetFoundationModel`` (boto3's ``bedrock`` client; ``modelDetails.modelLifecycle``: status ACTIVE or
LEGACY, ``endOfLifeTime``, ``legacyTime``) and cached for :data:`TTL_S`, in memory and in
``lifecycle.json`` in the data dir (so `reelforge models` shows the last reading). A LEGACY model's
jobs are recorded with a warning (job metadata ``lifecycle``, shown by the CLI and the gallery);
past its end of life a forwarded request is refused before it is recorded, naming the local model
that can take it. Where no reading can be had (no credentials; an upstream that is another
reelforge, which has no control plane), the last reading is used, then for Amazon's endpoint the
documented dates below; otherwise nothing is checked. A failed read is not tried again for TTL_S.

Nova Reel v1:0 and v1:1: Legacy since 2026-03-30, end of life 2026-09-30. Sources: the Bedrock model
card (docs.aws.amazon.com/bedrock/latest/userguide/model-card-amazon-nova-reel.md, "Model EOL date:
September 30, 2026") and the model lifecycle page (docs.aws.amazon.com/bedrock/latest/userguide/model-lifecycle.html,
via api-evangelist/amazon-nova for the legacy date); checked 2026-11-24.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

from reelforge import config
from reelforge.errors import RequestError
from reelforge.media.video import atomic_write_bytes

log = logging.getLogger("reelforge.lifecycle")

TTL_S = 6 * 3600
NOVA_SOURCE = ("AWS Bedrock model card for Nova Reel (docs.aws.amazon.com/bedrock/latest/userguide/model-card-amazon-nova-reel.md) "
               "and model-lifecycle.html, checked 2026-11-24")


@dataclass(frozen=True)
class Lifecycle:
    model_id: str
    status: str  # ACTIVE | LEGACY, as Bedrock says it
    end_of_life: str | None = None  # YYYY-MM-DD
    legacy_since: str | None = None
    source: str = ""
    read_at: float | None = None  # when it was read live; None for documented dates

    def state(self, today: date | None = None) -> str:
        """active, legacy or end_of_life (on and after the end-of-life date)."""
        today = today or datetime.now(timezone.utc).date()
        if self.end_of_life and today >= date.fromisoformat(self.end_of_life):
            return "end_of_life"
        return "legacy" if self.status == "LEGACY" else "active"

    def describe(self, today: date | None = None) -> str:
        state = self.state(today)
        if state == "end_of_life":
            return f"end of life since {self.end_of_life} ({self.source})"
        if state == "legacy":
            until = f", end of life {self.end_of_life}" if self.end_of_life else ""
            return f"LEGACY on Bedrock{until} ({self.source})"
        return f"ACTIVE on Bedrock ({self.source})"


DOCUMENTED = {
    mid: Lifecycle(mid, "LEGACY", "2026-09-30", "2026-03-30", NOVA_SOURCE)
    for mid in ("amazon.nova-reel-v1:0", "amazon.nova-reel-v1:1")
}


def _day(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).date().isoformat()
    return str(value)[:10]


def from_details(model_id: str, lifecycle: dict[str, Any], where: str) -> Lifecycle:
    """A Lifecycle from GetFoundationModel's ``modelLifecycle``."""
    return Lifecycle(
        model_id,
        str(lifecycle.get("status", "ACTIVE")),
        _day(lifecycle.get("endOfLifeTime")),
        _day(lifecycle.get("legacyTime")),
        f"GetFoundationModel at {where}, read {time.strftime('%Y-%m-%d', time.gmtime())}",
        time.time(),
    )


ClientFactory = Callable[[Any], Any]  # Forward -> a boto3 "bedrock" client


def default_client(forward) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=forward.region or config.region())
    if forward.url != "aws" and session.get_credentials() is None:  # another reelforge checks no signature unless it has keys
        session = boto3.session.Session(aws_access_key_id="reelforge", aws_secret_access_key="reelforge", region_name=session.region_name)
    return session.client("bedrock", endpoint_url=None if forward.url == "aws" else forward.url,
                          config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10))


class LifecycleReader:
    """Reads and caches lifecycles of forwarded Bedrock ids (one per process)."""

    def __init__(self, client_factory: ClientFactory = default_client, cache_path: Path | None = None, ttl_s: float = TTL_S):
        self.client_factory = client_factory
        self.cache_path = cache_path if cache_path is not None else config.data_dir() / "lifecycle.json"
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._mem: dict[str, Lifecycle] = {}
        self._missed: dict[str, float] = {}  # key -> when a live read last failed (not tried again for ttl_s)

    @staticmethod
    def _key(forward) -> str:
        return f"{forward.url}|{forward.region or config.region()}|{forward.model_id}"

    def cached(self, forward) -> Lifecycle | None:
        key = self._key(forward)
        with self._lock:
            hit = self._mem.get(key)
            if hit is None:
                try:
                    doc = json.loads(self.cache_path.read_text())
                    hit = Lifecycle(**doc[key]) if key in doc else None
                except (OSError, ValueError, TypeError):
                    hit = None
                if hit is not None:
                    self._mem[key] = hit
        return hit

    def read(self, forward) -> Lifecycle | None:
        """The lifecycle of a forwarded Bedrock id: cached, read live, or documented; None when unknown."""
        hit = self.cached(forward)
        documented = DOCUMENTED.get(forward.model_id) if forward.url == "aws" else None  # AWS's dates are AWS's only
        if hit is not None and hit.read_at is not None and time.time() - hit.read_at < self.ttl_s:
            return hit
        key = self._key(forward)
        if time.time() - self._missed.get(key, float("-inf")) < self.ttl_s:
            return hit or documented
        try:
            reply = self.client_factory(forward).get_foundation_model(modelIdentifier=forward.model_id)
            where = "Amazon Bedrock" if forward.url == "aws" else forward.url
            found = from_details(forward.model_id, reply["modelDetails"].get("modelLifecycle") or {}, where)
        except Exception as exc:  # noqa: BLE001 - no credentials, unreachable, an upstream without a control plane
            log.info("lifecycle of %s at %s not read live (%s); using %s", forward.model_id, forward.url, type(exc).__name__,
                     "the last reading" if hit else "documented dates" if documented else "nothing")
            self._missed[key] = time.time()
            return hit or documented
        self._store(key, found)
        return found

    def _store(self, key: str, found: Lifecycle) -> None:
        with self._lock:
            self._mem[key] = found
            try:
                doc = json.loads(self.cache_path.read_text()) if self.cache_path.exists() else {}
            except (OSError, ValueError):
                doc = {}
            doc[key] = asdict(found)
            try:
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(self.cache_path, json.dumps(doc, indent=1, sort_keys=True).encode())
            except OSError as exc:
                log.warning("cannot write %s: %s", self.cache_path, exc)


def check(forward, reader: LifecycleReader, local_model: str, today: date | None = None) -> dict[str, Any] | None:
    """Refuse a forwarded request past its model's end of life; the job's ``lifecycle`` metadata otherwise (None when active or unknown)."""
    found = reader.read(forward)
    if found is None:
        return None
    state = found.state(today)
    if state == "end_of_life":
        raise RequestError(
            "modelId",
            f"{forward.model_id} reached end of life on Bedrock on {found.end_of_life} ({found.source}), so it is not forwarded; "
            f"the local model {local_model} can take this request: send it to modelId {local_model}, or remove the "
            f"--forward entry for {forward.model_id} to have {local_model} serve the id here",
        )
    if state == "legacy":
        return {"status": found.status, "endOfLife": found.end_of_life, "source": found.source,
                "warning": f"{forward.model_id} is {found.describe(today)}; move to another model before then"}
    return None

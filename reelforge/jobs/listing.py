"""One page of the job log: the filters every listing takes, the total, and an opaque token to the next page.

The embedded client and the server's ``/reelforge/jobs`` route both list through ``list_page``, so
a token printed by one works with the other's filters and ``--after`` the same way. A token is a
keyset cursor (the last job shown) tied to the filters it was made with, plus how many jobs came
before it, so jobs added meanwhile never shift a later page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from reelforge.errors import RequestError
from reelforge.jobs.record import JobRecord, JobStatus, JobStore

TOTAL_CAP = 10_000  # counting stops here: "10000+ jobs" costs the same at any size of log
MAX_LIMIT = 1000


@dataclass
class Page:
    records: list[JobRecord]
    total: int | None  # jobs matching the filters; None where the backend cannot count (Amazon Bedrock)
    total_is_lower_bound: bool = False  # True: more than ``total`` match
    offset: int = 0  # jobs before this page
    next_token: str | None = None  # None: this is the last page
    prompts: dict[str, list[str]] = field(default_factory=dict)  # by job id, where records carry no request


def list_page(
    store: JobStore,
    *,
    statuses: list[JobStatus] | None = None,
    model_id: str | None = None,
    search: str | None = None,
    limit: int = 50,
    after: str | None = None,
) -> Page:
    """The page of jobs, newest first, that follows the token ``after`` (None: the first page)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise RequestError("limit", f"{limit} is out of range; allowed: 1 to {MAX_LIMIT}")
    filters: dict[str, Any] = dict(statuses=statuses or None, model_id=model_id or None, search=search or None)
    digest = _digest(filters)
    offset, cursor = decode_token(after, digest) if after else (0, None)
    rows = store.list(**filters, limit=limit + 1, after=cursor)
    page = rows[:limit]
    token = encode_token(offset + len(page), page[-1], digest) if len(rows) > limit else None
    counted = store.count(**filters, cap=TOTAL_CAP)
    return Page(page, min(counted, TOTAL_CAP), counted > TOTAL_CAP, offset, token)


def _digest(filters: dict) -> str:
    plain = {k: [s.value for s in v] if k == "statuses" and v else v for k, v in filters.items()}
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:12]


def encode_token(shown: int, last: JobRecord, digest: str) -> str:
    raw = json.dumps({"n": shown, "t": repr(last.submit_time), "id": last.id, "q": digest}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, digest: str) -> tuple[int, tuple[float, str]]:
    try:
        d = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        shown, cursor, made_for = int(d["n"]), (float(d["t"]), str(d["id"])), str(d["q"])
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise RequestError("after", f"{token[:40]!r} is not a page token; pass the nextToken of an earlier listing unchanged") from None
    if made_for != digest:
        raise RequestError("after", "the token belongs to a listing with other filters; list with the same status, model and q")
    return shown, cursor


def statuses(value: str | JobStatus | None) -> list[JobStatus] | None:
    """The status filter of a listing from its text (any case); RequestError naming ``status`` otherwise."""
    if value is None:
        return None
    try:
        return [JobStatus(str(value).upper())]
    except ValueError:
        allowed = ", ".join(s.value for s in JobStatus)
        raise RequestError("status", f"{value!r} is not a status; allowed: {allowed}") from None

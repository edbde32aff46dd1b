"""Bedrock Runtime's async-invoke operations: StartAsyncInvoke, GetAsyncInvoke, ListAsyncInvokes.

Routes, shapes and status codes as botocore 1.44.8 expects them (reference §1-2). The ARN
arrives percent-encoded in one path segment; uvicorn decodes it, so the route uses ``{arn:path}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reelforge.errors import JobExpiredError, JobNotFoundError
from reelforge.jobs.record import JobRecord, JobStatus
from reelforge.server import wire
from reelforge.server.errors import validation

DEFAULT_PAGE = 100


def _state(request: Request):
    return request.app.state.reelforge


async def start_async_invoke(request: Request) -> JSONResponse:
    parts = wire.parse_start(wire.parse_body(await request.body()))
    state = _state(request)
    record, _ = await run_in_threadpool(
        state.runtime.submit,
        parts["model_id"],
        parts["model_input"],
        parts["s3_uri"],
        client_token=parts["client_token"],
        tags=parts["tags"],
        output_config=parts["output_config"],
        region=request.scope.get("reelforge.region") or state.settings.region,
    )
    return JSONResponse({"invocationArn": record.arn})


def _summary(record: JobRecord) -> tuple[str, bytes]:
    """(ARN, the GetAsyncInvoke reply's JSON) of a job, made once per change of the job log (JobStore.view)."""
    return record.arn, bytes(JSONResponse(wire.summary(record)).body)


async def get_async_invoke(request: Request) -> Response:
    arn = request.path_params["arn"]
    _, job_id = wire.parse_invocation_arn(arn)
    try:
        record_arn, body = await _state(request).view(job_id, _summary)
    except JobExpiredError as exc:
        if exc.job.arn != arn:
            raise JobNotFoundError(arn) from None
        raise JobExpiredError(arn, exc.job) from None
    except JobNotFoundError:
        raise JobNotFoundError(arn) from None
    if record_arn != arn:  # same id, other region or account: not this invocation
        raise JobNotFoundError(arn)
    return Response(body, media_type="application/json")


async def list_async_invokes(request: Request) -> JSONResponse:
    q = request.query_params
    known = {"submitTimeAfter", "submitTimeBefore", "statusEquals", "maxResults", "nextToken", "sortBy", "sortOrder"}
    unknown = sorted(set(q) - known)
    if unknown:
        raise validation(f"Unknown query parameter '{unknown[0]}'; allowed: {', '.join(sorted(known))}")
    filters: dict[str, Any] = {}
    statuses = None
    if "statusEquals" in q:
        word = q["statusEquals"]
        if word not in wire.BEDROCK_STATUSES:
            wire.fail(word, "statusEquals", f"Member must satisfy enum value set: [{', '.join(wire.BEDROCK_STATUSES)}]")
        statuses = JobStatus.from_bedrock(word)
        filters["status"] = word
    after = wire.parse_time(q["submitTimeAfter"], "submitTimeAfter") if "submitTimeAfter" in q else None
    before = wire.parse_time(q["submitTimeBefore"], "submitTimeBefore") if "submitTimeBefore" in q else None
    filters.update(after=after, before=before)
    sort_by = q.get("sortBy", "SubmissionTime")
    if sort_by != "SubmissionTime":
        wire.fail(sort_by, "sortBy", "Member must satisfy enum value set: [SubmissionTime]")
    order = q.get("sortOrder", "Descending")
    if order not in wire.SORT_ORDERS:
        wire.fail(order, "sortOrder", f"Member must satisfy enum value set: [{', '.join(wire.SORT_ORDERS)}]")
    filters["order"] = order
    limit = DEFAULT_PAGE
    if "maxResults" in q:
        if not wire.INTEGER.fullmatch(q["maxResults"]):
            wire.fail(q["maxResults"], "maxResults", "Member must be an integer")
        limit = int(q["maxResults"])
        if not 1 <= limit <= 1000:
            wire.fail(limit, "maxResults", "Member must have value between 1 and 1000")
    digest = _filters_digest(filters)
    cursor = decode_token(q["nextToken"], digest) if "nextToken" in q else None
    rows = await run_in_threadpool(
        _state(request).runtime.store.list,
        statuses=statuses,
        submitted_after=after,
        submitted_before=before,
        descending=order == "Descending",
        limit=limit + 1,
        after=cursor,
    )
    page = rows[:limit]
    out: dict[str, Any] = {"asyncInvokeSummaries": [wire.summary(r) for r in page]}
    if len(rows) > limit:
        last = page[-1]
        out["nextToken"] = encode_token((last.submit_time, last.id), digest)
    return JSONResponse(out)


# --- nextToken: a keyset cursor tied to the query's filters ------------------------------------
# A cursor names the last row already returned, so every page's token differs (botocore's
# paginator stops with an error on a repeated token) and rows added meanwhile never shift pages.


def _filters_digest(filters: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]


def encode_token(cursor: tuple[float, str], digest: str) -> str:
    raw = json.dumps({"v": 1, "t": repr(cursor[0]), "id": cursor[1], "q": digest}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, digest: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        d = json.loads(raw)
        cursor = (float(d["t"]), str(d["id"]))
        ok = d.get("v") == 1 and isinstance(d.get("q"), str)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise validation("The nextToken is not valid; pass the nextToken of a previous ListAsyncInvokes reply unchanged.")
    if d["q"] != digest:
        raise validation("The nextToken belongs to a list call with other filters; repeat the call with the same filters.")
    return cursor


routes = [
    Route("/async-invoke", start_async_invoke, methods=["POST"]),
    Route("/async-invoke", list_async_invokes, methods=["GET"]),
    Route("/async-invoke/{arn:path}", get_async_invoke, methods=["GET"]),
]

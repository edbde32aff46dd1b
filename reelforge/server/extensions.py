"""reelforge's own routes, all under ``/reelforge/`` (never on Bedrock's paths).

GET  /reelforge/health                     liveness, configuration summary, default output (no auth needed)
GET  /reelforge/jobs?status=&model=&q=&limit=&after=
                                           a page of jobs, newest first: total, prompts, nextToken
GET  /reelforge/jobs/{id}                  one job: progress, stage, CANCELED, request, metadata
POST /reelforge/jobs/{id}/cancel           cancel a queued or running job (same-origin rule: app.py)
GET  /reelforge/jobs/{id}/events           server-sent events: the job on each change, until it ends
GET  /reelforge/jobs/{id}/files/{name}     an output file of a job stored on this machine (HTTP Range)
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from reelforge import __version__
from reelforge.errors import JobNotFoundError
from reelforge.server.gallery import views
from reelforge.jobs.record import JobRecord
from reelforge.jobs.listing import list_page, statuses
from reelforge.storage import LocalStorage, S3Storage, join, local_path
from reelforge.jobs.record import JOB_ID
from reelforge.jobs import webhooks
from reelforge.server import sigv4, video_wires, wire
from reelforge.server.errors import ApiError, validation
from reelforge.server.events import PING, sse_event, sse_response

PING_S = 15.0
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def _state(request: Request):
    return request.app.state.reelforge


def detail(record: JobRecord, full: bool = True) -> dict[str, Any]:
    """A job as the extension routes show it; ``full`` adds the request and engine metadata."""
    d: dict[str, Any] = {
        "id": record.id,
        "invocationArn": record.arn,
        "modelId": record.model_id,
        "status": record.status.value,
        "bedrockStatus": record.status.bedrock,
        "progress": round(record.progress, 4),
        "stage": record.stage,
        "submitTime": wire.iso(record.submit_time),
        "startTime": wire.iso(record.start_time),
        "endTime": wire.iso(record.end_time),
        "lastModifiedTime": wire.iso(record.last_modified),
        "failureMessage": record.failure_message,
        "attempts": record.attempts,
        "clientRequestToken": record.client_token,
        "s3Uri": record.output_uri,
        "outputConfig": record.output_config,
        "tags": record.tags,
        "wire": record.wire,
        "deletedTime": wire.iso(record.deleted_time),
    }
    if full:
        d["wireRequest"] = record.wire_request
        d["modelInput"] = record.model_input
        d["metadata"] = record.metadata
        d["files"] = _files(record)
    return d


def _files(record: JobRecord) -> list[str]:
    if not record.storage_uri.startswith("file://"):
        return []
    return LocalStorage().list(record.storage_uri)


async def _job(request: Request) -> JobRecord:
    job_id = request.path_params["job_id"]
    if not JOB_ID.fullmatch(job_id):
        raise JobNotFoundError(job_id)
    return await _state(request).job(job_id)


async def health(request: Request) -> JSONResponse:
    state = _state(request)
    return JSONResponse(
        {
            "status": "ok",
            "service": "reelforge",
            "version": __version__,
            "workers": state.settings.workers,
            "bucketDir": state.settings.bucket_dir is not None,
            "auth": bool(state.settings.auth_keys),
            "defaultOutput": state.settings.advertised_output,  # s3://bucket/prefix, or null: clients must pass one
            # model ids and engine kinds; upstream URLs only to a caller that proved a key of --auth-keys
            "forwards": state.runtime.forwards.describe(with_urls=_authenticated(request, state)),
        }
    )


def _authenticated(request: Request, state) -> bool:
    """Whether a request to an open route carries a valid key (an API key as a bearer token, or a SigV4 signature)."""
    keys = state.settings.auth_keys
    if not keys:
        return False  # nothing is checked on this server, so no caller is known
    auth = request.headers.get("authorization", "")
    try:
        if auth.startswith("AWS4-HMAC-SHA256"):
            sigv4.verify(cast(dict, request.scope), b"", keys)
        else:
            video_wires.check_key(cast(dict, request.scope), "openai", keys)
    except ApiError:
        return False
    return True


LIST_PARAMS = ("status", "model", "q", "limit", "after")


async def list_jobs(request: Request) -> JSONResponse:
    """A page of jobs, newest first, with the prompt texts (not the images), the total and the next page's token."""
    q = request.query_params
    unknown = sorted(set(q) - set(LIST_PARAMS))
    if unknown:
        raise validation(f"{unknown[0]}: unknown query parameter; allowed: {', '.join(LIST_PARAMS)}")
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        raise validation(f"limit: {q['limit']!r} is not a whole number") from None
    wanted = statuses(q.get("status") or None)
    page = await run_in_threadpool(
        list_page, _state(request).runtime.store, statuses=wanted, model_id=q.get("model") or None,
        search=q.get("q") or None, limit=limit, after=q.get("after") or None,
    )
    jobs = [{**detail(r, full=False), "prompts": views.prompts(r.model_input)} for r in page.records]
    return JSONResponse({"jobs": jobs, "total": page.total, "totalIsLowerBound": page.total_is_lower_bound,
                         "offset": page.offset, "nextToken": page.next_token})


async def get_job(request: Request) -> JSONResponse:
    record = await _job(request)
    store = _state(request).runtime.store

    def read() -> dict[str, Any]:
        return {**detail(record), "webhooks": [webhooks.shown(d) for d in store.deliveries(record.id)]}

    return JSONResponse(await run_in_threadpool(read))


async def cancel_job(request: Request) -> JSONResponse:
    record = await _job(request)
    record = await run_in_threadpool(_state(request).runtime.cancel, record.id)
    return JSONResponse(detail(record, full=False))


async def job_events(request: Request) -> StreamingResponse:
    record = await _job(request)
    state = _state(request)

    async def stream():
        hub = state.hub
        wake = hub.subscribe()
        last = None
        try:
            current = record
            while True:
                key = (current.status, current.progress, current.stage, current.failure_message)
                if key != last:
                    yield sse_event("job", detail(current, full=False))
                    last = key
                if current.status.done or hub.stopping:
                    return
                try:
                    await asyncio.wait_for(wake.wait(), PING_S)
                except asyncio.TimeoutError:
                    yield PING
                wake.clear()
                current = await state.job(record.id)
        finally:
            hub.unsubscribe(wake)

    return sse_response(stream())


async def job_file(request: Request) -> Response:
    record = await _job(request)
    name = request.path_params["name"]
    if not _FILE_NAME.fullmatch(name):
        raise ApiError(404, "ResourceNotFoundException", f"Job {record.id} has no file {name!r}.")
    if record.storage_uri.startswith("s3://"):
        # The browser (or client) fetches it from S3 itself, Range requests included.
        url = await run_in_threadpool(S3Storage().presigned_url, join(record.storage_uri, name), 3600)
        return RedirectResponse(url, status_code=307)
    if not record.storage_uri.startswith("file://"):
        raise ApiError(404, "ResourceNotFoundException", f"Job {record.id} has no file {name!r} on this server.")
    path = local_path(record.storage_uri) / name
    if not path.is_file():
        raise ApiError(404, "ResourceNotFoundException", f"Job {record.id} has no file {name!r} (yet).")
    return FileResponse(path)


routes = [
    Route("/reelforge/health", health, methods=["GET"]),
    Route("/reelforge/jobs", list_jobs, methods=["GET"]),
    Route("/reelforge/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/reelforge/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    Route("/reelforge/jobs/{job_id}/events", job_events, methods=["GET"]),
    Route("/reelforge/jobs/{job_id}/files/{name}", job_file, methods=["GET"]),
]

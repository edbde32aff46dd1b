"""OpenAI's Videos API under ``/v1/videos``, as the ``openai`` package (3.x) sends and parses it.

Every job of the job log is a video here (``video_<job id>``), whatever wire started it. The
client sends creates, edits and extensions as multipart forms (JSON is accepted too) and remixes
as JSON; it reads the poll interval from ``openai-poll-after-ms`` and retries a create after a
5xx or a dropped connection without a key of its own, so a recorded create never answers 5xx
and an ``Idempotency-Key`` header makes it idempotent. Facts: reference §1; choices: docs/wires.md.
"""

from __future__ import annotations

import asyncio
import functools
import re
from typing import Any, Callable, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from reelforge.workflows import continuation
from reelforge.errors import JobExpiredError, JobNotFoundError, RequestError, StorageError
from reelforge.jobs import layout
from reelforge.jobs.record import JobRecord, JobStatus, PrunedJob
from reelforge.request.limits import MULTI_SHOT_MANUAL
from reelforge.engines.catalog import get_model
from reelforge.request.model import VideoRequest, parse_dimension
from reelforge.jobs.views import OPENAI_ID_PREFIX as ID_PREFIX, openai_video as video, openai_video_id as video_id
from reelforge.storage import local_path
from reelforge.jobs.record import JOB_ID
from reelforge.server import video_wires, wire
from reelforge.server.errors import OPENAI, ApiError
from reelforge.server.openai_forms import bad_request, read_fields, reference_image, seconds_field, text_field

_VIDEO_ID = re.compile(f"{ID_PREFIX}({JOB_ID.pattern})")
DEFAULT_MODEL, DEFAULT_SECONDS, DEFAULT_SIZE = "sora-2", "4", "720x1280"  # the client's documented defaults
POLL_AFTER_MS = 100  # openai-poll-after-ms on replies about a job that has not ended
HOLD_S = 10.0  # a poll from the client's poll helper waits this long for its job to end
VARIANTS = {"video": (layout.VIDEO, "video/mp4"), "thumbnail": (layout.POSTER, "image/jpeg"), "spritesheet": (layout.CONTACT_SHEET, "image/png")}
CREATE_FIELDS = {
    "textToVideoParams.text": "prompt",
    "textToVideoParams.images": "input_reference",
    "videoGenerationConfig.dimension": "size",
    "videoGenerationConfig.durationSeconds": "seconds",
    "multiShotAutomatedParams.text": "prompt",
}


def _state(request: Request):
    return request.app.state.reelforge


def _bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, "ValidationException", message, param=param, detail=code)


def _reply(request: Request, record: JobRecord) -> JSONResponse:
    if isinstance(record, PrunedJob):  # a repeated Idempotency-Key whose video retention removed: no new video
        gone = JobExpiredError(record.id, record)
        raise ApiError(409, "ConflictException", f"Idempotency-Key was used for video {video_id(record)}, which has expired: {gone.expiry}; "
                       "send a new key for a new video.", param="Idempotency-Key", detail="video_expired")
    return JSONResponse(video(record, _state(request).runtime.retain_s), headers=_poll_after(record.status.done))


def _poll_after(done: bool) -> dict[str, str] | None:
    """The header that paces the client's polling, on replies about a job that has not ended."""
    return None if done else {"openai-poll-after-ms": str(POLL_AFTER_MS)}


def _expired(vid: str, exc: JobExpiredError) -> ApiError:
    return ApiError(404, "ResourceNotFoundException", f"Video {vid[:100]!r} has expired: {exc.expiry}.", param="video_id", detail="video_expired")


async def _record(request: Request, vid: str | None = None, make: Callable[[JobRecord], Any] | None = None) -> Any:
    """The job a video id names (or ``make`` of it, kept until the job log changes: JobStore.view); 404 for ids of no job, and for deleted videos."""
    vid = vid if vid is not None else request.path_params["video_id"]
    m = _VIDEO_ID.fullmatch(vid)
    try:
        if m is None:
            raise JobNotFoundError(vid)
        state = _state(request)
        return await state.view(m.group(1), make) if make is not None else _shown(await state.job(m.group(1)))
    except JobExpiredError as exc:
        raise _expired(vid, exc) from None
    except JobNotFoundError:
        raise ApiError(404, "ResourceNotFoundException", f"No video found with id {vid[:100]!r}.", param="video_id", detail="not_found") from None


def _shown(record: JobRecord) -> JobRecord:
    """``record``, unless it is not a video here: deleted, or one shot of a job (404)."""
    if record.deleted_time is not None or record.parent_id is not None:
        raise ApiError(404, "ResourceNotFoundException", f"No video found with id {video_id(record)!r}; it was deleted.", param="video_id", detail="not_found")
    return record


@functools.cache
def _video_reply(retain_s: float | None) -> Callable[[JobRecord], tuple[bool, bytes]]:
    """(ended, the Video's JSON) of a job: what a retrieve sends, made once per change of the job log."""

    def make(record: JobRecord) -> tuple[bool, bytes]:
        return record.status.done, bytes(JSONResponse(video(_shown(record), retain_s)).body)

    return make


# --- routes -----------------------------------------------------------------------------------


async def create(request: Request) -> JSONResponse:
    allowed = {"prompt", "model", "seconds", "size", "input_reference", "input_reference[image_url]", "input_reference[file_id]"}
    fields = await read_fields(request, allowed)
    state = _state(request)
    prompt = text_field(fields, "prompt")
    if prompt is None:
        raise RequestError("prompt", "is required")
    name = text_field(fields, "model", DEFAULT_MODEL)
    model_id = state.wire_models.resolve(name, "model")
    spec = get_model(model_id)
    seconds = seconds_field(cast(str, text_field(fields, "seconds", DEFAULT_SECONDS)))
    size = text_field(fields, "size", DEFAULT_SIZE)
    width, height = parse_dimension(size, "size")
    image, kept = reference_image(fields)
    req = VideoRequest(text=prompt, image=image, duration_s=seconds, fps=video_wires.default_fps(spec), width=width, height=height)
    wire_request: dict[str, Any] = {"operation": "create", "model": name, "prompt": prompt, "seconds": str(seconds), "size": size}
    if kept:
        wire_request["input_reference"] = kept
    record, _ = await video_wires.submit(
        state, model_id, req, wire=OPENAI, wire_request=wire_request, fields=CREATE_FIELDS, client_token=_token(request),
    )
    return _reply(request, record)


def _token(request: Request) -> str | None:
    """The job log's client token for an ``Idempotency-Key`` header (namespaced: other wires' tokens never collide)."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or not wire.TOKEN.fullmatch(key):
        raise bad_request("Idempotency-Key: must be 1 to 200 printable ASCII characters without spaces", param="Idempotency-Key")
    return "openai:" + key


async def retrieve(request: Request) -> Response:
    done, body = await _record(request, make=_video_reply(_state(request).runtime.retain_s))
    if not done and request.headers.get("x-stainless-poll-helper") == "true" and "x-stainless-custom-poll-interval" not in request.headers:
        return _reply(request, await _until_done(request, request.path_params["video_id"][len(ID_PREFIX):]))
    return Response(body, media_type="application/json", headers=_poll_after(done))


async def _until_done(request: Request, job_id: str) -> JobRecord:
    """The job once it ended, or after HOLD_S: the client's poll helper then finishes as soon as the job does."""
    state = _state(request)
    hub = state.hub
    wake = hub.subscribe()
    deadline = asyncio.get_running_loop().time() + HOLD_S
    try:
        record = await state.job(job_id)  # after subscribing: no change is missed
        while not record.status.done and not hub.stopping:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(wake.wait(), left)
            except asyncio.TimeoutError:
                break
            wake.clear()
            record = await state.job(record.id)
    finally:
        hub.unsubscribe(wake)
    return record


LIST_PARAMS = ("after", "limit", "order")


async def list_videos(request: Request) -> JSONResponse:
    q = request.query_params
    unknown = sorted(set(q) - set(LIST_PARAMS))
    if unknown:
        raise bad_request(f"{unknown[0][:100]}: unknown query parameter; allowed: {', '.join(LIST_PARAMS)}", param=unknown[0][:100])
    limit_text = q.get("limit", "20")
    if not re.fullmatch(r"[0-9]{1,4}", limit_text) or not 1 <= int(limit_text) <= 100:
        raise bad_request(f"limit: {limit_text[:20]!r} is not allowed; allowed: 1 to 100", param="limit")
    limit = int(limit_text)
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request(f"order: {order[:20]!r} is not allowed; allowed: asc, desc", param="order")
    cursor = None
    if "after" in q:
        try:
            anchor = await _record(request, q["after"])
        except ApiError as exc:
            if exc.status != 404 or _VIDEO_ID.fullmatch(q["after"]) is None:
                raise bad_request(f"after: {q['after'][:100]!r} is not the id of a video; pass the last_id of the page before", param="after") from None
            try:
                anchor = await _state(request).job(q["after"][len(ID_PREFIX):])  # a deleted anchor still marks its place
            except JobExpiredError as exc:
                anchor = exc.job  # so does a pruned one (its tombstone keeps the submit time)
        cursor = (anchor.submit_time, anchor.id)
    rows = await run_in_threadpool(_page, _state(request).runtime.store, order == "desc", limit + 1, cursor)
    page = rows[:limit]
    data = [video(r, _state(request).runtime.retain_s) for r in page]
    return JSONResponse({
        "object": "list", "data": data, "has_more": len(rows) > limit,
        "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None,
    })


def _page(store, descending: bool, want: int, cursor) -> list[JobRecord]:
    """Up to ``want`` jobs after ``cursor`` that were not deleted (deleted ones are skipped, not counted)."""
    out: list[JobRecord] = []
    while len(out) < want:
        rows = store.list(descending=descending, limit=want, after=cursor)
        out += [r for r in rows if r.deleted_time is None]
        if len(rows) < want:
            break
        cursor = (rows[-1].submit_time, rows[-1].id)
    return out[:want]


async def delete(request: Request) -> JSONResponse:
    record = await _record(request)
    state = _state(request)
    wait_s = state.runtime.timings.lease_s + 2 * state.runtime.timings.recover_s
    deleted = await run_in_threadpool(state.runtime.delete, record.id, wait_s)
    if deleted is None:
        raise ApiError(409, "ConflictException", f"Video {video_id(record)} is being canceled and its worker has not stopped yet; send the delete again shortly.", detail="still_running")
    return JSONResponse({"id": video_id(record), "object": "video.deleted", "deleted": True})


async def content(request: Request) -> Response:
    record = await _record(request)
    q = request.query_params
    unknown = sorted(set(q) - {"variant"})
    if unknown:
        raise bad_request(f"{unknown[0][:100]}: unknown query parameter; allowed: variant", param=unknown[0][:100])
    variant = q.get("variant", "video")
    if variant not in VARIANTS:
        raise bad_request(f"variant: {variant[:40]!r} is not allowed; allowed: {', '.join(VARIANTS)}", param="variant")
    if record.status is not JobStatus.COMPLETED:
        raise bad_request(f"Video {video_id(record)} is {video(record)['status']}; its content can be downloaded once it is completed.", param="video_id", code="video_not_ready")
    name, media_type = VARIANTS[variant]
    if record.storage_uri.startswith("file://"):
        path = local_path(record.storage_uri) / name
        if not path.is_file():
            raise ApiError(404, "ResourceNotFoundException", f"Video {video_id(record)} has no {variant} on this server.", param="variant", detail="not_found")
        return FileResponse(path, media_type=media_type)
    try:
        data = await run_in_threadpool(video_wires.output_bytes, record, name)
    except StorageError:
        raise ApiError(404, "ResourceNotFoundException", f"Video {video_id(record)} has no {variant} in its storage.", param="variant", detail="not_found") from None
    return Response(data, media_type=media_type)


async def remix(request: Request) -> JSONResponse:
    source = await _record(request)
    doc = wire.parse_body(await request.body())
    if not isinstance(doc, dict) or not isinstance(doc.get("prompt"), str):
        raise RequestError("prompt", "is required: send {\"prompt\": \"...\"} as JSON")
    extra = sorted(set(doc) - {"prompt"})
    if extra:
        raise bad_request(f"{extra[0][:100]}: unknown field; allowed: prompt", param=extra[0][:100])
    if source.wire_request.get("extends"):
        raise bad_request(f"Video {video_id(source)} is an extension; remix the video it extends, then extend the remix.", param="video_id", code="unsupported_operation")
    req = VideoRequest.from_model_input(source.model_input)
    if req.task_type == MULTI_SHOT_MANUAL:
        raise bad_request(f"Video {video_id(source)} was made from several shots, each with its own prompt; one new prompt cannot replace them. Start a new video instead.", param="video_id", code="unsupported_operation")
    req = req.model_copy(update={"text": doc["prompt"]})
    width, height, seconds = video_wires.shape(source)
    wire_request = {
        "operation": "remix", "model": source.wire_request.get("model") or source.model_id, "prompt": doc["prompt"],
        "seconds": seconds, "size": f"{width}x{height}", "remixed_from_video_id": video_id(source),
    }
    record, _ = await video_wires.submit(_state(request), source.model_id, req, wire=OPENAI, wire_request=wire_request,
                                         fields=CREATE_FIELDS, client_token=_token(request), tags=source.tags)
    return _reply(request, record)


async def extend_video(request: Request) -> JSONResponse:
    fields = await read_fields(request, {"prompt", "seconds", "video", "video[id]"})
    state = _state(request)
    prompt = text_field(fields, "prompt")
    if prompt is None:
        raise RequestError("prompt", "is required")
    seconds = seconds_field(cast(str, text_field(fields, "seconds", DEFAULT_SECONDS)))
    source, upload = None, None
    if "video[id]" in fields:
        source = await _record(request, fields["video[id]"])
    elif isinstance(fields.get("video"), tuple):
        upload = fields["video"][1]
    else:
        raise RequestError("video", "is required: the video to extend, as a file (video=open('clip.mp4', 'rb')) or its id in video[id]")
    model_id = source.model_id if source is not None else state.wire_models.resolve(DEFAULT_MODEL, "video")
    plan = await run_in_threadpool(continuation.plan, source, upload, prompt, seconds, "video")
    wire_request = {
        "operation": "extend", "model": (source.wire_request.get("model") if source else None) or DEFAULT_MODEL,
        "prompt": prompt, "seconds": plan.total_seconds, "added_seconds": str(seconds), "size": f"{plan.width}x{plan.height}",
        "extends": {"video_id": video_id(source)} if source is not None else {"video": video_wires.describe_bytes(cast(bytes, upload), "video/mp4")},
    }
    try:
        record, _ = await video_wires.submit(state, model_id, plan.request, wire=OPENAI, wire_request=wire_request,
                                             fields={**CREATE_FIELDS, "videoGenerationConfig": "video"}, client_token=_token(request), prepare=plan.place)
    finally:
        plan.cleanup()
    return _reply(request, record)


async def edit(request: Request) -> JSONResponse:
    # No engine here conditions on a video (engines/): refuse before reading what was sent.
    raise bad_request(
        "Video edits need a model that conditions on a source video; none of this server's models does. "
        "Use remix (a new prompt on the same recipe) or extend (continue from the last frame) instead.",
        param="video", code="unsupported_operation",
    )


async def create_character(request: Request) -> JSONResponse:
    raise bad_request("Characters are not supported by this server: no model here conditions on a character's video.", param="video", code="unsupported_operation")


async def get_character(request: Request) -> JSONResponse:
    raise ApiError(404, "ResourceNotFoundException", f"No character found with id {request.path_params['character_id'][:100]!r}; this server keeps no characters.", param="character_id", detail="not_found")


routes = [
    Route("/v1/videos", create, methods=["POST"]),
    Route("/v1/videos", list_videos, methods=["GET"]),
    Route("/v1/videos/edits", edit, methods=["POST"]),
    Route("/v1/videos/extensions", extend_video, methods=["POST"]),
    Route("/v1/videos/characters", create_character, methods=["POST"]),
    Route("/v1/videos/characters/{character_id}", get_character, methods=["GET"]),
    Route("/v1/videos/{video_id}", retrieve, methods=["GET"]),
    Route("/v1/videos/{video_id}", delete, methods=["DELETE"]),
    Route("/v1/videos/{video_id}/content", content, methods=["GET"]),
    Route("/v1/videos/{video_id}/remix", remix, methods=["POST"]),
]

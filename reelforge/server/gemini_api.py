"""Google's Veo wire, both shapes the ``google-genai`` client sends, under ``/v1``, ``/v1beta`` and ``/v1beta1``.

- Vertex (``genai.Client(vertexai=True, ...)``, what google-genai 3.x needs for generate_videos):
  ``POST {ver}/[projects/P/locations/L/]publishers/google/models/{model}:predictLongRunning``,
  polled by ``POST {ver}/{same resource}:fetchPredictOperation``; the videos come back inline.
- Gemini Developer API (clients up to 2.34): ``POST {ver}/models/{model}:predictLongRunning``,
  polled by ``GET {ver}/{operation name}``; videos as ``files/{id}``, fetched by
  ``GET {ver}/files/{id}:download?alt=media``.

An operation holds one job per sample (``sampleCount``): its id is their job ids end to end, so
an operation needs no record of its own, and ``files/{id}`` is one job's video. Every success is
a 200 (the client treats any other status as an error). Facts: reference §2; choices: docs/wires.md.
"""

from __future__ import annotations

import base64
import re
from typing import Any, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reelforge.errors import JobExpiredError, JobNotFoundError, RequestError, StorageError
from reelforge.jobs.record import JobRecord, JobStatus
from reelforge.engines.catalog import get_model
from reelforge.jobs.views import gemini_error, gemini_response
from reelforge.jobs.record import JOB_ID
from reelforge.request.model import ImageInput, VideoRequest
from reelforge.server import video_wires, wire
from reelforge.server.errors import GEMINI, ApiError

VERSIONS = ("v1", "v1beta", "v1beta1")
MAX_SAMPLES = 4  # Veo's sampleCount range is 1 to 4
_VERTEX = re.compile(r"((?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/([^/:]+))")
_DEVELOPER = re.compile(r"(models/([^/:]+))")
_OPERATION = re.compile(rf"(.+)/operations/((?:{JOB_ID.pattern}){{1,{MAX_SAMPLES}}})")
_FILE = re.compile(rf"files/({JOB_ID.pattern}):download")
ASPECTS = {"16:9": (16, 9), "9:16": (9, 16)}
RESOLUTIONS = {"720p": 720, "1080p": 1080}
PARAMETERS = {
    "sampleCount", "durationSeconds", "aspectRatio", "resolution", "fps", "seed", "negativePrompt", "enhancePrompt",
    "personGeneration", "generateAudio", "compressionQuality", "resizeMode", "storageUri", "pubsubTopic",
}
INSTANCE = {"prompt", "image", "lastFrame", "video", "referenceImages", "mask"}
FIELDS = {
    "textToVideoParams.text": "instances[0].prompt",
    "textToVideoParams.images": "instances[0].image",
    "videoGenerationConfig.durationSeconds": "parameters.durationSeconds",
    "videoGenerationConfig.dimension": "parameters.aspectRatio",
    "videoGenerationConfig.fps": "parameters.fps",
    "videoGenerationConfig.seed": "parameters.seed",
}
VERTEX_RESPONSE = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"


def _state(request: Request):
    return request.app.state.reelforge


def _invalid(field: str, message: str) -> RequestError:
    return RequestError(field, message)


def _not_found(what: str) -> ApiError:
    return ApiError(404, "ResourceNotFoundException", f"{what[:200]} is not found.")


def _resource(rest: str) -> tuple[str, re.Match | None, str | None]:
    """What a path below the version names: (kind, match, the methods it answers), kind "" when nothing."""
    resource, _, verb = rest.rpartition(":")
    if verb == "predictLongRunning" and (m := _VERTEX.fullmatch(resource) or _DEVELOPER.fullmatch(resource)):
        return "create", m, "POST"
    if verb == "fetchPredictOperation" and (m := _VERTEX.fullmatch(resource)):
        return "fetch", m, "POST"
    if m := _OPERATION.fullmatch(rest):
        return "operation", m, "GET, HEAD"
    if m := _FILE.fullmatch(rest):
        return "file", m, "GET, HEAD"
    return "", None, None


def allowed_methods(path: str) -> str | None:
    """The Allow header of a Google-wire path (None: no such resource)."""
    return _resource(path.split("/", 2)[2] if path.count("/") >= 2 else "")[2]


async def dispatch(request: Request) -> Response:
    """One route per version prefix: the resource paths carry colons (``...:predictLongRunning``), matched here."""
    rest = request.path_params["rest"]
    kind, m, allowed = _resource(rest)
    if not kind:
        raise ApiError(404, "UnknownOperationException", f"No method answers {request.method} {request.url.path[:200]}.")
    m, allowed = cast(re.Match, m), cast(str, allowed)  # a kind comes with both
    if request.method not in allowed.split(", "):
        raise ApiError(405, "UnknownOperationException", f"{request.url.path[:200]} does not answer {request.method}; it answers {allowed}.", headers={"Allow": allowed})
    if kind == "create":
        return await create(request, m.group(1), m.group(2))
    if kind == "fetch":
        return await fetch_operation(request)
    if kind == "operation":
        return JSONResponse(await _operation(request, rest, m.group(2), vertex=False))
    return await download(request, m.group(1))


# --- create -----------------------------------------------------------------------------------


async def create(request: Request, resource: str, model_name: str) -> JSONResponse:
    body = _body(await request.body())
    state = _state(request)
    try:
        model_id = state.wire_models.resolve(model_name, "model")
    except RequestError as exc:
        raise ApiError(404, "ResourceNotFoundException", f"{resource[:200]} is not found: {exc.message}") from None
    spec = get_model(model_id)
    instance = _instance(body.get("instances"))
    params = _object(body.get("parameters", {}), "parameters")
    extra = sorted(set(params) - PARAMETERS)
    if extra:
        raise _invalid(f"parameters.{extra[0][:100]}", f"unknown parameter; allowed: {', '.join(sorted(PARAMETERS))}")
    for name, why in (("storageUri", "videos come back inline in the operation; leave storageUri out"),
                      ("pubsubTopic", "this server publishes no notifications; poll the operation"),
                      ("negativePrompt", f"{model_id} takes no negative prompt per request here; leave it out")):
        if params.get(name) is not None:
            raise _invalid(f"parameters.{name}", why)
    audio = generate_audio(params, model_id)
    for name in ("enhancePrompt",):
        _flag(params, name)
    _choice(params, "personGeneration", ("allow_adult", "dont_allow", "allow_all"), lower=True)
    _choice(params, "compressionQuality", ("OPTIMIZED", "LOSSLESS"))
    resize = _choice(params, "resizeMode", ("CROP", "PAD"))
    samples = cast(int, _int(params, "sampleCount", 1))
    if not 1 <= samples <= MAX_SAMPLES:
        raise _invalid("parameters.sampleCount", f"{samples} is not allowed; allowed: 1 to {MAX_SAMPLES}")
    seconds = cast(int, _int(params, "durationSeconds", 8))
    fps = cast(int, _int(params, "fps", video_wires.default_fps(spec)))
    aspect = _choice(params, "aspectRatio", tuple(ASPECTS)) or "16:9"
    resolution = _choice(params, "resolution", tuple(RESOLUTIONS)) or "720p"
    width, height = _dimensions(aspect, resolution)
    seed = _seed(params, spec.limits.seed_max, samples)
    base = 42 if seed is None else seed
    prompt = instance.get("prompt")
    if not isinstance(prompt, str):
        raise _invalid("instances[0].prompt", "is required: the text of the video")
    image = _image(instance.get("image"), "instances[0].image") if instance.get("image") is not None else None
    tags = _labels(body.get("labels"))
    kept = {
        "operation": "predictLongRunning", "model": model_name, "resource": resource, "prompt": prompt,
        "parameters": {k: v for k, v in params.items() if k != "seed"},
    }
    if image is not None:
        kept["image"] = video_wires.describe_bytes(base64.b64decode(cast(str, image.bytes_b64)), instance["image"].get("mimeType"))
    records: list[JobRecord] = []
    try:
        for i in range(samples):
            req = VideoRequest(text=prompt, image=image, duration_s=seconds, fps=fps, width=width, height=height,
                               seed=base + i, fit="pad" if resize == "PAD" else None)
            wire_request = {**kept, "seed": base + i, "sample": i, "samples": samples}
            try:
                record, _ = await video_wires.submit(state, model_id, req, wire=GEMINI, wire_request=wire_request, fields=FIELDS, tags=tags, audio=audio)
            except RequestError as exc:
                if exc.field == "parameters.aspectRatio":
                    raise _invalid("parameters.aspectRatio", f"{aspect} at {resolution} is {width}x{height}, which {model_id} does not make: {exc.message}") from None
                raise
            records.append(record)
    except BaseException:
        for done in records:  # an operation is all its samples or none
            await run_in_threadpool(state.runtime.cancel, done.id)
        raise
    return JSONResponse({"name": f"{resource}/operations/{''.join(r.id for r in records)}"})


def _body(raw: bytes) -> dict:
    """The request body: a JSON object of instances, parameters and labels only."""
    body = wire.parse_body(raw)
    if not isinstance(body, dict):
        raise _invalid("body", "must be a JSON object: {\"instances\": [{\"prompt\": ...}], \"parameters\": {...}}")
    unknown = sorted(set(body) - {"instances", "parameters", "labels"})
    if unknown:
        what = "webhooks are not supported here; poll the operation instead" if unknown[0] == "webhookConfig" else "allowed: instances, parameters, labels"
        raise _invalid(unknown[0][:100], f"unknown or unsupported field; {what}")
    return body


def _seed(params: dict, seed_max: int, samples: int) -> int | None:
    """``parameters.seed``, with room for one seed per sample (sample i uses seed + i)."""
    seed = _int(params, "seed", None)
    if seed is not None and not 0 <= seed <= seed_max - samples + 1:
        raise _invalid("parameters.seed", f"{seed} is out of range; allowed: 0 to {seed_max - samples + 1} (sample i uses seed + i)")
    return seed


def _object(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise _invalid(field, "must be a JSON object")
    return value


def _instance(instances: Any) -> dict:
    if not isinstance(instances, list) or len(instances) != 1:
        raise _invalid("instances", "must be a list of exactly one instance: [{\"prompt\": ...}]")
    instance = _object(instances[0], "instances[0]")
    unknown = sorted(set(instance) - INSTANCE)
    if unknown:
        raise _invalid(f"instances[0].{unknown[0][:100]}", f"unknown field; allowed: {', '.join(sorted(INSTANCE))}")
    for name, why in (("lastFrame", "no model here conditions on a last frame; leave it out"),
                      ("video", "video extension is not offered on this wire; use OpenAI's videos.extend on this server"),
                      ("referenceImages", "no model here takes reference images; pass one image as instances[0].image"),
                      ("mask", "no model here edits with a mask")):
        if instance.get(name) is not None:
            raise _invalid(f"instances[0].{name}", why)
    return instance


def generate_audio(params: dict, model_id: str) -> bool:
    """``parameters.generateAudio`` as the job's audio flag: false makes a silent video, true needs a
    model that makes sound (INVALID_ARGUMENT otherwise), absent keeps the model's default (its sound, if any)."""
    if "generateAudio" not in params:
        return True
    wanted = _flag(params, "generateAudio")
    if wanted and not video_wires.makes_sound(model_id):
        raise _invalid("parameters.generateAudio", f"{model_id} makes silent videos; leave generateAudio out or set it to false")
    return wanted


def _flag(params: dict, name: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise _invalid(f"parameters.{name}", f"must be true or false, got {value!r}"[:200])
    return value


def _int(params: dict, name: str, default: int | None) -> int | None:
    value = params.get(name)
    if value is None:  # left out or JSON null: as Google reads a null field, the default
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"parameters.{name}", f"must be a whole number, got {value!r}"[:200])
    return value


def _choice(params: dict, name: str, allowed: tuple[str, ...], lower: bool = False) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or (value.lower() if lower else value) not in allowed:
        raise _invalid(f"parameters.{name}", f"{value!r} is not allowed; allowed: {', '.join(allowed)}"[:300])
    return value


def _dimensions(aspect: str, resolution: str) -> tuple[int, int]:
    short = RESOLUTIONS[resolution]
    long = short * 16 // 9
    return (long, short) if ASPECTS[aspect][0] > ASPECTS[aspect][1] else (short, long)


def _image(value: Any, field: str) -> ImageInput:
    image = _object(value, field)
    if image.get("gcsUri") is not None:
        raise _invalid(f"{field}.gcsUri", "this server reads no Cloud Storage URIs; send the image bytes (bytesBase64Encoded)")
    data = image.get("bytesBase64Encoded")
    if not isinstance(data, str) or not data:
        raise _invalid(f"{field}.bytesBase64Encoded", "is required: the image as base64")
    return ImageInput.from_source(data, field)


def _labels(labels: Any) -> list[dict[str, str]]:
    if labels is None:
        return []
    pairs = [{"key": k, "value": v} for k, v in _object(labels, "labels").items()]
    try:
        return wire.parse_tags(pairs)
    except ApiError as exc:
        raise _invalid("labels", exc.message) from None


# --- operations and files ---------------------------------------------------------------------


async def fetch_operation(request: Request) -> JSONResponse:
    body = _object(wire.parse_body(await request.body()), "body")
    name = body.get("operationName")
    m = _OPERATION.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        raise _invalid("operationName", "must be the name of an operation this server returned")
    return JSONResponse(await _operation(request, cast(str, name), m.group(2), vertex=True))


async def _operation(request: Request, name: str, op_id: str, *, vertex: bool) -> dict[str, Any]:
    """The operation ``name`` in the shape its client parses (Vertex: inline bytes; Developer: file names)."""
    records = []
    for i in range(0, len(op_id), 12):
        try:
            record = await _state(request).job(op_id[i:i + 12])
        except JobExpiredError as exc:
            raise ApiError(404, "ResourceNotFoundException", f"Operation {name[:200]} has expired: {exc.expiry}.") from None
        except JobNotFoundError:
            raise _not_found(f"Operation {name}") from None
        if record.deleted_time is not None or record.parent_id is not None:
            raise _not_found(f"Operation {name}")
        records.append(record)
    if not all(r.status.done for r in records):
        progress = sum(r.progress for r in records) / len(records)
        return {"name": name, "done": False, "metadata": {"progressPercent": int(progress * 100)}}
    ended = [r for r in records if r.status is not JobStatus.COMPLETED]
    if ended:
        return {"name": name, "done": True, "error": gemini_error(ended[0])}
    if vertex:
        videos = []
        for r in records:
            data = await run_in_threadpool(video_wires.output_bytes, r)
            videos.append({"bytesBase64Encoded": base64.b64encode(data).decode("ascii"), "mimeType": "video/mp4"})
        response = {"@type": VERTEX_RESPONSE, "raiMediaFilteredCount": 0, "videos": videos}
    else:
        response = gemini_response(records)
    return {"name": name, "done": True, "response": response}


async def download(request: Request, job_id: str) -> Response:
    if request.query_params.get("alt") != "media":
        raise _invalid("alt", "this server serves only the file's bytes: add ?alt=media")
    try:
        record = await _state(request).job(job_id)
    except JobExpiredError as exc:
        raise ApiError(404, "ResourceNotFoundException", f"File files/{job_id[:100]} has expired: {exc.expiry}.") from None
    except JobNotFoundError:
        raise _not_found(f"File files/{job_id}") from None
    if record.deleted_time is not None or record.status is not JobStatus.COMPLETED:
        raise _not_found(f"File files/{job_id}")
    try:
        data = await run_in_threadpool(video_wires.output_bytes, record)
    except StorageError:
        raise _not_found(f"File files/{job_id}") from None
    return Response(data, media_type="video/mp4")


routes = [Route(f"/{version}/{{rest:path}}", dispatch, methods=["GET", "POST"]) for version in VERSIONS]

"""``GET /openapi.json``: an OpenAPI 3.1 description of every API route of `reelforge serve`.

Bedrock's async-invoke operations, reelforge's ``/reelforge/`` routes, OpenAI's Videos API and
Google's Veo wire (the gallery's HTML pages are left out). Each operation documents its success
reply and its wire's error shape for 4XX and 5XX; the test suite runs schemathesis against it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from reelforge import __version__

S = {"type": "string"}
I = {"type": "integer"}
B = {"type": "boolean"}
NULLABLE_S = {"type": ["string", "null"]}
NULLABLE_I = {"type": ["integer", "null"]}
ANY_OBJECT = {"type": "object"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


SCHEMAS = {
    "BedrockError": obj(["message"], message=S),
    "OpenAIError": obj(["error"], error=obj(["message", "type"], message=S, type=S, param=NULLABLE_S, code=NULLABLE_S)),
    "GoogleError": obj(["error"], error=obj(["code", "message", "status"], code=I, message=S, status=S)),
    "AsyncInvokeSummary": obj(
        ["invocationArn", "modelArn", "status", "submitTime", "outputDataConfig"],
        invocationArn=S, modelArn=S, clientRequestToken=S, status={"enum": ["InProgress", "Completed", "Failed"]},
        failureMessage=S, submitTime=S, lastModifiedTime=S, endTime=S, outputDataConfig=ANY_OBJECT,
    ),
    "Video": obj(
        ["id", "object", "model", "status", "progress", "created_at", "seconds", "size"],
        id=S, object={"const": "video"}, model=S,
        status={"enum": ["queued", "in_progress", "completed", "failed"]},
        progress={"type": "integer", "minimum": 0, "maximum": 100}, created_at=I, completed_at=NULLABLE_I,
        expires_at=NULLABLE_I, prompt=NULLABLE_S, seconds=S,
        size={"type": "string", "pattern": "^[0-9]+x[0-9]+$", "description": "WIDTHxHEIGHT; the openai client's types list 720x1280, 1280x720, 1024x1792, 1792x1024"},
        remixed_from_video_id=NULLABLE_S,
        error={"oneOf": [{"type": "null"}, obj(["code", "message"], code=S, message=S)]},
    ),
    "Operation": obj(["name"], name=S, done=B, metadata=ANY_OBJECT, response=ANY_OBJECT, error=_ref("GoogleStatus")),
    "GoogleStatus": obj(["code", "message"], code=I, message=S, status=S),
    "Job": obj(["id", "invocationArn", "modelId", "status", "progress"], id=S, invocationArn=S, modelId=S, wire=S,
               status={"enum": ["QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELED"]}, progress={"type": "number"}),
}

ERROR_OF = {"bedrock": "BedrockError", "reelforge": "BedrockError", "openai": "OpenAIError", "gemini": "GoogleError"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def op(wire: str, summary: str, ok: dict[str, Any] | None, *, params: list | None = None, body: dict | None = None, media: str | None = None) -> dict[str, Any]:
    """One operation: its 200 reply (``ok``: a JSON schema, or None with ``media`` for bytes) and its wire's error shape."""
    error = {"description": "an error, in this wire's shape", **_json(_ref(ERROR_OF[wire]))}
    success = {"description": "success", **(_json(ok) if ok is not None else {"content": {media or "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})}
    out: dict[str, Any] = {"summary": summary, "tags": [wire], "responses": {"200": success, "4XX": error, "5XX": error}}
    if params:
        out["parameters"] = params
    if body:
        out["requestBody"] = body
    return out


def path_param(name: str, schema: dict | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or S}


def query(name: str, schema: dict | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema or S}


FORM = "multipart/form-data"
BINARY = {"type": "string", "format": "binary"}


def _form(required: list[str], **props: Any) -> dict[str, Any]:
    return {"required": True, "content": {FORM: {"schema": obj(required, **props)}, "application/json": {"schema": obj(required, **props)}}}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, **_json(schema)}


def _bedrock_paths() -> dict[str, Any]:
    start = obj(["modelId", "modelInput", "outputDataConfig"], modelId=S, modelInput=ANY_OBJECT, clientRequestToken=S,
                outputDataConfig=obj(["s3OutputDataConfig"], s3OutputDataConfig=obj(["s3Uri"], s3Uri=S, kmsKeyId=S, bucketOwner=S)),
                tags={"type": "array", "items": obj(["key", "value"], key=S, value=S)})
    list_params = [query("submitTimeAfter"), query("submitTimeBefore"), query("statusEquals", {"enum": ["InProgress", "Completed", "Failed"]}),
                   query("maxResults", {"type": "integer", "minimum": 1, "maximum": 1000}), query("nextToken"),
                   query("sortBy", {"enum": ["SubmissionTime"]}), query("sortOrder", {"enum": ["Ascending", "Descending"]})]
    return {
        "/async-invoke": {
            "post": op("bedrock", "StartAsyncInvoke", obj(["invocationArn"], invocationArn=S), body=_json_body(start)),
            "get": op("bedrock", "ListAsyncInvokes", obj(["asyncInvokeSummaries"], asyncInvokeSummaries={"type": "array", "items": _ref("AsyncInvokeSummary")}, nextToken=S), params=list_params),
        },
        "/async-invoke/{invocationArn}": {"get": op("bedrock", "GetAsyncInvoke", _ref("AsyncInvokeSummary"), params=[path_param("invocationArn")])},
    }


def _reelforge_paths() -> dict[str, Any]:
    job_id = path_param("job_id")
    page = obj(["jobs", "total"], jobs={"type": "array", "items": _ref("Job")}, total=I, totalIsLowerBound=B, offset=I, nextToken=NULLABLE_S)
    return {
        "/reelforge/health": {"get": op("reelforge", "liveness and configuration", obj(["status", "service"], status=S, service=S))},
        "/reelforge/jobs": {"get": op("reelforge", "a page of jobs, newest first", page, params=[query("status"), query("model"), query("q"), query("limit", I), query("after")])},
        "/reelforge/jobs/{job_id}": {"get": op("reelforge", "one job", _ref("Job"), params=[job_id])},
        "/reelforge/jobs/{job_id}/cancel": {"post": op("reelforge", "cancel a job", _ref("Job"), params=[job_id])},
        "/reelforge/jobs/{job_id}/events": {"get": op("reelforge", "server-sent events of a job until it ends", None, params=[job_id], media="text/event-stream")},
        "/reelforge/jobs/{job_id}/files/{name}": {"get": op("reelforge", "an output file (HTTP Range)", None, params=[job_id, path_param("name")])},
    }


def _openai_paths() -> dict[str, Any]:
    vid = path_param("video_id")
    video = _ref("Video")
    listing = obj(["object", "data", "has_more"], object={"const": "list"}, data={"type": "array", "items": video}, has_more=B, first_id=NULLABLE_S, last_id=NULLABLE_S)
    reference = {"type": "string", "format": "binary"}
    return {
        "/v1/videos": {
            "post": op("openai", "create a video", video, body=_form(["prompt"], prompt=S, model=S, seconds=S, size=S, input_reference=reference)),
            "get": op("openai", "list videos", listing, params=[query("after"), query("limit", {"type": "integer", "minimum": 1, "maximum": 100}), query("order", {"enum": ["asc", "desc"]})]),
        },
        "/v1/videos/edits": {"post": op("openai", "edit a video (refused: no model here conditions on a video)", video, body=_form(["prompt"], prompt=S, video=BINARY))},
        "/v1/videos/extensions": {"post": op("openai", "extend a video from its last frame", video, body=_form(["prompt"], prompt=S, seconds=S, video=BINARY))},
        "/v1/videos/characters": {"post": op("openai", "create a character (refused)", obj(["created_at"], id=S, name=S, created_at=I), body=_form(["name"], name=S, video=BINARY))},
        "/v1/videos/characters/{character_id}": {"get": op("openai", "a character (none are kept)", obj(["created_at"], id=S, name=S, created_at=I), params=[path_param("character_id")])},
        "/v1/videos/{video_id}": {
            "get": op("openai", "retrieve a video", video, params=[vid]),
            "delete": op("openai", "delete a video's files (canceling it first)", obj(["id", "object", "deleted"], id=S, object={"const": "video.deleted"}, deleted=B), params=[vid]),
        },
        "/v1/videos/{video_id}/content": {"get": op("openai", "download a video, thumbnail or spritesheet", None, params=[vid, query("variant", {"enum": ["video", "thumbnail", "spritesheet"]})], media="video/mp4")},
        "/v1/videos/{video_id}/remix": {"post": op("openai", "remix: the same recipe with a new prompt", video, params=[vid], body=_json_body(obj(["prompt"], prompt=S)))},
    }


def _gemini_paths() -> dict[str, Any]:
    image = obj(["bytesBase64Encoded"], bytesBase64Encoded=S, mimeType=S)
    params = obj(sampleCount=I, durationSeconds=I, aspectRatio={"enum": ["16:9", "9:16"]}, resolution={"enum": ["720p", "1080p"]}, fps=I, seed=I,
                 enhancePrompt=B, personGeneration=S, generateAudio=B, compressionQuality={"enum": ["OPTIMIZED", "LOSSLESS"]}, resizeMode={"enum": ["CROP", "PAD"]})
    create = _json_body(obj(["instances"], instances={"type": "array", "minItems": 1, "maxItems": 1, "items": obj(["prompt"], prompt=S, image=image)},
                            parameters=params, labels={"type": "object", "additionalProperties": S}))
    fetch = _json_body(obj(["operationName"], operationName=S))
    operation = _ref("Operation")
    model = path_param("model")
    project = [path_param("project"), path_param("location")]
    out: dict[str, Any] = {}
    for version in ("v1", "v1beta", "v1beta1"):  # each spelled out: a path parameter would be fuzzed into other prefixes
        vertex, vertex_project = f"/{version}/publishers/google/models/{{model}}", f"/{version}/projects/{{project}}/locations/{{location}}/publishers/google/models/{{model}}"
        out.update({
            vertex + ":predictLongRunning": {"post": op("gemini", "Vertex: generate videos (an operation)", operation, params=[model], body=create)},
            vertex + ":fetchPredictOperation": {"post": op("gemini", "Vertex: an operation, videos inline when done", operation, params=[model], body=fetch)},
            vertex_project + ":predictLongRunning": {"post": op("gemini", "Vertex (project mode): generate videos", operation, params=[*project, model], body=create)},
            vertex_project + ":fetchPredictOperation": {"post": op("gemini", "Vertex (project mode): an operation", operation, params=[*project, model], body=fetch)},
            f"/{version}/models/{{model}}:predictLongRunning": {"post": op("gemini", "Developer API: generate videos", operation, params=[model], body=create)},
            f"/{version}/models/{{model}}/operations/{{operation}}": {"get": op("gemini", "Developer API: an operation, videos as files/ID", operation, params=[model, path_param("operation")])},
            f"/{version}/files/{{file}}:download": {"get": op("gemini", "Developer API: a video's bytes", None, params=[path_param("file"), {"name": "alt", "in": "query", "required": True, "schema": {"const": "media"}}], media="video/mp4")},
        })
    return out


def document() -> dict[str, Any]:
    paths = {**_bedrock_paths(), **_reelforge_paths(), **_openai_paths(), **_gemini_paths()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "reelforge serve", "version": __version__,
                 "description": "Amazon Bedrock's async-invoke API, OpenAI's Videos API and Google's Veo API over one job log (docs/server.md, docs/wires.md)."},
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(document())


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]

"""reelforge errors as Bedrock error replies, in one function.

Every error the server sends has the shape botocore parses (reference §1.6-1.7): an HTTP
status, the ``x-amzn-ErrorType: <Code>`` header and a ``{"message": ...}`` JSON body.

| raised                                      | HTTP | code                          |
|---------------------------------------------|------|-------------------------------|
| RequestError, ImageError, UnknownModelError | 400  | ValidationException           |
| JobStoreError (the job log is unreachable)  | 503  | ServiceUnavailableException   |
| StorageError, EngineError                   | 400  | ValidationException           |
| ConflictError                               | 400  | ConflictException             |
| QueueFullError (serve --max-queued)         | 400  | ServiceQuotaExceededException (OpenAI, Google: 429) |
| JobNotFoundError                            | 404  | ResourceNotFoundException     |
| JobExpiredError (pruned: "has expired")     | 404  | ResourceNotFoundException     |
| ApiError (the server's own)                 | any  | as given                      |
| anything else                               | 500  | InternalServerException       |

Replies written elsewhere (Starlette's Range errors, a route's plain JSON error) are reshaped
on their way out by :func:`shaped_send`, with a code that follows the status
(:data:`CODE_FOR_STATUS`); gallery pages (``text/html``) keep their own form. uvicorn's own
replies (bad HTTP, timeouts, overload) are written in this shape by
:mod:`reelforge.server.protocol`.

The other wires (docs/wires.md) get the same errors in their own shapes, chosen by the request
path (:func:`wire_of`): OpenAI's ``{"error": {"message", "type", "param", "code"}}`` under
``/v1/videos``, Google's ``{"error": {"code", "message", "status"}}`` under ``/v1``, ``/v1beta``
and ``/v1beta1``. Status codes are the same on every wire, except that a missing or wrong key is
401 on those two (their clients raise their authentication errors for it) where Bedrock says 403.
"""

from __future__ import annotations

import http
import json
import logging
import os

from starlette.responses import Response

from reelforge.errors import ConflictError, EngineError, JobExpiredError, JobNotFoundError, QueueFullError, ReelforgeError, RequestError, StorageError, UnknownModelError
from reelforge.errors import JobStoreError

log = logging.getLogger("reelforge.server")


BEDROCK, OPENAI, GEMINI = "bedrock", "openai", "gemini"
GEMINI_PREFIXES = ("/v1/", "/v1beta/", "/v1beta1/")
# The header that carries a reply's request id: the openai client reads x-request-id (its
# request_id); Bedrock's clients x-amzn-RequestId, which the Google routes carry too (Google's
# REST replies name none that its client reads).
REQUEST_ID_HEADER = {OPENAI: "x-request-id"}
BEDROCK_REQUEST_ID = "x-amzn-RequestId"


def request_id_header(wire: str) -> str:
    return REQUEST_ID_HEADER.get(wire, BEDROCK_REQUEST_ID)


def new_request_id() -> str:
    """A random (version 4) UUID as text, formatted directly: uuid.uuid4() costs twice as much, once per request."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def wire_of(path: str) -> str:
    """The API a request path belongs to, and so the shape of its error replies."""
    if path == "/v1/videos" or path.startswith("/v1/videos/"):
        return OPENAI
    if path.startswith(GEMINI_PREFIXES):
        return GEMINI
    return BEDROCK


class ApiError(Exception):
    """An error the server itself decides on (auth, limits, unknown routes).

    ``param`` names the request field at fault and ``detail`` is a short machine-readable code;
    the OpenAI shape carries both (``param``, ``code``).
    """

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None, detail: str | None = None, headers: dict[str, str] | None = None):
        self.status, self.code, self.message = status, code, message
        self.param, self.detail, self.headers = param, detail, headers or {}
        super().__init__(message)


def access_denied(message: str) -> ApiError:
    return ApiError(403, "AccessDeniedException", message)


def validation(message: str) -> ApiError:
    return ApiError(400, "ValidationException", message)


def error_parts(exc: BaseException) -> tuple[int, str, str]:
    """(HTTP status, Bedrock error code, message) for ``exc``."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message
    if isinstance(exc, JobStoreError):  # an outage, not a bad request: botocore retries 503s
        return 503, "ServiceUnavailableException", "The job log is unavailable right now; try again shortly (details are in the server log)."
    if isinstance(exc, ConflictError):
        return 400, "ConflictException", str(exc)
    if isinstance(exc, QueueFullError):  # Bedrock's own answer to a full quota: a 400 botocore does not retry
        return 400, "ServiceQuotaExceededException", str(exc)
    if isinstance(exc, JobExpiredError):
        return 404, "ResourceNotFoundException", f"Invocation {exc.ref!r} has expired: {exc.expiry}."
    if isinstance(exc, JobNotFoundError):
        return 404, "ResourceNotFoundException", f"Could not find invocation {exc.ref!r}."
    if isinstance(exc, (RequestError, UnknownModelError, StorageError, EngineError)):
        return 400, "ValidationException", str(exc)
    if isinstance(exc, ReelforgeError):
        return 400, "ValidationException", str(exc)
    return 500, "InternalServerException", "The server hit an internal error; details are in the server log."


def error_response(exc: BaseException, request_id: str | None = None, wire: str = BEDROCK) -> Response:
    """The one mapping from an exception to an error reply, in the shape of ``wire``."""
    status, code, message = error_parts(exc)
    if isinstance(exc, QueueFullError) and wire != BEDROCK:
        status, code = 429, "ThrottlingException"  # OpenAI's rate_limit_error, Google's RESOURCE_EXHAUSTED
    if status >= 500:
        log.error("request %s failed", request_id or "-", exc_info=exc)
    param = getattr(exc, "param", None) or getattr(exc, "field", None)
    body, headers = error_body(wire, status, code, message, param=param, detail=getattr(exc, "detail", None))
    if request_id:
        headers[request_id_header(wire)] = request_id
    if isinstance(exc, ApiError):
        headers.update(exc.headers)
    if isinstance(exc, QueueFullError):
        headers["Retry-After"] = str(exc.retry_after_s)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


# Google's canonical error names by HTTP status (google.rpc.Code as the REST APIs map it).
GRPC_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "UNIMPLEMENTED", 408: "DEADLINE_EXCEEDED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
# OpenAI's error codes for reelforge's (Bedrock's) codes, where a route gives none of its own.
OPENAI_CODE = {
    "ValidationException": "invalid_request", "AccessDeniedException": "access_denied",
    "ResourceNotFoundException": "not_found", "ConflictException": "idempotency_key_reused",
    "UnknownOperationException": "unknown_url", "RequestTimeoutException": "request_timeout",
    "ThrottlingException": "rate_limit_exceeded", "ServiceQuotaExceededException": "rate_limit_exceeded", "ServiceUnavailableException": "service_unavailable",
    "InternalServerException": "server_error",
}


def error_body(wire: str, status: int, code: str, message: str, *, param: str | None = None, detail: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an error reply on ``wire`` (``code`` is reelforge's Bedrock code)."""
    if wire == OPENAI:
        kind = "server_error" if status >= 500 else "rate_limit_error" if status == 429 else "invalid_request_error"
        if status == 401:
            detail = detail or "invalid_api_key"
        doc = {"error": {"message": message, "type": kind, "param": param, "code": detail or OPENAI_CODE.get(code, "invalid_request")}}
        return json.dumps(doc).encode(), {}
    if wire == GEMINI:
        name = GRPC_STATUS.get(status) or ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
        return json.dumps({"error": {"code": status, "message": message, "status": name}}).encode(), {}
    return json.dumps({"message": message}).encode(), {"x-amzn-ErrorType": code}


CODE_FOR_STATUS = {
    401: "AccessDeniedException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    405: "UnknownOperationException",
    408: "RequestTimeoutException",
    409: "ConflictException",
    429: "ThrottlingException",
    503: "ServiceUnavailableException",
}
_KEPT = {b"content-range", b"allow", b"retry-after", b"x-amzn-requestid", b"x-request-id", b"connection"}
_MAX_MESSAGE = 2048


def code_for_status(status: int) -> str:
    return CODE_FOR_STATUS.get(status) or ("InternalServerException" if status >= 500 else "ValidationException")


def _message(body: bytes, content_type: str, status: int) -> str:
    text = body[:_MAX_MESSAGE * 2].decode("utf-8", "replace").strip()
    if content_type.startswith("application/json"):
        try:
            doc = json.loads(body)
            text = str(doc.get("message") or doc.get("detail") or "") if isinstance(doc, dict) else ""
        except ValueError:
            text = ""
    elif not content_type.startswith("text/plain"):
        text = ""
    return text[:_MAX_MESSAGE] or f"{status} {http.HTTPStatus(status).phrase}."


def _shaped(wire: str, body: bytes, names: dict[bytes, bytes]) -> bool:
    """Whether an error reply is already in ``wire``'s shape."""
    if wire == BEDROCK:
        return b"x-amzn-errortype" in names
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("error"), dict)


def shaped_send(send, wire: str = BEDROCK):
    """``send`` that rewrites an error reply not in ``wire``'s shape (e.g. lacking ``x-amzn-ErrorType``) into it."""
    held: dict | None = None
    chunks: list[bytes] = []

    async def wrapped(message):
        nonlocal held
        if message["type"] == "http.response.start" and message["status"] >= 400:
            names = {k.lower(): v for k, v in message.get("headers", [])}
            content_type = names.get(b"content-type", b"").decode("latin-1").lower()
            if not content_type.startswith("text/html") and (wire != BEDROCK or not _shaped(wire, b"", names)):
                held = message
                return
        elif held is not None and message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            names = {k.lower(): v for k, v in held.get("headers", [])}
            status, raw = held["status"], b"".join(chunks)
            if _shaped(wire, raw, names):
                await send(held)
                return await send({"type": "http.response.body", "body": raw, "more_body": False})
            text = _message(raw, names.get(b"content-type", b"").decode("latin-1").lower(), status)
            body, extra = error_body(wire, status, code_for_status(status), text)
            headers = [(k, v) for k, v in held.get("headers", []) if k.lower() in _KEPT]
            headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            return await send({"type": "http.response.body", "body": body, "more_body": False})
        await send(message)

    return wrapped

"""reelforge errors as Bedrock error replies, in one function.

Every error the server sends has the shape botocore parses (reference §1.6-1.7): an HTTP
status, the ``x-amzn-ErrorType: <Code>`` header and a ``{"message": ...}`` JSON body.

| raised                                      | HTTP | code                          |
|---------------------------------------------|------|-------------------------------|
| RequestError, ImageError, UnknownModelError | 400  | ValidationException           |
| JobStoreError (the job log is unreachable)  | 503  | ServiceUnavailableException   |
| StorageError, EngineError                   | 400  | ValidationException           |
| ConflictError                               | 400  | ConflictException             |
| JobNotFoundError                            | 404  | ResourceNotFoundException     |
| ApiError (the server's own)                 | any  | as given                      |
| anything else                               | 500  | InternalServerException       |

Replies written elsewhere (Starlette's Range errors, a route's plain JSON error) are reshaped
on their way out by :func:`shaped_send`, with a code that follows the status
(:data:`CODE_FOR_STATUS`); gallery pages (``text/html``) keep their own form. uvicorn's own
replies (bad HTTP, timeouts, overload) are written in this shape by
:mod:`reelforge.server.protocol`.
"""

from __future__ import annotations

import http
import json
import logging

from starlette.responses import Response

from ..errors import ConflictError, EngineError, JobNotFoundError, ReelforgeError, RequestError, StorageError, UnknownModelError
from ..stores import JobStoreError

log = logging.getLogger("reelforge.server")


class ApiError(Exception):
    """An error the server itself decides on (auth, limits, unknown routes)."""

    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message
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
    if isinstance(exc, JobNotFoundError):
        return 404, "ResourceNotFoundException", f"Could not find invocation {exc.ref!r}."
    if isinstance(exc, (RequestError, UnknownModelError, StorageError, EngineError)):
        return 400, "ValidationException", str(exc)
    if isinstance(exc, ReelforgeError):
        return 400, "ValidationException", str(exc)
    return 500, "InternalServerException", "The server hit an internal error; details are in the server log."


def error_response(exc: BaseException, request_id: str | None = None) -> Response:
    """The one mapping from an exception to Bedrock's error reply."""
    status, code, message = error_parts(exc)
    if status >= 500:
        log.error("request %s failed", request_id or "-", exc_info=exc)
    headers = {"x-amzn-ErrorType": code}
    if request_id:
        headers["x-amzn-RequestId"] = request_id
    body = json.dumps({"message": message}).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


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
_KEPT = {b"content-range", b"allow", b"retry-after", b"x-amzn-requestid", b"connection"}
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


def shaped_send(send):
    """``send`` that rewrites an error reply lacking ``x-amzn-ErrorType`` into Bedrock's shape."""
    held: dict | None = None
    chunks: list[bytes] = []

    async def wrapped(message):
        nonlocal held
        if message["type"] == "http.response.start" and message["status"] >= 400:
            names = {k.lower(): v for k, v in message.get("headers", [])}
            content_type = names.get(b"content-type", b"").decode("latin-1").lower()
            if b"x-amzn-errortype" not in names and not content_type.startswith("text/html"):
                held = message
                return
        elif held is not None and message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            names = {k.lower(): v for k, v in held.get("headers", [])}
            status = held["status"]
            body = json.dumps({"message": _message(b"".join(chunks), names.get(b"content-type", b"").decode("latin-1").lower(), status)}).encode()
            headers = [(k, v) for k, v in held.get("headers", []) if k.lower() in _KEPT]
            headers += [(b"x-amzn-errortype", code_for_status(status).encode()), (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            return await send({"type": "http.response.body", "body": body, "more_body": False})
        await send(message)

    return wrapped

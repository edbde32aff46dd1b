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
"""

from __future__ import annotations

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

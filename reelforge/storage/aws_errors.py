"""botocore's exceptions (and servers that do not answer) as reelforge errors: the one place they are mapped.

A botocore exception reaches a user as one readable line, whichever call met it:

| botocore raised                                     | reelforge raises                                   |
|-----------------------------------------------------|----------------------------------------------------|
| ClientError (the service answered with an error)    | what the caller's ``client_error(code, message)`` returns |
| EndpointConnectionError, ConnectTimeoutError, ...   | UnreachableError: "cannot reach the server at URL: connection refused" |
| ReadTimeoutError, ConnectionClosedError             | UnreachableError: "... did not answer in time" / "closed the connection" |
| NoCredentialsError, PartialCredentialsError         | ``fallback``: which keys to set                    |
| ParamValidationError (checked before sending)       | RequestError naming the parameter                  |
| any other BotoCoreError                             | ``fallback`` with botocore's own sentence          |

``fallback`` is the error class the caller's domain uses (ReelforgeError for Bedrock calls,
StorageError for S3); it prefixes ``context`` ("cannot read s3://b/k") to the sentence.
"""

from __future__ import annotations

import contextlib
import re
from typing import Callable, Iterator

from reelforge.errors import ReelforgeError, RequestError, UnreachableError

ClientErrorMap = Callable[[str, str], ReelforgeError]
_PARAM = re.compile(r"parameter (\S+?),? (.*)$")


def reason(exc: BaseException) -> str:
    """What a failed connection met, in a few words ("connection refused", "timed out")."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror:
            return e.strerror[:1].lower() + e.strerror[1:]
        if isinstance(e, TimeoutError):
            return "timed out"
        kwargs = getattr(e, "kwargs", None)
        nested = [getattr(e, "reason", None), kwargs.get("error") if isinstance(kwargs, dict) else None, e.__cause__, e.__context__]
        todo += [n for n in nested if isinstance(n, BaseException)]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def unreachable(url: str, exc: BaseException, hint: str = "", context: str = "") -> UnreachableError:
    return UnreachableError(url, reason(exc), hint, context)


def from_botocore(
    exc: Exception,
    *,
    url: str,
    client_error: ClientErrorMap,
    fallback: type[ReelforgeError] = ReelforgeError,
    context: str = "",
    hint: str = "",
) -> ReelforgeError:
    """The reelforge error for ``exc``, raised by a boto3 call to the service at ``url``."""
    from botocore import exceptions as b

    prefix = f"{context}: " if context else ""
    if isinstance(exc, b.ClientError):
        err = exc.response.get("Error", {})
        return client_error(str(err.get("Code", "")), str(err.get("Message", "")))
    if isinstance(exc, b.ReadTimeoutError):
        return UnreachableError(url, "it did not answer in time", hint, context)
    if isinstance(exc, b.ConnectionClosedError):
        return UnreachableError(url, "it closed the connection before answering", hint, context)
    if isinstance(exc, (b.ConnectionError, b.HTTPClientError)):
        return unreachable(url, exc, hint, context)
    if isinstance(exc, (b.NoCredentialsError, b.PartialCredentialsError)):
        return fallback(
            f"{prefix}no AWS credentials for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
            "(a reelforge server without --auth-keys accepts any values)"
        )
    if isinstance(exc, b.ParamValidationError):
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()] or [str(exc)]
        m = _PARAM.search(lines[0])
        return RequestError(m.group(1), m.group(2)) if m else RequestError("request", lines[0])
    return fallback(f"{prefix}{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


@contextlib.contextmanager
def botocore_errors(**kw) -> Iterator[None]:
    """Run boto3 calls with their exceptions turned into reelforge errors (``from_botocore``'s arguments)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise from_botocore(exc, **kw) from None

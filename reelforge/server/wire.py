"""Bedrock's wire format: what botocore leaves to the server to check, and the reply shapes.

botocore checks lengths, ranges and required members but not patterns or enums (reference
§1.8), so everything here is checked again. Messages follow the service's own style:
``1 validation error detected: Value 'x' at 'field' failed to satisfy constraint: ...``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, NoReturn, cast

from reelforge.request.check import surrogate_problem
from reelforge.jobs.layout import iso  # noqa: F401 - the wires' time form, where they look for it
from reelforge.jobs.views import bedrock_summary as summary, model_arn  # noqa: F401 - re-exported for the wires
from reelforge.storage import check_location
from reelforge.storage import S3_URI, has_control_char
from reelforge.server.errors import validation

MODEL_ID = re.compile(r"[a-zA-Z_\.\-/0-9:]+")
KMS_KEY = re.compile(r"arn:aws(-[^:]+)?:kms:[a-zA-Z0-9-]*:[0-9]{12}:((key/[a-zA-Z0-9-]{36})|(alias/[a-zA-Z0-9-_/]+))")
ACCOUNT = re.compile(r"[0-9]{12}")
TOKEN = re.compile(r"[!-~]*")
TAG = re.compile(r"[a-zA-Z0-9\s._:/=+@-]*")
INVOCATION_ARN = re.compile(r"arn:aws(-[^:]+)?:bedrock:([a-z0-9-]{1,20}):([0-9]{12}):async-invoke/([a-z0-9]{12})")
FOUNDATION_ARN = re.compile(r"arn:aws(-[^:]+)?:bedrock:[a-z0-9-]*:[0-9]*:foundation-model/(.+)")
INTEGER = re.compile(r"[0-9]{1,10}")
EPOCH_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
BEDROCK_STATUSES = ("InProgress", "Completed", "Failed")
SORT_ORDERS = ("Ascending", "Descending")
START_MEMBERS = {"modelId", "modelInput", "outputDataConfig", "clientRequestToken", "tags"}
MAX_DEPTH = 32  # of arrays and objects in a body; Nova's deepest request needs 9


def fail(value: Any, field: str, constraint: str) -> NoReturn:
    shown = value if isinstance(value, (str, int, float)) else type(value).__name__
    raise validation(f"1 validation error detected: Value '{shown}' at '{field}' failed to satisfy constraint: {constraint}")


def _string(body: dict, key: str, field: str, lo: int, hi: int, pattern: re.Pattern | None, required: bool) -> str | None:
    if key not in body or body[key] is None:
        if required:
            raise validation(f"1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null")
        return None
    value = body[key]
    if not isinstance(value, str):
        fail(value, field, "Member must be a string")
    if not lo <= len(value) <= hi:
        fail(value, field, f"Member must have length between {lo} and {hi}")
    if pattern is not None and not pattern.fullmatch(value):
        fail(value, field, f"Member must satisfy regular expression pattern: {pattern.pattern}")
    return value


def parse_body(raw: bytes) -> Any:
    """A request body as JSON, refused (400) unless it is UTF-8, at most MAX_DEPTH deep and free of lone surrogates."""
    try:
        doc = json.loads(raw.decode("utf-8") or "null")
    except RecursionError:
        raise validation(f"The request body nests arrays or objects too deeply; at most {MAX_DEPTH} levels are allowed.") from None
    except (ValueError, UnicodeDecodeError):
        raise validation("The request body is not valid JSON.") from None
    stack = [(doc, "", 0)]
    while stack:  # iterative: a deep document must not exhaust the stack here either
        value, path, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise validation(f"The request body nests arrays or objects more than {MAX_DEPTH} levels deep (at {(path or 'the top')[:200]}); at most {MAX_DEPTH} are allowed.")
            items = value.items() if isinstance(value, dict) else ((f"[{i}]", v) for i, v in enumerate(value))
            for key, item in items:
                if isinstance(value, dict):
                    _check_text(key, path or "the request body")
                stack.append((item, _join(path, key), depth + 1))
    return doc


def _join(path: str, key: str) -> str:
    if key.startswith("["):
        return path + key
    return key if path in ("", "modelInput") else f"{path}.{key}"  # model input fields are named as the runtime names them


def _check_text(text: str, path: str) -> None:
    problem = surrogate_problem(text)
    if problem:
        raise validation(f"{path or 'The request body'}: {problem}")


def parse_start(body: Any) -> dict[str, Any]:
    """Check a StartAsyncInvoke body; return its parts (the model input is checked by the runtime)."""
    if not isinstance(body, dict):
        raise validation("The request body must be a JSON object.")
    unknown = sorted(set(body) - START_MEMBERS)
    if unknown:
        raise validation(f"Unknown member '{unknown[0]}' in the request body; allowed: {', '.join(sorted(START_MEMBERS))}")
    model_id = cast(str, _string(body, "modelId", "modelId", 1, 256, MODEL_ID, True))
    arn = FOUNDATION_ARN.fullmatch(model_id)
    if arn:  # Bedrock accepts a foundation-model ARN in place of the id
        model_id = arn.group(2)
    if "modelInput" not in body or body["modelInput"] is None:
        raise validation("1 validation error detected: Value null at 'modelInput' failed to satisfy constraint: Member must not be null")
    out = body.get("outputDataConfig")
    if not isinstance(out, dict) or list(out) != ["s3OutputDataConfig"]:
        raise validation("outputDataConfig must have exactly one member: s3OutputDataConfig")
    s3 = out["s3OutputDataConfig"]
    if not isinstance(s3, dict):
        raise validation("outputDataConfig.s3OutputDataConfig must be an object")
    extra = sorted(set(s3) - {"s3Uri", "kmsKeyId", "bucketOwner"})
    if extra:
        raise validation(f"Unknown member '{extra[0]}' in outputDataConfig.s3OutputDataConfig; allowed: bucketOwner, kmsKeyId, s3Uri")
    field = "outputDataConfig.s3OutputDataConfig"
    s3_uri = cast(str, _string(s3, "s3Uri", f"{field}.s3Uri", 1, 1024, S3_URI, True))
    if has_control_char(s3_uri):  # a NUL passes the pattern's "."
        raise validation(f"{field}.s3Uri: contains a control character (such as NUL); write the output location without one")
    check_location(s3_uri.rstrip("/"), f"{field}.s3Uri")
    kms = _string(s3, "kmsKeyId", f"{field}.kmsKeyId", 1, 2048, KMS_KEY, False)
    owner = _string(s3, "bucketOwner", f"{field}.bucketOwner", 12, 12, ACCOUNT, False)
    if kms is not None:
        # Accepting it without applying it would leave outputs less protected than asked.
        raise validation(
            f"{field}.kmsKeyId: this reelforge server does not encrypt outputs with a KMS key; "
            "leave kmsKeyId out and set SSE-KMS as the bucket's default encryption instead"
        )
    output_config = {"bucketOwner": owner} if owner else {}
    token = _string(body, "clientRequestToken", "clientRequestToken", 1, 256, TOKEN, False)
    return {
        "model_id": model_id,
        "model_input": body["modelInput"],
        "s3_uri": s3_uri.rstrip("/"),
        "output_config": output_config,
        "client_token": token,
        "tags": parse_tags(body.get("tags")),
    }


def parse_tags(tags: Any) -> list[dict[str, str]]:
    if tags is None:
        return []
    if not isinstance(tags, list):
        fail(tags, "tags", "Member must be a list")
    if len(tags) > 200:
        fail(len(tags), "tags", "Member must have length less than or equal to 200")
    out = []
    for i, tag in enumerate(tags, start=1):
        field = f"tags.{i}.member"
        if not isinstance(tag, dict) or set(tag) != {"key", "value"}:
            fail(tag, field, "Member must be an object with exactly the members key and value")
        key = cast(str, _string(tag, "key", f"{field}.key", 1, 128, TAG, True))
        value = cast(str, _string(tag, "value", f"{field}.value", 0, 256, TAG, True))
        out.append({"key": key, "value": value})
    return out


def parse_invocation_arn(arn: str) -> tuple[str, str]:
    """(region, invocation id) of an invocation ARN, or a ValidationException."""
    m = INVOCATION_ARN.fullmatch(arn)
    if not m:
        fail(arn, "invocationArn", f"Member must satisfy regular expression pattern: {INVOCATION_ARN.pattern}")
    return m.group(2), m.group(4)


def parse_time(value: str, field: str) -> float:
    """An ISO-8601 timestamp (what botocore sends) or epoch seconds, as epoch seconds."""
    if EPOCH_SECONDS.fullmatch(value):
        return float(value)
    try:
        t = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        fail(value, field, "Member must be an ISO-8601 timestamp such as 2025-01-01T00:00:00Z")
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()

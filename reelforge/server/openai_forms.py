"""Request bodies on OpenAI's Videos wire: a multipart form or a JSON object as fields, and the fields read from it."""

from __future__ import annotations

import base64
import re
from typing import Any, cast

from starlette.datastructures import UploadFile
from starlette.requests import Request

from reelforge.errors import RequestError
from reelforge.request.model import ImageInput
from reelforge.request.check import surrogate_problem
from reelforge.server import video_wires, wire
from reelforge.server.errors import ApiError

MAX_FORM_FIELD = 64 * 1024  # bytes in one text field of a form (a prompt is at most a few thousand characters)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 in OpenAI's error shape, naming the parameter."""
    return ApiError(400, "ValidationException", message, param=param, detail=code)


async def read_fields(request: Request, allowed: set[str]) -> dict[str, Any]:
    """A form body (what the client sends) or a JSON one, as {field: text, or (file name, bytes, type)}.

    Nested JSON objects become the bracket names the client's ``extra_body`` sends in a form
    (``{"input_reference": {"image_url": ...}}`` is ``input_reference[image_url]``).
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    out: dict[str, Any] = {}
    if media == "application/json":
        doc = wire.parse_body(await request.body())
        if not isinstance(doc, dict):
            raise bad_request("The request body must be a JSON object.")
        pairs: list[tuple[str, Any]] = []
        for key, value in doc.items():
            pairs += [(f"{key}[{k}]", v) for k, v in value.items()] if isinstance(value, dict) else [(key, value)]
        for name, item in pairs:
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                raise bad_request(f"{name[:100]}: must be a string", param=name[:100])
            out[name] = str(item)
    elif media == "multipart/form-data":
        form = await request.form(max_files=2, max_fields=len(allowed) + 2, max_part_size=MAX_FORM_FIELD)
        for key, value in form.multi_items():
            if key in out:
                raise bad_request(f"{key}: given more than once; send it once", param=key)
            out[key] = (value.filename or "upload", await value.read(), value.content_type) if isinstance(value, UploadFile) else value
    else:
        raise ApiError(415, "ValidationException", f"The Content-Type is {media[:100]!r}; send the fields as multipart/form-data (what the openai client sends) or as a JSON object.")
    unknown = sorted(set(out) - allowed)
    if unknown:
        raise bad_request(f"{unknown[0][:100]}: unknown field; allowed: {', '.join(sorted(allowed))}", param=unknown[0][:100])
    for key, value in out.items():
        if isinstance(value, str):
            problem = surrogate_problem(value)
            if problem:
                raise bad_request(f"{key}: {problem}", param=key)
    return out


def text_field(fields: dict[str, Any], name: str, default: str | None = None) -> str | None:
    """A text field of the body (a file there is refused), or ``default``."""
    value = fields.get(name, default)
    if isinstance(value, tuple):
        raise bad_request(f"{name}: must be a text field, not a file", param=name)
    return value


def seconds_field(text: str, field: str = "seconds") -> int:
    """A whole number of seconds as the wire sends it (text)."""
    if not re.fullmatch(r"[0-9]{1,4}", text.strip()):
        raise RequestError(field, f"{text[:20]!r} is not a whole number of seconds, e.g. 4, 8 or 12")
    return int(text)


def reference_image(fields: dict[str, Any]) -> tuple[ImageInput | None, dict[str, Any] | None]:
    """The input_reference image, if any (a file, or a data: URL through extra_body), and what the job keeps of it."""
    if "input_reference[file_id]" in fields:
        raise RequestError("input_reference[file_id]", "this server has no Files API; send the image itself as input_reference (a file) or as a data: URL in input_reference[image_url]")
    value = fields.get("input_reference")
    if value is None and "input_reference[image_url]" in fields:
        url = fields["input_reference[image_url]"]
        if not url.startswith("data:"):
            raise RequestError("input_reference[image_url]", "this server fetches no URLs; send the image as a file (input_reference=open('ref.png', 'rb')) or as a data: URL")
        value = url
    if value is None:
        return None, None
    field = "input_reference[image_url]" if isinstance(value, str) else "input_reference"
    image = ImageInput.from_source(value if isinstance(value, str) else value[1], field)
    mime = value.partition(";")[0].removeprefix("data:") if isinstance(value, str) else value[2]
    return image, video_wires.describe_bytes(base64.b64decode(cast(str, image.bytes_b64)), mime or None)

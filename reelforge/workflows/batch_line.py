"""One line of a batch file (a JSONL object or a CSV row) as a pydantic model, and the request it becomes.

``parse_line(raw, defaults, folder)`` returns ``(model_id, VideoRequest)``, checked against the
model, or raises LineError naming the line's field in the file's words (``prompt``, ``duration``,
``image``...); the batch runner adds the file and the line number. CSV cells arrive as text, so the
whole-number fields also take ``"12"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictInt, StrictStr, ValidationError

from reelforge import config
from reelforge.engines.catalog import get_model
from reelforge.errors import ReelforgeError, RequestError
from reelforge.request import problems
from reelforge.request.check import check
from reelforge.request.images import FIT_MODES, FitMode
from reelforge.request.model import ImageInput, VideoRequest, parse_dimension

FIELDS = ("prompt", "text", "model", "duration", "fps", "resolution", "seed", "image", "fit")
_ORDER = {k: i for i, k in enumerate(("prompt", "text", "model", "duration", "fps", "seed", "resolution", "fit", "image"))}
# request fields (as check() names them) in the batch file's words
_NAMES = {
    "videoGenerationConfig.durationSeconds": "duration",
    "videoGenerationConfig.fps": "fps",
    "videoGenerationConfig.dimension": "resolution",
    "videoGenerationConfig.seed": "seed",
    "textToVideoParams.text": "prompt",
    "textToVideoParams.images[0]": "image",
    "modelId": "model",
}


class LineError(RequestError):
    """A batch line that cannot become a request; ``field`` is the line's field ("" for the whole line)."""


def _whole(value: Any) -> Any:
    """A CSV cell such as "12" or "-3" as the number it spells; anything else is left to StrictInt."""
    return int(value) if isinstance(value, str) and value.strip().lstrip("-").isdigit() else value


Whole = Annotated[StrictInt, BeforeValidator(_whole)]


class BatchLine(BaseModel):
    """The fields of one line; left-out fields take the batch's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: StrictStr | None = None  # required, as prompt or text (parse_line says so first)
    text: StrictStr | None = None
    model: Any = None
    duration: Whole = problems.omittable()
    fps: Whole = problems.omittable()
    seed: Whole = problems.omittable()
    resolution: Annotated[tuple[int, int], BeforeValidator(lambda v: parse_dimension(v, "resolution"))] = problems.omittable()
    fit: FitMode = problems.omittable()
    image: Any = None  # a path, relative to the batch file


def field_name(field_path: str) -> str:
    """A request field path (``videoGenerationConfig.fps``) in the batch file's words (``fps``)."""
    return _NAMES.get(field_path, field_path)


def parse_line(raw: Any, defaults: Mapping[str, Any], folder: Path) -> tuple[str, VideoRequest]:
    """One line as (model id, request), checked against its model; raises LineError naming the field."""
    if isinstance(raw, str):
        raw = {"prompt": raw}
    if not isinstance(raw, dict):
        raise LineError("", f"must be a JSON object with 'prompt' (or a JSON string), got {type(raw).__name__}")
    if "prompt" in raw and "text" in raw and not set(raw) - set(FIELDS):
        raise LineError("text", "give 'prompt' or 'text', not both")
    values = {**defaults, **raw}
    prompt = values.get("text") if values.get("prompt") is None else values["prompt"]
    if not set(raw) - set(FIELDS) and (not isinstance(prompt, str) or not prompt.strip()):
        raise LineError("prompt", "is required: the text of the video")
    try:
        line = BatchLine.model_validate(values)
    except ValidationError as exc:
        raise _problem(problems.first(exc.errors(), _ORDER, {"extra_forbidden": 0}, by_name=False)) from None
    model_id = line.model or config.DEFAULT_MODEL
    request = VideoRequest(**_request_fields(line, line.text if line.prompt is None else line.prompt, folder))
    try:
        check(request, get_model(model_id))
    except RequestError as exc:
        raise LineError(field_name(exc.field), exc.message) from None
    except ReelforgeError as exc:  # an unknown model id
        raise LineError("model", str(exc).removeprefix("modelId: ")) from None
    return model_id, request


def _request_fields(line: BatchLine, prompt: str | None, folder: Path) -> dict[str, Any]:
    fields: dict[str, Any] = {"text": prompt}
    for key, target in (("duration", "duration_s"), ("fps", "fps"), ("seed", "seed"), ("fit", "fit")):
        if getattr(line, key) is not None:
            fields[target] = getattr(line, key)
    if line.resolution is not None:
        fields["width"], fields["height"] = line.resolution
    if line.image is not None:
        fields["image"] = _image(Path(str(line.image)).expanduser(), folder)
    return fields


def _image(image: Path, folder: Path) -> ImageInput:
    image = image if image.is_absolute() else folder / image
    if not image.is_file():
        raise LineError("image", f"no file {image} (image paths are relative to the batch file)")
    try:
        return ImageInput.from_source(image, "image")
    except RequestError as exc:
        raise LineError("image", f"{image}: {exc.message}") from None


def _problem(err: Mapping[str, Any]) -> LineError:
    """One pydantic problem of a line in the file's words."""
    loc, kind, value = tuple(err["loc"]), err["type"], err.get("input")
    name = str(loc[0]) if loc else ""
    cause = (err.get("ctx") or {}).get("error")
    if kind == "extra_forbidden":
        return LineError(name, f"unknown field; allowed: {', '.join(FIELDS)}")
    if isinstance(cause, RequestError):
        return LineError(name, cause.message)
    if name in ("prompt", "text"):
        return LineError("prompt", "is required: the text of the video")
    if name == "fit":
        return LineError(name, f"{value!r} is not allowed; allowed: {', '.join(FIT_MODES)}")
    return LineError(name, f"must be a whole number, got {value!r}")

"""Nova Reel's ``modelInput`` JSON: its schema as pydantic models (one per ``taskType``) and the way back.

``parse(d)`` validates the JSON and returns the keyword arguments of a VideoRequest; every
problem is a RequestError naming its JSON path, in the words of ``_message``. ``model_input(r)``
writes a request back in the same form, so the two round-trip exactly.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictInt, StrictStr, Tag, TypeAdapter, ValidationError
from pydantic import BeforeValidator, model_validator

from reelforge.errors import RequestError
from reelforge.request import problems
from reelforge.request.limits import MULTI_SHOT_AUTOMATED, MULTI_SHOT_MANUAL, TASK_TYPES, TEXT_VIDEO

PARAMS_KEY = {
    TEXT_VIDEO: "textToVideoParams",
    MULTI_SHOT_AUTOMATED: "multiShotAutomatedParams",
    MULTI_SHOT_MANUAL: "multiShotManualParams",
}
_DIMENSION = re.compile(r"([0-9]{1,5})[xX]([0-9]{1,5})")


def parse_dimension(value: Any, field: str = "dimension") -> tuple[int, int]:
    """"1280x720" as (1280, 720); anything else is a RequestError naming ``field``."""
    m = _DIMENSION.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise RequestError(field, f"{value!r} is not a size; write WIDTHxHEIGHT, e.g. 1280x720")
    return int(m.group(1)), int(m.group(2))


class _Json(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# An optional key, when present, must hold a value (null included): problems.omittable() on a type without None.
class S3Location(_Json):
    uri: Annotated[StrictStr, Field(pattern=r"^s3://")]
    bucketOwner: StrictStr | None = None


class Source(_Json):
    bytes: StrictStr = problems.omittable(min_length=1)
    s3Location: S3Location = problems.omittable()

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if not isinstance(data, dict) or len(data) != 1 or not ({"bytes", "s3Location"} & set(data)):
            raise ValueError("must have exactly one of: bytes, s3Location")
        return data


class Image(_Json):
    format: Literal["png", "jpeg"]
    source: Source

    def fields(self) -> dict[str, Any]:
        loc = self.source.s3Location
        if loc is None:
            return {"format": self.format, "bytes_b64": self.source.bytes}
        return {"format": self.format, "s3_uri": loc.uri, "bucket_owner": loc.bucketOwner}


Dimension = Annotated[tuple[int, int], BeforeValidator(lambda v: parse_dimension(v, ""))]


class Config(_Json):
    dimension: Dimension
    fps: StrictInt
    seed: StrictInt = problems.omittable()
    durationSeconds: StrictInt


class ManualConfig(_Json):
    dimension: Dimension
    fps: StrictInt
    seed: StrictInt = problems.omittable()


class TextParams(_Json):
    text: StrictStr
    images: list[Image] = problems.omittable(min_length=1, max_length=1)


class AutomatedParams(_Json):
    text: StrictStr


class ShotJson(_Json):
    text: StrictStr
    image: Image = problems.omittable()
    durationSeconds: StrictInt = problems.omittable()
    seed: StrictInt = problems.omittable()


class ManualParams(_Json):
    shots: list[ShotJson]


class TextVideo(_Json):
    taskType: Literal["TEXT_VIDEO"]
    textToVideoParams: TextParams
    videoGenerationConfig: Config

    def fields(self) -> dict[str, Any]:
        p = self.textToVideoParams
        return {"text": p.text, "image": p.images[0].fields() if p.images else None}


class Automated(_Json):
    taskType: Literal["MULTI_SHOT_AUTOMATED"]
    multiShotAutomatedParams: AutomatedParams
    videoGenerationConfig: Config

    def fields(self) -> dict[str, Any]:
        return {"text": self.multiShotAutomatedParams.text}


class Manual(_Json):
    taskType: Literal["MULTI_SHOT_MANUAL"]
    multiShotManualParams: ManualParams
    videoGenerationConfig: ManualConfig

    def fields(self) -> dict[str, Any]:
        return {"shots": [
            {"text": s.text, "image": s.image.fields() if s.image else None, "duration_s": s.durationSeconds, "seed": s.seed}
            for s in self.multiShotManualParams.shots
        ]}


ModelInput = TypeAdapter(Annotated[
    Union[Annotated[TextVideo, Tag(TEXT_VIDEO)], Annotated[Automated, Tag(MULTI_SHOT_AUTOMATED)], Annotated[Manual, Tag(MULTI_SHOT_MANUAL)]],
    Discriminator(lambda d: d.get("taskType") if isinstance(d, dict) else None),
])
# which model an unknown key belongs to, by the name of the object that holds it
_OWNERS: dict[str, type[BaseModel]] = {
    "textToVideoParams": TextParams, "multiShotAutomatedParams": AutomatedParams, "multiShotManualParams": ManualParams,
    "shots": ShotJson, "images": Image, "image": Image, "source": Source, "s3Location": S3Location,
}


_FIELD_ORDER = {"videoGenerationConfig": 0, "dimension": 0, "fps": 1, "seed": 2, "durationSeconds": 3,
                "text": 0, "images": 1, "image": 1, "format": 0, "source": 1, "bytes": 0, "s3Location": 1}


def parse(d: Any) -> dict[str, Any]:
    """Nova Reel's ``modelInput`` as VideoRequest keyword arguments; every structural problem names its JSON path."""
    if not isinstance(d, dict):
        kind = "a string (pass a dict, not json.dumps(...))" if isinstance(d, str) else type(d).__name__
        raise RequestError("modelInput", f"must be a JSON object, got {kind}")
    try:
        parsed = ModelInput.validate_python(d)
    except ValidationError as exc:
        raise _first_problem(exc, d) from None
    cfg = parsed.videoGenerationConfig
    width, height = cfg.dimension
    duration = getattr(cfg, "durationSeconds", None)
    return {"task_type": parsed.taskType, "fps": cfg.fps, "width": width, "height": height, "seed": cfg.seed,
            "duration_s": duration, **parsed.fields()}


def _first_problem(exc: ValidationError, d: dict[str, Any]) -> RequestError:
    """The problem a reader meets first (problems.first); loc[0] is the taskType tag, dropped."""
    tags = [e for e in exc.errors() if e["type"] in ("union_tag_invalid", "union_tag_not_found")]
    errors = [dict(e, loc=e["loc"][1:]) for e in exc.errors()]
    return _message(tags[0] if tags else problems.first(errors, _FIELD_ORDER), d)


def _message(err: Mapping[str, Any], d: dict[str, Any]) -> RequestError:
    """One pydantic problem in reelforge's words: the JSON path, what is wrong and what is allowed."""
    kind, loc, value = err["type"], tuple(err["loc"]), err.get("input")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        task = d.get("taskType")
        said = "is required" if task is None else f"{task!r} is not allowed"
        return RequestError("taskType", f"{said}; allowed: {', '.join(TASK_TYPES)}")
    where = ("modelInput." if len(loc) == 1 and kind in problems.OWN else "") + problems.path(loc)
    if ("source" in loc[-2:] and kind == "extra_forbidden") or (loc[-1:] == ("source",) and kind != "missing"):
        return RequestError(problems.path(loc[: loc.index("source") + 1]), "must have exactly one of: bytes, s3Location")
    if kind == "missing":
        return RequestError(where, "is required")
    if kind == "extra_forbidden":
        return RequestError(where, f"unknown field; allowed: {', '.join(sorted(_owner(loc, d).model_fields))}")
    return RequestError(where, _what(kind, loc, value, err))


def _owner(loc: tuple[Any, ...], d: dict[str, Any]) -> type[BaseModel]:
    parent = next((p for p in reversed(loc[:-1]) if isinstance(p, str)), "")
    if parent in _OWNERS:
        return _OWNERS[parent]
    if parent == "videoGenerationConfig":
        return ManualConfig if d.get("taskType") == MULTI_SHOT_MANUAL else Config
    tops: dict[str, type[BaseModel]] = {TEXT_VIDEO: TextVideo, MULTI_SHOT_AUTOMATED: Automated}
    return tops.get(str(d.get("taskType")), Manual)


def _what(kind: str, loc: tuple[Any, ...], value: Any, err: Mapping[str, Any]) -> str:
    """What is wrong with a value that is there."""
    name = loc[-1] if loc else ""
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, RequestError):
        return cause.message
    if name == "images":
        return "must be a list with exactly one image"
    if name == "shots":
        return "must be a list of shots"
    if name == "bytes":
        return "must be a non-empty base64 string"
    if name == "uri" and kind != "string_type":
        return "must be an s3:// URI"
    if kind == "int_type":
        return f"must be a whole number, got {value!r}"
    if kind == "string_type":
        return "must be an s3:// URI" if name == "uri" else f"must be a string, got {type(value).__name__}"
    if kind == "literal_error":
        allowed = ", ".join(re.findall(r"'([^']*)'", (err.get("ctx") or {}).get("expected", "")))
        return f"{value!r} is not allowed; allowed: {allowed}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a JSON object, got {type(value).__name__}"
    return str(err["msg"])


def model_input(request: Any) -> dict[str, Any]:
    """A VideoRequest as Nova Reel's ``modelInput`` (what ``parse`` reads back)."""
    cfg: dict[str, Any] = {}
    if request.task_type != MULTI_SHOT_MANUAL:
        cfg["durationSeconds"] = request.duration_s
    cfg["fps"] = request.fps
    cfg["dimension"] = f"{request.width}x{request.height}"
    if request.seed is not None:
        cfg["seed"] = request.seed
    if request.task_type == TEXT_VIDEO:
        params: dict[str, Any] = {"text": request.text}
        if request.image is not None:
            params["images"] = [request.image.to_json()]
    elif request.task_type == MULTI_SHOT_AUTOMATED:
        params = {"text": request.text}
    else:
        params = {"shots": [_shot_json(s) for s in request.shots or []]}
    return {"taskType": request.task_type, PARAMS_KEY[request.task_type]: params, "videoGenerationConfig": cfg}


def _shot_json(shot: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"text": shot.text}
    if shot.image is not None:
        d["image"] = shot.image.to_json()
    if shot.duration_s is not None:
        d["durationSeconds"] = shot.duration_s
    if shot.seed is not None:
        d["seed"] = shot.seed
    return d

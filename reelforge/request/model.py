"""VideoRequest: what to make, in Nova Reel's three task types, checked against a model's limits.

``VideoRequest.from_model_input(d)`` and ``.to_model_input()`` round-trip Nova Reel's
``modelInput`` JSON exactly; ``check(request, spec)`` applies one model's limits and decodes
the images, so nothing invalid reaches the job log.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from reelforge.errors import ImageError, RequestError
from reelforge.request import images as imagelib
from reelforge.request import nova_json, problems
from reelforge.request.images import FitMode
from reelforge.request.limits import DEFAULT_SEED, MULTI_SHOT_MANUAL, TEXT_VIDEO
from reelforge.request.nova_json import PARAMS_KEY, parse_dimension

__all__ = ["PARAMS_KEY", "FitMode", "ImageInput", "Shot", "VideoRequest", "parse_dimension"]


class _Model(BaseModel):
    """A model whose construction errors are RequestErrors naming the field, never pydantic's ValidationError."""

    def __init__(self, /, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _request_error(exc, type(self)) from None

    @classmethod
    def model_validate(cls, obj: Any, **kw: Any):
        try:
            return super().model_validate(obj, **kw)
        except ValidationError as exc:
            raise _request_error(exc, cls) from None


class ImageInput(_Model):
    """A conditioning image as Nova Reel carries it: base64 bytes or an S3 location."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["png", "jpeg"]
    bytes_b64: str | None = None
    s3_uri: str | None = None
    bucket_owner: str | None = None

    @classmethod
    def from_source(cls, source: str | os.PathLike | bytes, field: str = "image") -> "ImageInput":
        """Read a path, raw bytes, base64 text or data URI; the format is detected, not trusted."""
        data = imagelib.read_image_source(source, field)
        # Header and checksums only: pixels are decoded once, by check(), against the video's size.
        fmt: Literal["png", "jpeg"] = "jpeg" if imagelib.inspect_image(data, field) == "JPEG" else "png"
        return cls(format=fmt, bytes_b64=imagelib.to_base64(data))

    def to_json(self) -> dict[str, Any]:
        if self.bytes_b64 is not None:
            return {"format": self.format, "source": {"bytes": self.bytes_b64}}
        loc: dict[str, Any] = {"uri": self.s3_uri}
        if self.bucket_owner:
            loc["bucketOwner"] = self.bucket_owner
        return {"format": self.format, "source": {"s3Location": loc}}


class Shot(_Model):
    """One shot of a MULTI_SHOT_MANUAL request; duration and seed are for local engines only."""

    model_config = ConfigDict(extra="forbid")

    text: str
    image: ImageInput | None = None
    duration_s: int | None = None
    seed: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _image_from_source(cls, data: Any) -> Any:
        return _coerce_image(data)


class VideoRequest(_Model):
    """A video to make. ``task_type`` follows from the fields when left out.

    Either ``text`` (with an optional ``image``) or ``shots``, never both. Every bad field raises
    RequestError (ImageError for images) naming it.
    """

    model_config = ConfigDict(extra="forbid")

    task_type: Literal["TEXT_VIDEO", "MULTI_SHOT_AUTOMATED", "MULTI_SHOT_MANUAL"] = TEXT_VIDEO
    text: str | None = None
    image: ImageInput | None = None
    shots: list[Shot] | None = None
    duration_s: int | None = 6
    fps: int = 24
    width: int = 1280
    height: int = 720
    seed: int | None = None
    fit: FitMode | None = None  # how to bring an image of another size to width x height

    @model_validator(mode="before")
    @classmethod
    def _infer(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = _coerce_image(dict(data))
        if data.get("shots") is not None and "task_type" not in data:
            data["task_type"] = MULTI_SHOT_MANUAL
        if data.get("task_type") == MULTI_SHOT_MANUAL and "duration_s" not in data:
            data["duration_s"] = None
        if "dimension" in data:
            data["width"], data["height"] = parse_dimension(data.pop("dimension"))
        return data

    @model_validator(mode="after")
    def _text_or_shots(self) -> "VideoRequest":
        if self.task_type == MULTI_SHOT_MANUAL:
            for name in ("text", "image"):
                if getattr(self, name) is not None:
                    raise RequestError(
                        name, f"a request with shots takes no {name} of its own; give each shot its text and image: "
                        "shots=[{'text': ..., 'image': ...}], or leave shots out"
                    )
        elif self.shots is not None:
            raise RequestError("shots", f"only MULTI_SHOT_MANUAL requests have shots; this one is {self.task_type}: leave task_type or shots out")
        return self

    # --- Nova Reel JSON -------------------------------------------------------------------
    @classmethod
    def from_model_input(cls, d: Any) -> "VideoRequest":
        """Parse Nova Reel's ``modelInput``; every structural problem names its JSON path."""
        return cls(**nova_json.parse(d))

    def to_model_input(self) -> dict[str, Any]:
        return nova_json.model_input(self)

    # --- derived -----------------------------------------------------------------------------
    @property
    def effective_seed(self) -> int:
        return DEFAULT_SEED if self.seed is None else self.seed

    def shot_texts(self) -> list[str]:
        if self.task_type == MULTI_SHOT_MANUAL:
            return [s.text for s in self.shots or []]
        return [self.text or ""]


def _request_error(exc: ValidationError, model: type[BaseModel]) -> RequestError:
    """pydantic's first problem as a RequestError naming the field (a RequestError raised inside is kept)."""
    found = exc.errors()
    err = found[0]
    loc = [p for p in err["loc"] if p != "__root__"]
    path = problems.path(loc)
    more = f" (and {len(found) - 1} more problem{'s' if len(found) > 2 else ''})" if len(found) > 1 else ""
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, RequestError):
        if not path:
            return cause
        return type(cause)(f"{path}.{cause.field}", cause.message) if type(cause) in (RequestError, ImageError) else cause
    if err["type"] == "extra_forbidden":
        owners: dict[str, type[BaseModel]] = {"shots": Shot, "image": ImageInput}
        owner = owners.get(next((p for p in reversed(loc[:-1]) if isinstance(p, str)), ""), model)
        return RequestError(path, f"unknown field; allowed: {', '.join(owner.model_fields)}{more}")
    if err["type"] == "missing":
        return RequestError(path or "request", f"is required{more}")
    message = str(err["msg"]).removeprefix("Value error, ")
    got = f", got {err['input']!r}"[:120] if "input" in err and not isinstance(err["input"], (dict, list)) else ""
    return RequestError(path or "request", f"{message[:1].lower()}{message[1:]}{got}{more}")


def _coerce_image(data: Any) -> Any:
    if isinstance(data, dict) and data.get("image") is not None and not isinstance(data["image"], (ImageInput, dict)):
        data = dict(data)
        data["image"] = ImageInput.from_source(data["image"])
    return data



"""VideoRequest: what to make, in Nova Reel's three task types, checked against a model's limits.

``VideoRequest.from_model_input(d)`` and ``.to_model_input()`` round-trip Nova Reel's
``modelInput`` JSON exactly; ``check(request, spec)`` applies one model's limits and decodes
the images, so nothing invalid reaches the job log.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from reelforge.request import images as imagelib
from reelforge.errors import ImageError, RequestError
from reelforge.request.limits import (
    DEFAULT_SEED,
    MULTI_SHOT_AUTOMATED,
    MULTI_SHOT_MANUAL,
    SEED_MAX,
    TASK_TYPES,
    TEXT_VIDEO,
    ModelSpec,
)

PARAMS_KEY = {
    TEXT_VIDEO: "textToVideoParams",
    MULTI_SHOT_AUTOMATED: "multiShotAutomatedParams",
    MULTI_SHOT_MANUAL: "multiShotManualParams",
}
_DIMENSION = re.compile(r"([0-9]{1,5})[xX]([0-9]{1,5})")
FitMode = Literal["crop", "pad"]


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
        fmt = "jpeg" if imagelib.inspect_image(data, field) == "JPEG" else "png"
        return cls(format=fmt, bytes_b64=imagelib.to_base64(data))

    @classmethod
    def from_json(cls, d: Any, field: str) -> "ImageInput":
        obj = _obj(d, field, required={"format", "source"}, optional=set())
        fmt = obj["format"]
        if fmt not in ("png", "jpeg"):
            raise RequestError(f"{field}.format", f"{fmt!r} is not allowed; allowed: png, jpeg")
        src = obj["source"]
        if not isinstance(src, dict) or len(src) != 1 or not ({"bytes", "s3Location"} & set(src)):
            raise RequestError(f"{field}.source", "must have exactly one of: bytes, s3Location")
        if "bytes" in src:
            if not isinstance(src["bytes"], str) or not src["bytes"]:
                raise RequestError(f"{field}.source.bytes", "must be a non-empty base64 string")
            return cls(format=fmt, bytes_b64=src["bytes"])
        loc = _obj(src["s3Location"], f"{field}.source.s3Location", required={"uri"}, optional={"bucketOwner"})
        if not isinstance(loc["uri"], str) or not loc["uri"].startswith("s3://"):
            raise RequestError(f"{field}.source.s3Location.uri", "must be an s3:// URI")
        return cls(format=fmt, s3_uri=loc["uri"], bucket_owner=loc.get("bucketOwner"))

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
        if not isinstance(d, dict):
            kind = "a string (pass a dict, not json.dumps(...))" if isinstance(d, str) else type(d).__name__
            raise RequestError("modelInput", f"must be a JSON object, got {kind}")
        task = d.get("taskType")
        if task is None:
            raise RequestError("taskType", f"is required; allowed: {', '.join(TASK_TYPES)}")
        if task not in TASK_TYPES:
            raise RequestError("taskType", f"{task!r} is not allowed; allowed: {', '.join(TASK_TYPES)}")
        key = PARAMS_KEY[task]
        top = _obj(d, "modelInput", required={"taskType", key, "videoGenerationConfig"}, optional=set())
        cfg_required = {"fps", "dimension"} | ({"durationSeconds"} if task != MULTI_SHOT_MANUAL else set())
        cfg = _obj(top["videoGenerationConfig"], "videoGenerationConfig", required=cfg_required, optional={"seed"})
        width, height = parse_dimension(cfg["dimension"], "videoGenerationConfig.dimension")
        fields: dict[str, Any] = dict(
            task_type=task,
            fps=_int(cfg["fps"], "videoGenerationConfig.fps"),
            width=width,
            height=height,
            seed=_int(cfg["seed"], "videoGenerationConfig.seed") if "seed" in cfg else None,
            duration_s=_int(cfg["durationSeconds"], "videoGenerationConfig.durationSeconds")
            if "durationSeconds" in cfg
            else None,
        )
        params = top[key]
        if task == TEXT_VIDEO:
            p = _obj(params, key, required={"text"}, optional={"images"})
            fields["text"] = _str(p["text"], f"{key}.text")
            if "images" in p:
                imgs = p["images"]
                if not isinstance(imgs, list) or len(imgs) != 1:
                    raise RequestError(f"{key}.images", "must be a list with exactly one image")
                fields["image"] = ImageInput.from_json(imgs[0], f"{key}.images[0]")
        elif task == MULTI_SHOT_AUTOMATED:
            p = _obj(params, key, required={"text"}, optional=set())
            fields["text"] = _str(p["text"], f"{key}.text")
        else:
            p = _obj(params, key, required={"shots"}, optional=set())
            if not isinstance(p["shots"], list):
                raise RequestError(f"{key}.shots", "must be a list of shots")
            shots = []
            for i, s in enumerate(p["shots"]):
                f = f"{key}.shots[{i}]"
                o = _obj(s, f, required={"text"}, optional={"image", "durationSeconds", "seed"})
                shots.append(
                    Shot(
                        text=_str(o["text"], f"{f}.text"),
                        image=ImageInput.from_json(o["image"], f"{f}.image") if "image" in o else None,
                        duration_s=_int(o["durationSeconds"], f"{f}.durationSeconds") if "durationSeconds" in o else None,
                        seed=_int(o["seed"], f"{f}.seed") if "seed" in o else None,
                    )
                )
            fields["shots"] = shots
        return cls(**fields)

    def to_model_input(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {}
        if self.task_type != MULTI_SHOT_MANUAL:
            cfg["durationSeconds"] = self.duration_s
        cfg["fps"] = self.fps
        cfg["dimension"] = f"{self.width}x{self.height}"
        if self.seed is not None:
            cfg["seed"] = self.seed
        key = PARAMS_KEY[self.task_type]
        if self.task_type == TEXT_VIDEO:
            params: dict[str, Any] = {"text": self.text}
            if self.image is not None:
                params["images"] = [self.image.to_json()]
        elif self.task_type == MULTI_SHOT_AUTOMATED:
            params = {"text": self.text}
        else:
            shots = []
            for s in self.shots or []:
                d: dict[str, Any] = {"text": s.text}
                if s.image is not None:
                    d["image"] = s.image.to_json()
                if s.duration_s is not None:
                    d["durationSeconds"] = s.duration_s
                if s.seed is not None:
                    d["seed"] = s.seed
                shots.append(d)
            params = {"shots": shots}
        return {"taskType": self.task_type, key: params, "videoGenerationConfig": cfg}

    # --- derived -----------------------------------------------------------------------------
    @property
    def effective_seed(self) -> int:
        return DEFAULT_SEED if self.seed is None else self.seed

    def shot_texts(self) -> list[str]:
        if self.task_type == MULTI_SHOT_MANUAL:
            return [s.text for s in self.shots or []]
        return [self.text or ""]


def parse_dimension(value: Any, field: str = "dimension") -> tuple[int, int]:
    m = _DIMENSION.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise RequestError(field, f"{value!r} is not a size; write WIDTHxHEIGHT, e.g. 1280x720")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class ShotSpec:
    """What one shot of a checked request asks for (images decoded and fitted)."""

    text: str
    seed: int
    duration_s: int
    image: Any = None  # PIL RGB image at the video size, or None
    adaptation: dict[str, Any] | None = None  # how the image was fitted to the video size, if it was


def check(
    request: VideoRequest,
    spec: ModelSpec,
    fetch_s3: Callable[[str, str | None], bytes] | None = None,
) -> tuple[VideoRequest, list[ShotSpec]]:
    """Apply ``spec``'s limits to ``request``; return it (images fitted when asked) and its shots.

    Raises RequestError naming the field and the allowed values. Nothing is written anywhere.
    """
    lim = spec.limits
    mid = spec.model_id
    t = request.task_type
    if t not in lim.task_types:
        hint = " (multi-shot needs amazon.nova-reel-v1:1)" if mid == "amazon.nova-reel-v1:0" else ""
        raise RequestError("taskType", f"{t} is not supported by {mid}; allowed: {', '.join(lim.task_types)}{hint}")
    if request.fps not in lim.fps:
        raise RequestError("videoGenerationConfig.fps", f"{request.fps} is not allowed for {mid}; allowed: {_list(lim.fps)}")
    size = (request.width, request.height)
    if lim.sizes is not None:
        if size not in lim.sizes:
            raise RequestError(
                "videoGenerationConfig.dimension",
                f"{request.width}x{request.height} is not allowed for {mid}; allowed: {lim.allowed_sizes_text()}",
            )
    elif not all(64 <= v <= lim.max_side and v % 2 == 0 for v in size):
        raise RequestError(
            "videoGenerationConfig.dimension",
            f"{request.width}x{request.height} is not allowed for {mid}; allowed: {lim.allowed_sizes_text()}",
        )
    seed = request.effective_seed
    if not 0 <= seed <= lim.seed_max:
        raise RequestError("videoGenerationConfig.seed", f"{seed} is out of range; allowed: 0 to {lim.seed_max}")

    def image(img: ImageInput | None, field: str) -> tuple[Any, ImageInput | None, dict[str, Any] | None]:
        return _check_image(img, field, request, spec, fetch_s3)

    prepared = request
    if t == TEXT_VIDEO:
        key = "textToVideoParams"
        _check_text(request.text, f"{key}.text", lim.text_max)
        allowed = lim.text_video_durations
        d = request.duration_s
        if allowed is not None and d not in allowed:
            raise RequestError("videoGenerationConfig.durationSeconds", f"{d} is not allowed for {mid} {t}; allowed: {_list(allowed)}")
        lo, hi = lim.duration_range
        if allowed is None and (d is None or not lo <= d <= hi):
            raise RequestError("videoGenerationConfig.durationSeconds", f"{d} is not allowed for {mid}; allowed: {lo} to {hi}")
        pil, fitted, adapted = image(request.image, f"{key}.images[0]")
        if fitted is not None:
            prepared = request.model_copy(update={"image": fitted})
        shots = [ShotSpec(request.text or "", seed, d, pil, adapted)]
    elif t == MULTI_SHOT_AUTOMATED:
        _check_text(request.text, "multiShotAutomatedParams.text", lim.automated_text_max)
        if request.image is not None:
            raise RequestError("image", f"{t} takes no image; use TEXT_VIDEO or MULTI_SHOT_MANUAL shots with images")
        d = request.duration_s
        if d not in lim.automated_durations:
            raise RequestError("videoGenerationConfig.durationSeconds", f"{d} is not allowed for {mid} {t}; allowed: {_list(lim.automated_durations)}")
        shots = [ShotSpec(text, _shot_seed(seed, i), secs, None) for i, (text, secs) in enumerate(split_automated(request.text or "", d, lim.shot_seconds))]
    else:
        key = "multiShotManualParams.shots"
        n = len(request.shots or [])
        if not 1 <= n <= lim.max_shots:
            raise RequestError(key, f"{n} shots given; allowed: 1 to {lim.max_shots} shots of {lim.shot_seconds} s each")
        if request.duration_s is not None:
            raise RequestError("videoGenerationConfig.durationSeconds", f"not used by {t}: each shot lasts {lim.shot_seconds} s; leave it out")
        shots, fitted_shots = [], []
        for i, s in enumerate(request.shots or []):
            f = f"{key}[{i}]"
            _check_text(s.text, f"{f}.text", lim.text_max)
            secs = lim.shot_seconds
            if s.duration_s is not None:
                if lim.shot_durations is None:
                    raise RequestError(f"{f}.durationSeconds", f"every shot on {mid} lasts {lim.shot_seconds} s; leave the shot's duration out (or use a local model id such as reelforge.animatic-v1)")
                if s.duration_s not in lim.shot_durations:
                    raise RequestError(f"{f}.durationSeconds", f"{s.duration_s} is not allowed; allowed: {_list(lim.shot_durations)}")
                secs = s.duration_s
            shot_seed = _shot_seed(seed, i)
            if s.seed is not None:
                if lim.shot_durations is None:  # Nova's schema has no per-shot seed
                    raise RequestError(f"{f}.seed", f"per-shot seeds are not part of {mid}'s request format; use a local model id")
                if not 0 <= s.seed <= lim.seed_max:
                    raise RequestError(f"{f}.seed", f"{s.seed} is out of range; allowed: 0 to {lim.seed_max}")
                shot_seed = s.seed
            pil, fitted, adapted = image(s.image, f"{f}.image")
            fitted_shots.append(s.model_copy(update={"image": fitted}) if fitted is not None else s)
            shots.append(ShotSpec(s.text, shot_seed, secs, pil, adapted))
        if any(a is not b for a, b in zip(fitted_shots, request.shots or [])):
            prepared = request.model_copy(update={"shots": fitted_shots})
    total = sum(s.duration_s for s in shots)
    if total > lim.duration_range[1]:
        raise RequestError("videoGenerationConfig.durationSeconds", f"the video would last {total} s; allowed: at most {lim.duration_range[1]} s")
    return prepared, shots


def check_served(request: VideoRequest, shots: list[ShotSpec], spec: ModelSpec, served: ModelSpec, via: str | None) -> None:
    """A request already checked against ``spec`` (the id it names), checked against the model that
    really renders it (``served``: a Nova Reel id served by another model), before a job exists.

    Raises RequestError naming the field, what the serving model allows, and why that model serves it.
    """
    lim = served.limits
    why = f"{spec.model_id} is served here by {served.model_id}" + (f" ({via})" if via else "")
    t = request.task_type
    if t not in lim.task_types:
        raise RequestError("taskType", f"{t} is not allowed: {why}, which allows {', '.join(lim.task_types)}")
    if request.fps not in lim.fps:
        raise RequestError("videoGenerationConfig.fps", f"{request.fps} is not allowed: {why}, which allows {_list(lim.fps)}")
    w, h = request.width, request.height
    if (lim.sizes is not None and (w, h) not in lim.sizes) or (lim.sizes is None and not all(64 <= v <= lim.max_side for v in (w, h))):
        raise RequestError("videoGenerationConfig.dimension", f"{w}x{h} is not allowed: {why}, which allows {lim.allowed_sizes_text()}")
    manual = t == MULTI_SHOT_MANUAL
    allowed = lim.shot_durations if t != TEXT_VIDEO else lim.text_video_durations
    for i, shot in enumerate(shots):
        where = f"multiShotManualParams.shots[{i}]" if manual else "textToVideoParams" if t == TEXT_VIDEO else "multiShotAutomatedParams"
        if shot.image is not None and not lim.image_input:
            field = f"{where}.image" if manual else "textToVideoParams.images[0]"
            raise ImageError(field, f"no image is allowed: {why}, which is text-to-video only; remove it or serve {spec.model_id} with a model that takes images")
        if len(shot.text) > lim.text_max:
            raise RequestError(f"{where}.text", f"{len(shot.text)} characters are too many: {why}, which reads up to {lim.text_max}")
        if allowed is not None and shot.duration_s not in allowed:
            field = f"{where}.durationSeconds" if manual else "videoGenerationConfig.durationSeconds"
            say = f"shots of {shot.duration_s} s are" if t != TEXT_VIDEO else f"{shot.duration_s} s is"
            raise RequestError(field, f"{say} not allowed: {why}, which allows {_list(allowed)} s")


def split_automated(text: str, duration_s: int, shot_seconds: int) -> list[tuple[str, int]]:
    """Split one long MULTI_SHOT_AUTOMATED prompt into shots of ``shot_seconds``.

    Sentences are dealt out in order over ``duration_s // shot_seconds`` shots as evenly as
    possible; with fewer sentences than shots, the last sentences repeat their neighbour's text.
    A remainder shorter than one shot is added to the last shot.
    """
    n = max(1, duration_s // shot_seconds)
    sentences = [s.strip() for s in re.split(r"(?<=[.!?;])\s+", text.strip()) if s.strip()] or [text]
    out = []
    for i in range(n):
        lo = i * len(sentences) // n
        hi = max(lo + 1, (i + 1) * len(sentences) // n)
        out.append(" ".join(sentences[min(lo, len(sentences) - 1) : hi]))
    secs = [shot_seconds] * n
    secs[-1] += duration_s - n * shot_seconds
    return list(zip(out, secs))


def _shot_seed(seed: int, index: int) -> int:
    """Per-shot seed derived from the request seed; shot 0 uses the request seed itself."""
    return (seed + index * 7919) % (SEED_MAX + 1)


def _check_image(img, field, request: VideoRequest, spec: ModelSpec, fetch_s3):
    """Decode and validate one image; return (PIL image at video size, ImageInput to store or None, adaptation or None).

    A fit the caller asked for is stored (the job renders the image it recorded); a model that
    fits images by itself (no exact size) keeps the original and crops it the same way each time.
    """
    if img is None:
        return None, None, None
    if not spec.limits.image_input:
        raise ImageError(field, f"{spec.model_id} is text-to-video only and takes no image; remove it or pick a model that does (reelforge models)")
    if img.bytes_b64 is not None:
        data = imagelib.decode_base64(img.bytes_b64, f"{field}.source.bytes")
    elif fetch_s3 is not None:
        data = fetch_s3(img.s3_uri, img.bucket_owner)
    else:
        raise ImageError(f"{field}.source.s3Location", "S3 image locations need a server with S3 access; send the image bytes instead")
    want = (request.width, request.height)
    pil = imagelib.open_image(data, field, declared_format=img.format, frame=want)
    exact = spec.limits.image_exact_size
    transparent = bool(pil.info.get("reelforge_had_alpha"))
    if pil.size == want and not (exact and transparent):
        return pil, None, None
    if exact and request.fit is None:
        if pil.size != want:
            what, fix = f"is {pil.size[0]}x{pil.size[1]}", f"resize it to {want[0]}x{want[1]}"
        else:
            what, fix = "has transparent pixels", "flatten it onto a background"
        raise ImageError(
            field,
            f"image {what}; {spec.model_id} needs an opaque {want[0]}x{want[1]} PNG or JPEG: {fix}, "
            "or ask reelforge to fit it (crop or pad; it also flattens): --fit crop|pad for generate, "
            "fit: crop|pad in a storyboard or batch line, VideoRequest(fit='crop') in Python",
        )
    mode = request.fit or "crop"
    fitted = imagelib.fit_image(pil, want[0], want[1], mode)
    stored = ImageInput(format="png", bytes_b64=imagelib.to_base64(imagelib.encode_png(fitted))) if exact or request.fit else None
    return fitted, stored, _fit_note(field, pil.size, want, mode, asked=request.fit is not None, flattened=transparent)


def _fit_note(field: str, size: tuple[int, int], want: tuple[int, int], mode: str, *, asked: bool, flattened: bool) -> dict[str, Any]:
    """What fitting an image of ``size`` to ``want`` did, for the manifest: "scaled to 720x720, 560 px of bars"."""
    (w, h), (tw, th) = size, want
    scale = (max if mode == "crop" else min)(tw / w, th / h)
    sw, sh = round(w * scale), round(h * scale)
    edges = "left and right" if sw != tw else "top and bottom"
    extra = abs(sw - tw) or abs(sh - th)
    if (w, h) == (tw, th):
        how = "size kept"
    elif not extra:
        how = f"scaled to {tw}x{th}"
    elif mode == "crop":
        how = f"scaled to {sw}x{sh}, then {extra} px cut off the {edges}"
    else:
        how = f"scaled to {sw}x{sh}, then {extra} px of black bars added at the {edges}"
    if flattened:
        how += "; transparent pixels flattened onto black"
    return {"field": field, "fit": mode, "asked": asked, "from": f"{w}x{h}", "to": f"{tw}x{th}", "how": how}


def _check_text(text: str | None, field: str, limit: int) -> None:
    if text is None or not text.strip():
        raise RequestError(field, f"is empty; allowed: 1 to {limit} characters")
    if len(text) > limit:
        raise RequestError(field, f"has {len(text)} characters; allowed: 1 to {limit}")
    problem = surrogate_problem(text)
    if problem:
        raise RequestError(field, problem)


def surrogate_problem(text: str) -> str | None:
    """What is wrong with ``text`` when it holds a lone UTF-16 surrogate (JSON's "\\ud800"), which no UTF-8 store or wire can carry."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains \\u{ord(text[exc.start]):04x}, a lone UTF-16 surrogate, which is not a character; send valid Unicode text"
    return None


def _request_error(exc: ValidationError, model: type[BaseModel]) -> RequestError:
    """pydantic's first problem as a RequestError naming the field (a RequestError raised inside is kept)."""
    problems = exc.errors()
    err = problems[0]
    loc = [p for p in err["loc"] if p != "__root__"]
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, RequestError):
        if not path:
            return cause
        return type(cause)(f"{path}.{cause.field}", cause.message) if type(cause) in (RequestError, ImageError) else cause
    if err["type"] == "extra_forbidden":
        owner = {"shots": Shot, "image": ImageInput}.get(next((p for p in reversed(loc[:-1]) if isinstance(p, str)), ""), model)
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


def _obj(d: Any, field: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise RequestError(field, f"must be a JSON object, got {type(d).__name__}")
    missing = sorted(required - set(d))
    if missing:
        raise RequestError(f"{field}.{missing[0]}", "is required")
    unknown = sorted(set(d) - required - optional)
    if unknown:
        allowed = ", ".join(sorted(required | optional))
        raise RequestError(f"{field}.{unknown[0]}", f"unknown field; allowed: {allowed}")
    return d


def _int(v: Any, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise RequestError(field, f"must be a whole number, got {v!r}")
    return v


def _str(v: Any, field: str) -> str:
    if not isinstance(v, str):
        raise RequestError(field, f"must be a string, got {type(v).__name__}")
    return v


def _list(values) -> str:
    values = list(values)
    if len(values) > 6 and all(b - a == values[1] - values[0] for a, b in zip(values, values[1:])):
        step = values[1] - values[0]
        return f"{values[0]} to {values[-1]}" + (f" in steps of {step}" if step != 1 else "")
    return ", ".join(str(v) for v in values)

"""check(): one model's limits applied to a VideoRequest, one small function per task type.

``check(request, spec)`` decodes and fits the images and returns the shots a job renders, so
nothing invalid reaches the job log; ``check_served`` re-checks against the model that really
serves a Bedrock id. Every refusal is a RequestError (ImageError for images) naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from reelforge.errors import ImageError, RequestError
from reelforge.request import images as imagelib
from reelforge.request.limits import MULTI_SHOT_AUTOMATED, MULTI_SHOT_MANUAL, SEED_MAX, TEXT_VIDEO, Limits, ModelSpec
from reelforge.request.model import ImageInput, Shot, VideoRequest

FetchS3 = Callable[[str, "str | None"], bytes]
DURATION = "videoGenerationConfig.durationSeconds"


@dataclass(frozen=True)
class ShotSpec:
    """What one shot of a checked request asks for (images decoded and fitted)."""

    text: str
    seed: int
    duration_s: int
    image: Any = None  # PIL RGB image at the video size, or None
    adaptation: dict[str, Any] | None = None  # how the image was fitted to the video size, if it was


def check(request: VideoRequest, spec: ModelSpec, fetch_s3: FetchS3 | None = None) -> tuple[VideoRequest, list[ShotSpec]]:
    """Apply ``spec``'s limits to ``request``; return it (images fitted when asked) and its shots.

    Raises RequestError naming the field and the allowed values. Nothing is written anywhere.
    """
    _check_video(request, spec)
    by_task = {TEXT_VIDEO: _check_text_video, MULTI_SHOT_AUTOMATED: _check_automated, MULTI_SHOT_MANUAL: _check_manual}
    prepared, shots = by_task[request.task_type](request, spec, fetch_s3)
    total = sum(s.duration_s for s in shots)
    if total > spec.limits.duration_range[1]:
        raise RequestError(DURATION, f"the video would last {total} s; allowed: at most {spec.limits.duration_range[1]} s")
    return prepared, shots


def _check_video(request: VideoRequest, spec: ModelSpec) -> None:
    """What every task type shares: the task type itself, fps, size and seed."""
    lim, mid, t = spec.limits, spec.model_id, request.task_type
    if t not in lim.task_types:
        hint = " (multi-shot needs amazon.nova-reel-v1:1)" if mid == "amazon.nova-reel-v1:0" else ""
        raise RequestError("taskType", f"{t} is not supported by {mid}; allowed: {', '.join(lim.task_types)}{hint}")
    if request.fps not in lim.fps:
        raise RequestError("videoGenerationConfig.fps", f"{request.fps} is not allowed for {mid}; allowed: {allowed_values(lim.fps)}")
    if not _size_allowed(lim, request.width, request.height, even=True):
        raise RequestError(
            "videoGenerationConfig.dimension",
            f"{request.width}x{request.height} is not allowed for {mid}; allowed: {lim.allowed_sizes_text()}",
        )
    seed = request.effective_seed
    if not 0 <= seed <= lim.seed_max:
        raise RequestError("videoGenerationConfig.seed", f"{seed} is out of range; allowed: 0 to {lim.seed_max}")


def _size_allowed(lim: Limits, w: int, h: int, *, even: bool) -> bool:
    if lim.sizes is not None:
        return (w, h) in lim.sizes
    return all(64 <= v <= lim.max_side and (v % 2 == 0 or not even) for v in (w, h))


def _check_text_video(request: VideoRequest, spec: ModelSpec, fetch_s3: FetchS3 | None) -> tuple[VideoRequest, list[ShotSpec]]:
    lim, mid, t = spec.limits, spec.model_id, request.task_type
    key = "textToVideoParams"
    _check_text(request.text, f"{key}.text", lim.text_max)
    allowed, d = lim.text_video_durations, request.duration_s
    if allowed is not None and d not in allowed:
        raise RequestError(DURATION, f"{d} is not allowed for {mid} {t}; allowed: {allowed_values(allowed)}")
    lo, hi = lim.duration_range
    if allowed is None and (d is None or not lo <= d <= hi):
        raise RequestError(DURATION, f"{d} is not allowed for {mid}; allowed: {lo} to {hi}")
    assert d is not None
    pil, fitted, adapted = _check_image(request.image, f"{key}.images[0]", request, spec, fetch_s3)
    prepared = request.model_copy(update={"image": fitted}) if fitted is not None else request
    return prepared, [ShotSpec(request.text or "", request.effective_seed, d, pil, adapted)]


def _check_automated(request: VideoRequest, spec: ModelSpec, fetch_s3: FetchS3 | None) -> tuple[VideoRequest, list[ShotSpec]]:
    lim, mid, t = spec.limits, spec.model_id, request.task_type
    _check_text(request.text, "multiShotAutomatedParams.text", lim.automated_text_max)
    if request.image is not None:
        raise RequestError("image", f"{t} takes no image; use TEXT_VIDEO or MULTI_SHOT_MANUAL shots with images")
    d = request.duration_s
    if d not in lim.automated_durations:
        raise RequestError(DURATION, f"{d} is not allowed for {mid} {t}; allowed: {allowed_values(lim.automated_durations)}")
    assert d is not None
    seed = request.effective_seed
    parts = split_automated(request.text or "", d, lim.shot_seconds)
    return request, [ShotSpec(text, _shot_seed(seed, i), secs, None) for i, (text, secs) in enumerate(parts)]


def _check_manual(request: VideoRequest, spec: ModelSpec, fetch_s3: FetchS3 | None) -> tuple[VideoRequest, list[ShotSpec]]:
    lim, t = spec.limits, request.task_type
    key = "multiShotManualParams.shots"
    given = request.shots or []
    if not 1 <= len(given) <= lim.max_shots:
        raise RequestError(key, f"{len(given)} shots given; allowed: 1 to {lim.max_shots} shots of {lim.shot_seconds} s each")
    if request.duration_s is not None:
        raise RequestError(DURATION, f"not used by {t}: each shot lasts {lim.shot_seconds} s; leave it out")
    shots, fitted_shots = [], []
    for i, s in enumerate(given):
        f = f"{key}[{i}]"
        _check_text(s.text, f"{f}.text", lim.text_max)
        secs, shot_seed = _shot_duration(s, f, spec), _own_seed(s, f, spec, _shot_seed(request.effective_seed, i))
        pil, fitted, adapted = _check_image(s.image, f"{f}.image", request, spec, fetch_s3)
        fitted_shots.append(s.model_copy(update={"image": fitted}) if fitted is not None else s)
        shots.append(ShotSpec(s.text, shot_seed, secs, pil, adapted))
    changed = any(a is not b for a, b in zip(fitted_shots, given))
    return (request.model_copy(update={"shots": fitted_shots}) if changed else request), shots


def _shot_duration(shot: Shot, field: str, spec: ModelSpec) -> int:
    """A manual shot's length: the model's, or the shot's own where a local model allows it."""
    lim = spec.limits
    if shot.duration_s is None:
        return lim.shot_seconds
    if lim.shot_durations is None:
        raise RequestError(f"{field}.durationSeconds", f"every shot on {spec.model_id} lasts {lim.shot_seconds} s; leave the shot's duration out (or use a local model id such as reelforge.animatic-v1)")
    if shot.duration_s not in lim.shot_durations:
        raise RequestError(f"{field}.durationSeconds", f"{shot.duration_s} is not allowed; allowed: {allowed_values(lim.shot_durations)}")
    return shot.duration_s


def _own_seed(shot: Shot, field: str, spec: ModelSpec, derived: int) -> int:
    """A manual shot's seed: derived from the video's, or the shot's own where a local model allows it."""
    lim = spec.limits
    if shot.seed is None:
        return derived
    if lim.shot_durations is None:  # Nova's schema has no per-shot seed
        raise RequestError(f"{field}.seed", f"per-shot seeds are not part of {spec.model_id}'s request format; use a local model id")
    if not 0 <= shot.seed <= lim.seed_max:
        raise RequestError(f"{field}.seed", f"{shot.seed} is out of range; allowed: 0 to {lim.seed_max}")
    return shot.seed


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
        raise RequestError("videoGenerationConfig.fps", f"{request.fps} is not allowed: {why}, which allows {allowed_values(lim.fps)}")
    w, h = request.width, request.height
    if not _size_allowed(lim, w, h, even=False):
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
            raise RequestError(field, f"{say} not allowed: {why}, which allows {allowed_values(allowed)} s")


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


def allowed_values(allowed: Iterable[int]) -> str:
    """Allowed numbers in words: "12 to 120 in steps of 6" for a long even run, else "24, 30"."""
    values = list(allowed)
    if len(values) > 6 and all(b - a == values[1] - values[0] for a, b in zip(values, values[1:])):
        step = values[1] - values[0]
        return f"{values[0]} to {values[-1]}" + (f" in steps of {step}" if step != 1 else "")
    return ", ".join(str(v) for v in values)

"""Storyboard files (YAML or JSON) to multi-shot VideoRequests.

A storyboard lists shots (MULTI_SHOT_MANUAL) or, with ``automated: true``, holds one long
prompt and a duration (MULTI_SHOT_AUTOMATED; local engines split it with
``reelforge.request.check.split_automated``)::

    model: reelforge.animatic-v1      # optional; the command line's --model wins
    resolution: 1280x720              # optional, default 1280x720
    fps: 24                           # optional, default 24
    seed: 7                           # optional, the whole video's seed
    fit: crop                         # optional: crop|pad images of another size
    shots:
      - text: Aerial shot of a coastline at sunrise. Camera pans right.
        image: frames/coast.png       # relative to this file
      - text: Closeup of waves on the sand.
        duration: 4                   # local model ids only
        seed: 11                      # local model ids only
      - A lighthouse at dusk, static shot.   # a shot may be just its text

Every error names the file, the shot number (1-based) and the field.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelforge import config
from reelforge.errors import RequestError, UnknownModelError
from reelforge.request.limits import MULTI_SHOT_AUTOMATED, MULTI_SHOT_MANUAL
from reelforge.engines.catalog import get_model
from reelforge.request.model import ImageInput, Shot, VideoRequest, parse_dimension
from reelforge.request.check import check

TOP_KEYS = ("model", "resolution", "fps", "seed", "fit", "shots", "automated", "text", "duration")
SHOT_KEYS = ("text", "image", "duration", "seed")


class StoryboardError(RequestError):
    """A storyboard file that cannot become a request; the message starts with the file name."""

    def __init__(self, path: str | os.PathLike, where: str, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {where}" if where else str(path), message)


@dataclass(frozen=True)
class Storyboard:
    path: Path
    model_id: str
    request: VideoRequest


def load_storyboard(path: str | os.PathLike, model: str | None = None) -> Storyboard:
    """Read a storyboard file and check it against its model; nothing is submitted.

    ``model`` overrides the file's ``model:``; with neither, reelforge's default model id.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StoryboardError(path, "", f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise StoryboardError(path, "", "is not UTF-8 text") from None
    data = _parse(path, text)
    return parse_storyboard(data, path=path, model=model)


def parse_storyboard(data: Any, *, path: str | os.PathLike = "<storyboard>", model: str | None = None) -> Storyboard:
    """Build the request from an already-parsed storyboard; image paths resolve against ``path``'s folder."""
    path = Path(path)
    if not isinstance(data, dict):
        raise StoryboardError(path, "", f"must be a mapping with 'shots' (or 'automated: true' and 'text'), got {_kind(data)}")
    _no_unknown(path, "", data, TOP_KEYS)
    model_id = model or _opt(path, "model", data.get("model"), str) or config.DEFAULT_MODEL
    try:
        spec = get_model(model_id)
    except UnknownModelError as exc:
        raise StoryboardError(path, "model", str(exc).removeprefix("modelId: ")) from None
    local = not spec.bedrock_id
    fields: dict[str, Any] = {}
    if "resolution" in data:
        try:
            fields["width"], fields["height"] = parse_dimension(data["resolution"], "resolution")
        except RequestError as exc:
            raise StoryboardError(path, "resolution", exc.message) from None
    for key in ("fps", "seed"):
        if key in data:
            fields[key] = _opt(path, key, data[key], int)
    if "fit" in data:
        fit = data["fit"]
        if fit not in ("crop", "pad"):
            raise StoryboardError(path, "fit", f"{fit!r} is not allowed; allowed: crop, pad")
        fields["fit"] = fit

    automated = _opt(path, "automated", data.get("automated", False), bool)
    if automated:
        if "shots" in data:
            raise StoryboardError(path, "shots", "not used with 'automated: true'; give one long 'text' and a 'duration'")
        text = _opt(path, "text", data.get("text"), str)
        duration = _opt(path, "duration", data.get("duration"), int)
        if text is None:
            raise StoryboardError(path, "text", "is required with 'automated: true' (one long prompt for the whole video)")
        if duration is None:
            raise StoryboardError(path, "duration", f"is required with 'automated: true'; allowed: {_durations(spec)}")
        request = VideoRequest(task_type=MULTI_SHOT_AUTOMATED, text=text, duration_s=duration, **fields)
    else:
        for key in ("text", "duration"):
            if key in data:
                raise StoryboardError(path, key, "only for 'automated: true'; a manual storyboard gives each shot its text")
        shots_in = data.get("shots")
        if not isinstance(shots_in, list) or not shots_in:
            raise StoryboardError(path, "shots", f"must be a non-empty list of shots, got {_kind(shots_in)}")
        shots = [_shot(path, i, s, spec.model_id, local) for i, s in enumerate(shots_in)]
        request = VideoRequest(task_type=MULTI_SHOT_MANUAL, shots=shots, duration_s=None, **fields)
    try:
        check(request, spec)
    except RequestError as exc:
        raise StoryboardError(path, _where(exc.field), exc.message) from None
    return Storyboard(path, spec.model_id, request)


def _shot(path: Path, index: int, raw: Any, model_id: str, local: bool) -> Shot:
    where = f"shot {index + 1}"
    if isinstance(raw, str):
        raw = {"text": raw}
    if not isinstance(raw, dict):
        raise StoryboardError(path, where, f"must be a mapping with 'text' (or just the text), got {_kind(raw)}")
    _no_unknown(path, where, raw, SHOT_KEYS)
    text = _opt(path, f"{where}: text", raw.get("text"), str)
    if text is None:
        raise StoryboardError(path, f"{where}: text", "is required")
    fields: dict[str, Any] = {"text": text}
    for key in ("duration", "seed"):
        if key in raw:
            if not local:
                why = "every shot lasts 6 s" if key == "duration" else "the video has one seed (set 'seed' at the top)"
                raise StoryboardError(
                    path, f"{where}: {key}",
                    f"per-shot {key}s are for local model ids only; on {model_id} {why}, "
                    "or use a local model such as --model reelforge.animatic-v1",
                )
            fields["duration_s" if key == "duration" else key] = _opt(path, f"{where}: {key}", raw[key], int)
    if raw.get("image") is not None:
        image = _opt(path, f"{where}: image", raw["image"], str)
        image_path = (path.parent / Path(image).expanduser()) if not Path(image).expanduser().is_absolute() else Path(image).expanduser()
        if not image_path.is_file():
            raise StoryboardError(path, f"{where}: image", f"no file {image_path} (image paths are relative to the storyboard file)")
        try:
            fields["image"] = ImageInput.from_source(image_path, "image")
        except RequestError as exc:
            raise StoryboardError(path, f"{where}: image", f"{image_path}: {exc.message}") from None
    return Shot(**fields)


_SHOT_FIELD = re.compile(r"^multiShotManualParams\.shots\[(\d+)\]\.?(.*)$")
_FIELD_NAMES = {
    "durationSeconds": "duration",
    "videoGenerationConfig.durationSeconds": "duration",
    "videoGenerationConfig.fps": "fps",
    "videoGenerationConfig.dimension": "resolution",
    "videoGenerationConfig.seed": "seed",
    "multiShotAutomatedParams.text": "text",
    "multiShotManualParams.shots": "shots",
    "taskType": "shots",
}


def _where(field: str) -> str:
    """A request field path in the storyboard's words: 'multiShotManualParams.shots[1].text' -> 'shot 2: text'."""
    m = _SHOT_FIELD.match(field)
    if m:
        rest = m.group(2)
        rest = _FIELD_NAMES.get(rest, rest.split(".")[0] if rest.startswith("image") else rest)
        return f"shot {int(m.group(1)) + 1}" + (f": {rest}" if rest else "")
    return _FIELD_NAMES.get(field, field)


def _parse(path: Path, text: str) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoryboardError(path, f"line {exc.lineno}", f"not valid JSON: {exc.msg}") from None
    if suffix not in (".yaml", ".yml"):
        raise StoryboardError(path, "", "a storyboard is a .yaml, .yml or .json file")
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StoryboardError(path, where, f"not valid YAML: {problem}") from None


def _no_unknown(path: Path, where: str, d: dict, allowed: tuple[str, ...]) -> None:
    for key in d:
        if key not in allowed:
            prefix = f"{where}: " if where else ""
            raise StoryboardError(path, f"{prefix}{key}", f"unknown field; allowed: {', '.join(allowed)}")


def _opt(path: Path, where: str, value: Any, kind: type) -> Any:
    if value is None:
        return None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise StoryboardError(path, where, f"must be a whole number, got {value!r}")
    if kind is not int and not isinstance(value, kind):
        raise StoryboardError(path, where, f"must be {'true or false' if kind is bool else 'a string'}, got {value!r}")
    return value


def _durations(spec) -> str:
    d = spec.limits.automated_durations
    return f"{d[0]} to {d[-1]}" + (f" in steps of {d[1] - d[0]}" if len(d) > 1 and d[1] - d[0] != 1 else "")


def _kind(v: Any) -> str:
    return "nothing" if v is None else type(v).__name__

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
from typing import Annotated, Any, Literal, Mapping, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, StrictInt, StrictStr, Tag
from pydantic import TypeAdapter, ValidationError

from reelforge import config
from reelforge.engines.catalog import get_model
from reelforge.errors import RequestError, UnknownModelError
from reelforge.request import problems
from reelforge.request.check import allowed_values, check
from reelforge.request.images import FIT_MODES, FitMode
from reelforge.request.limits import MULTI_SHOT_AUTOMATED, MULTI_SHOT_MANUAL, ModelSpec
from reelforge.request.model import ImageInput, Shot, VideoRequest, parse_dimension

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


# --- the file's schema ------------------------------------------------------------------------
_NULL_IS_ABSENT = ("model", "fps", "seed", "automated")  # top-level keys for which null means "not given"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BoardShot(_Strict):
    """One shot: its text, and an image path, a duration and a seed (the last two: local models)."""

    text: StrictStr
    image: StrictStr | None = None
    duration: StrictInt | None = None
    seed: StrictInt | None = None


class _Board(_Strict):
    model: StrictStr = problems.omittable()
    resolution: Annotated[tuple[int, int], BeforeValidator(lambda v: parse_dimension(v, "resolution"))] = problems.omittable()
    fps: StrictInt = problems.omittable()
    seed: StrictInt = problems.omittable()
    fit: FitMode = problems.omittable()


class ManualBoard(_Board):
    """``shots:``, a MULTI_SHOT_MANUAL request; a shot may be just its text."""

    automated: Literal[False] | None = False
    shots: list[Annotated[BoardShot, BeforeValidator(lambda v: {"text": v} if isinstance(v, str) else v)]] = Field(min_length=1)


class AutomatedBoard(_Board):
    """``automated: true``, one long prompt and a duration: a MULTI_SHOT_AUTOMATED request."""

    automated: Literal[True]
    text: StrictStr
    duration: StrictInt


BOARD = TypeAdapter(Annotated[
    Union[Annotated[ManualBoard, Tag("manual")], Annotated[AutomatedBoard, Tag("automated")]],
    Discriminator(lambda d: "automated" if d.get("automated") is True else "manual"),
])
_MISPLACED = (("shots",), ("text",), ("duration",))  # keys of the other kind of storyboard: said where they stand
# The order problems are found in, by kind of storyboard: the keys of the other kind first, then the own ones.
_ORDER = {
    tag: {k: i for i, k in enumerate(TOP_KEYS[:5] + ("automated",) + keys + SHOT_KEYS[1:])}
    for tag, keys in (("manual", ("text", "duration", "shots")), ("automated", ("shots", "text", "duration")))
}


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
    given = {k: v for k, v in data.items() if not (v is None and k in _NULL_IS_ABSENT) and not (model and k == "model")}
    named = model or data.get("model")
    try:
        board = BOARD.validate_python(given)
    except ValidationError as exc:
        raise _first_problem(path, exc, named) from None
    spec = _spec(path, named)
    request = _request(path, board, spec)
    try:
        check(request, spec)
    except RequestError as exc:
        raise StoryboardError(path, _where(exc.field), exc.message) from None
    return Storyboard(path, spec.model_id, request)


def _first_problem(path: Path, exc: ValidationError, named: str | None) -> StoryboardError:
    """The problem a reader meets first; unknown keys and the model come before the model's own limits."""
    errors: list[dict[str, Any]] = [
        dict(e, type="misplaced") if e["type"] == "extra_forbidden" and e["loc"][1:] in _MISPLACED else dict(e) for e in exc.errors()
    ]
    order = _ORDER[str(errors[0]["loc"][0])] if errors[0]["loc"] else _ORDER["manual"]
    problem = problems.first(errors, order, {"extra_forbidden": 0}, by_name=False)
    if problem["type"] == "extra_forbidden" or problem["loc"][1:2] == ("model",):
        return _problem(path, problem, None)
    return _problem(path, problem, _spec(path, named))


def _spec(path: Path, model_id: str | None) -> ModelSpec:
    try:
        return get_model(model_id or config.DEFAULT_MODEL)
    except UnknownModelError as exc:
        raise StoryboardError(path, "model", str(exc).removeprefix("modelId: ")) from None


def _request(path: Path, board: ManualBoard | AutomatedBoard, spec: ModelSpec) -> VideoRequest:
    fields: dict[str, Any] = {k: getattr(board, k) for k in ("fps", "seed", "fit") if getattr(board, k) is not None}
    if board.resolution is not None:
        fields["width"], fields["height"] = board.resolution
    if isinstance(board, AutomatedBoard):
        return VideoRequest(task_type=MULTI_SHOT_AUTOMATED, text=board.text, duration_s=board.duration, **fields)
    shots = [_shot(path, i, s, spec) for i, s in enumerate(board.shots)]
    return VideoRequest(task_type=MULTI_SHOT_MANUAL, shots=shots, duration_s=None, **fields)


def _shot(path: Path, index: int, shot: BoardShot, spec: ModelSpec) -> Shot:
    where = f"shot {index + 1}"
    for key in ("duration", "seed"):
        if key in shot.model_fields_set and spec.bedrock_id:
            why = "every shot lasts 6 s" if key == "duration" else "the video has one seed (set 'seed' at the top)"
            raise StoryboardError(
                path, f"{where}: {key}",
                f"per-shot {key}s are for local model ids only; on {spec.model_id} {why}, "
                "or use a local model such as --model reelforge.animatic-v1",
            )
    image = None
    if shot.image is not None:
        given = Path(shot.image).expanduser()
        image_path = given if given.is_absolute() else path.parent / given
        if not image_path.is_file():
            raise StoryboardError(path, f"{where}: image", f"no file {image_path} (image paths are relative to the storyboard file)")
        try:
            image = ImageInput.from_source(image_path, "image")
        except RequestError as exc:
            raise StoryboardError(path, f"{where}: image", f"{image_path}: {exc.message}") from None
    return Shot(text=shot.text, image=image, duration_s=shot.duration, seed=shot.seed)


def _problem(path: Path, err: Mapping[str, Any], spec: ModelSpec | None) -> StoryboardError:
    """One pydantic problem of a storyboard in the file's words: 'shot 2: seed: must be a whole number, got 'x''."""
    loc, kind = tuple(err["loc"][1:]), err["type"]  # loc[0]: the manual/automated tag
    value = None if kind == "missing" else err.get("input")
    where = f"shot {loc[1] + 1}" + "".join(f": {k}" for k in loc[2:]) if loc[:1] == ("shots",) and len(loc) > 1 else ": ".join(map(str, loc))
    return StoryboardError(path, where, _message(loc, kind, value, err, spec))


def _message(loc: tuple[Any, ...], kind: str, value: Any, err: Mapping[str, Any], spec: ModelSpec | None) -> str:
    name, cause = (loc[-1] if loc else ""), (err.get("ctx") or {}).get("error")
    if kind == "extra_forbidden":
        return f"unknown field; allowed: {', '.join(SHOT_KEYS if len(loc) > 1 else TOP_KEYS)}"
    if kind == "misplaced" and err["loc"][0] == "automated":
        return "not used with 'automated: true'; give one long 'text' and a 'duration'"
    if kind == "misplaced":
        return "only for 'automated: true'; a manual storyboard gives each shot its text"
    if isinstance(cause, RequestError):
        return cause.message
    if loc == ("shots",) or (kind == "model_type" and loc[:1] == ("shots",)):
        what = "a non-empty list of shots" if loc == ("shots",) else "a mapping with 'text' (or just the text)"
        return f"must be {what}, got {_kind(value)}"
    if kind == "missing" or (value is None and kind in ("string_type", "int_type")):
        return _required(str(name), spec) if len(loc) == 1 else "is required"
    return _bad_value(str(name), kind, value)


def _required(name: str, spec: ModelSpec | None) -> str:
    if name == "text" or name == "duration":
        if name == "duration" and spec is not None:
            return f"is required with 'automated: true'; allowed: {allowed_values(spec.limits.automated_durations)}"
        return "is required with 'automated: true' (one long prompt for the whole video)"
    return "is required"


def _bad_value(name: str, kind: str, value: Any) -> str:
    if name == "automated":
        return f"must be true or false, got {value!r}"
    if name == "fit":
        return f"{value!r} is not allowed; allowed: {', '.join(FIT_MODES)}"
    if kind == "int_type":
        return f"must be a whole number, got {value!r}"
    return f"must be a string, got {value!r}"


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


def _kind(v: Any) -> str:
    return "nothing" if v is None else type(v).__name__

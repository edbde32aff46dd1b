"""The new-job and run-again forms: form fields in, a VideoRequest out, errors keyed by form field.

Validation is the request code's own (``ImageInput.from_source`` and ``check`` inside
``Runtime.submit``); this module only turns strings into typed values and maps a RequestError's
JSON path (``videoGenerationConfig.seed``) back to the form field that holds it (``seed``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, cast

from reelforge.config import DEFAULT_MODEL
from reelforge.errors import ReelforgeError, RequestError
from reelforge.request.limits import MULTI_SHOT_AUTOMATED, MULTI_SHOT_MANUAL, SEED_MAX, TASK_TYPES, TEXT_VIDEO
from reelforge.engines.catalog import all_models
from reelforge.workflows.lint import previz_notes
from reelforge.request.prompts import LintWarning, lint_prompt, lint_shots
from reelforge.request.images import FIT_MODES
from reelforge.request.model import ImageInput, Shot, VideoRequest, parse_dimension

TASK_LABELS = {
    TEXT_VIDEO: "One shot from a prompt (TEXT_VIDEO)",
    MULTI_SHOT_AUTOMATED: "Several shots planned from one long prompt (MULTI_SHOT_AUTOMATED)",
    MULTI_SHOT_MANUAL: "Several shots, one prompt per line (MULTI_SHOT_MANUAL)",
}
FIT_LABELS = {
    "": "No fitting (Nova Reel models refuse an image of another size; other models crop it)",
    "crop": "Crop to fit",
    "pad": "Pad to fit",
}
FIT_CONTROL = "If the image is another size"  # the fit field's label, named by error messages
FIELD_LABELS = {  # the form's labels, for the error summary's links
    "task": "Kind of video",
    "prompt": "Prompt",
    "shots": "Shots",
    "webhook": "Webhook",
    "image": "Starting image",
    "fit": FIT_CONTROL,
    "model": "Model",
    "duration": "Duration",
    "seed": "Seed",
    "size": "Size",
    "fps": "Frames per second",
}
DURATION_HINTS = {  # what the duration field means for each kind of video
    TEXT_VIDEO: "The video's length.",
    MULTI_SHOT_AUTOMATED: "The whole video's length, all shots together.",
    MULTI_SHOT_MANUAL: "Each shot's length.",
}
DEFAULTS = {"task": TEXT_VIDEO, "model": DEFAULT_MODEL, "size": "1280x720", "fps": "24", "duration": "6", "seed": "", "prompt": "", "shots": "", "fit": "", "webhook": ""}


class FormErrors(Exception):
    """One or more form fields are invalid; ``errors`` maps field name to message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass
class NewJobForm:
    values: dict[str, str] = field(default_factory=lambda: dict(DEFAULTS))
    errors: dict[str, str] = field(default_factory=dict)
    lint: list[dict[str, Any]] = field(default_factory=list)
    previz: list[str] = field(default_factory=list)  # "previz will show: ..." when the model renders on the previz
    lost_image: str = ""  # the file name of an image sent with a refused form: the browser has dropped it


def model_choices() -> list[tuple[str, str]]:
    return [(m.model_id, m.summary) for m in all_models()]


def random_seed() -> int:
    return random.randint(0, SEED_MAX)


def form_field(path: str) -> str:
    """The form field that holds a request's JSON path; "form" when none does."""
    if path in DEFAULTS or path == "image":
        return path
    if path == "tags":  # the only tag this form sends names a webhook endpoint
        return "webhook"
    if path == "modelId":
        return "model"
    if "image" in path:  # textToVideoParams.images[0].source.bytes, ...shots[0].image
        return "image"
    if path.endswith("durationSeconds"):
        return "duration"
    if path.endswith(".seed"):
        return "seed"
    if path.endswith(".dimension"):
        return "size"
    if path.endswith(".fps"):
        return "fps"
    if path.startswith("multiShotManualParams"):
        return "shots"
    if path.endswith(".text"):
        return "prompt"
    if path == "taskType":
        return "task"
    return "form"


# request.py's advice for an image of the wrong size names the CLI and Python ways to fit it;
# the form has its own control for that.
_FIT_ADVICE = re.compile(r",? or ask reelforge to fit it \(crop or pad; it also flattens\):.*$", re.S)


def error_message(exc: ReelforgeError) -> str:
    """The message for the form field the error names, in the form's own words."""
    if not isinstance(exc, RequestError):
        return str(exc)
    if form_field(exc.field) == "image":
        flattens = " (either also flattens it)" if "transparent" in exc.message else ""
        advice = f", or choose Crop to fit or Pad to fit under \u201c{FIT_CONTROL}\u201d{flattens}"
        return _FIT_ADVICE.sub(lambda _: advice, exc.message)
    return exc.message


def rerun_image_message(message: str) -> str:
    """An image-size refusal on "run again", which has no fit control: point at the new-video form."""
    advice = f"; pick a model that takes this image, or make a new video with Crop to fit or Pad to fit under \u201c{FIT_CONTROL}\u201d"
    return _FIT_ADVICE.sub(lambda _: advice, message)


def _int(values: dict[str, str], name: str, errors: dict[str, str], required: bool) -> int | None:
    text = values.get(name, "").strip()
    if not text:
        if required:
            errors[name] = "is required"
        return None
    try:
        return int(text)
    except ValueError:
        errors[name] = f"{text!r} is not a whole number"
        return None


def shot_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def build_request(values: dict[str, str], image: bytes | None, shot_seconds: int | None = None) -> VideoRequest:
    """A VideoRequest from the new-job form; raises FormErrors. The model's limits are checked on submit.

    For manual shots the duration field is each shot's length; the model's own shot length
    (``shot_seconds``) is left out of the request, since Nova's shot schema has no duration.
    """
    errors: dict[str, str] = {}
    task = values.get("task", TEXT_VIDEO)
    if task not in TASK_TYPES:
        errors["task"] = f"{task!r} is not a kind of video; allowed: {', '.join(TASK_TYPES)}"
    manual = task == MULTI_SHOT_MANUAL
    seed = _int(values, "seed", errors, required=False)
    duration = _int(values, "duration", errors, required=not manual)
    fps = _int(values, "fps", errors, required=True)
    width = height = 0
    try:
        width, height = parse_dimension(values.get("size", "").strip(), "size")
    except RequestError as exc:
        errors["size"] = exc.message
    fit = values.get("fit") or None
    if fit is not None and fit not in FIT_MODES:
        errors["fit"] = f"{fit!r} is not allowed; allowed: {', '.join(FIT_MODES)}, or none"
    picture = None
    if image:
        try:
            picture = ImageInput.from_source(image, field="image")
        except RequestError as exc:
            errors["image"] = exc.message
    shots = None
    text = values.get("prompt", "")
    if manual:
        lines = shot_lines(values.get("shots", ""))
        if not lines:
            errors["shots"] = "is empty; write one shot prompt per line"
        per_shot = None if duration == shot_seconds else duration
        shots = [Shot(text=line, image=picture if i == 0 else None, duration_s=per_shot) for i, line in enumerate(lines)]
    elif not text.strip():
        errors["prompt"] = "is empty; describe the video"
    if errors:
        raise FormErrors(errors)
    return VideoRequest(
        task_type=cast(Any, task),
        text=None if manual else text,
        image=None if manual else picture,
        shots=shots,
        duration_s=None if manual else duration,
        fps=cast(Any, fps),  # None only with errors, raised above
        width=width,
        height=height,
        seed=seed,
        fit=cast(Any, fit),
    )


def rerun_request(model_input: dict[str, Any], values: dict[str, str]) -> VideoRequest:
    """The recorded request with the seed from the run-again form; raises FormErrors."""
    errors: dict[str, str] = {}
    seed = _int(values, "seed", errors, required=False)
    if errors:
        raise FormErrors(errors)
    request = VideoRequest.from_model_input(model_input)
    return request.model_copy(update={"seed": seed}) if seed is not None else request


def lint(values: dict[str, str]) -> list[dict[str, Any]]:
    """Prompt-guide warnings for the form's prompt, or for each shot line."""
    task = values.get("task", TEXT_VIDEO)
    if task == MULTI_SHOT_MANUAL:
        found: list[tuple[int | None, Any]] = [(i + 1, w) for i, w in lint_shots(shot_lines(values.get("shots", "")))]
    else:
        if task not in TASK_TYPES:
            task = TEXT_VIDEO
        text = values.get("prompt", "")
        if not text.strip():
            return []
        try:
            duration = int(values.get("duration", ""))
        except ValueError:
            duration = None
        found = [(None, w) for w in lint_prompt(text, task_type=task, duration_s=duration)]
    return [_warning(w, shot) for shot, w in found]


def previz(values: dict[str, str]) -> list[str]:
    """What the previz will draw for the form's prompt or shots, when the chosen model renders on it."""
    texts = shot_lines(values.get("shots", "")) if values.get("task") == MULTI_SHOT_MANUAL else [values.get("prompt", "")]
    return previz_notes(values.get("model") or DEFAULT_MODEL, texts)


def _warning(w: LintWarning, shot: int | None) -> dict[str, Any]:
    return {
        "rule": w.rule,
        "code": w.code,
        "severity": w.severity,
        "message": w.message,
        "start": w.start,
        "end": w.end,
        "suggestion": w.suggestion,
        "shot": shot,
    }

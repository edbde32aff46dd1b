"""Luma Ray2 on Bedrock (``luma.ray-v2:0``): its ``modelInput`` checked field by field, and mapped onto a local model.

The schema is the one AWS documents (reference bedrock-async-invoke.md §5): flat snake_case members,
duration and resolution as strings. What the reference marks UNCONFIRMED is marked here too and in
docs/remote.md: the aspect ratios 21:9 and 9:21 (the doc excerpt was cut off after 3:4) and
``keyframes`` (Bedrock's page does not show it; its form here is Luma's own API's,
``{"frame0": {"type": "image", "url": ...}}``).

Served locally (no forwarding for the id), the request becomes the equivalent Nova-shaped TEXT_VIDEO
request for the local model: 24 fps, the size the aspect ratio and resolution give, 5 or 9 s, the
first keyframe as the first frame. ``loop`` is recorded; the local model does not make looping videos,
and the job's metadata says so.
"""

from __future__ import annotations

from typing import Any

from reelforge.errors import RequestError
from reelforge.request.limits import TEXT_VIDEO

MODEL_ID = "luma.ray-v2:0"
PROMPT_MAX = 5000
DURATIONS = {"5s": 5, "9s": 9}
RESOLUTIONS = {"540p": 540, "720p": 720}
CONFIRMED_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4")
UNCONFIRMED_RATIOS = ("21:9", "9:21")
ASPECT_RATIOS = CONFIRMED_RATIOS + UNCONFIRMED_RATIOS
MEMBERS = ("prompt", "aspect_ratio", "loop", "duration", "resolution", "keyframes")
DEFAULTS = {"aspect_ratio": "16:9", "loop": False, "duration": "5s", "resolution": "720p"}  # Luma's defaults
FPS = 24
KEYFRAMES = ("frame0", "frame1")


def size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """(width, height): the short side is the resolution's lines, the long side follows the ratio (rounded to even)."""
    w, h = (int(p) for p in aspect_ratio.split(":"))
    short = RESOLUTIONS[resolution]
    long = round(short * max(w, h) / min(w, h) / 2) * 2
    return (long, short) if w >= h else (short, long)


SIZES = tuple(sorted({size(a, r) for a in ASPECT_RATIOS for r in RESOLUTIONS}))


def _enum(value: Any, field: str, allowed: tuple[str, ...] | dict) -> str:
    names = ", ".join(f'"{a}"' for a in allowed)
    if not isinstance(value, str):
        raise RequestError(field, f"must be a string, one of {names}; got {type(value).__name__} {value!r}")
    if value not in allowed:
        raise RequestError(field, f"{value[:50]!r} is not allowed; allowed: {names}")
    return value


def check_input(model_input: Any) -> dict[str, Any]:
    """The request with Luma's defaults filled in; RequestError naming the field and the allowed values."""
    if not isinstance(model_input, dict):
        raise RequestError("modelInput", f"must be a JSON object with members {', '.join(MEMBERS)}")
    unknown = sorted(set(model_input) - set(MEMBERS))
    if unknown:
        hint = " (Luma Ray2 takes flat snake_case members, not Nova Reel's taskType form)" if "taskType" in unknown else ""
        raise RequestError(unknown[0][:100], f"unknown member of {MODEL_ID}'s modelInput; allowed: {', '.join(MEMBERS)}{hint}")
    d = {**DEFAULTS, **model_input}
    prompt = d.get("prompt")
    if prompt is None:
        raise RequestError("prompt", "is required: the text of the video, 1 to 5000 characters")
    if not isinstance(prompt, str):
        raise RequestError("prompt", f"must be a string, got {type(prompt).__name__}")
    if not 1 <= len(prompt) <= PROMPT_MAX:
        raise RequestError("prompt", f"has {len(prompt)} characters; allowed: 1 to {PROMPT_MAX}")
    _enum(d["aspect_ratio"], "aspect_ratio", ASPECT_RATIOS)
    _enum(d["duration"], "duration", DURATIONS)
    _enum(d["resolution"], "resolution", RESOLUTIONS)
    if not isinstance(d["loop"], bool):
        raise RequestError("loop", f"must be true or false, got {d['loop']!r}")
    if "keyframes" in model_input:
        _check_keyframes(model_input["keyframes"])
    return d


def _check_keyframes(frames: Any) -> None:
    if not isinstance(frames, dict) or not frames:
        raise RequestError("keyframes", 'must be an object with frame0 and/or frame1, e.g. {"frame0": {"type": "image", "url": "s3://bucket/first.png"}}')
    for name in frames:
        if name not in KEYFRAMES:
            raise RequestError(f"keyframes.{str(name)[:50]}", f"unknown keyframe; allowed: {', '.join(KEYFRAMES)}")
        frame = frames[name]
        field = f"keyframes.{name}"
        if not isinstance(frame, dict) or set(frame) != {"type", "url"}:
            raise RequestError(field, 'must be {"type": "image", "url": URL} (an s3:// URI or a data:image/...;base64 URL)')
        if frame["type"] != "image":
            raise RequestError(f"{field}.type", f"{str(frame['type'])[:50]!r} is not allowed; allowed: \"image\"")
        url = frame["url"]
        if not isinstance(url, str) or not (url.startswith("s3://") or url.startswith("data:image/")):
            raise RequestError(f"{field}.url", "must be an s3:// URI or a data:image/png;base64,... URL")


def _image(url: str, field: str) -> dict[str, Any]:
    """A keyframe URL as Nova's image member (what the local request carries)."""
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        mime = head.removeprefix("data:").split(";")[0].lower()
        if ";base64" not in head or mime not in ("image/png", "image/jpeg") or not data:
            raise RequestError(field, "a data URL must be data:image/png;base64,... or data:image/jpeg;base64,...")
        return {"format": mime.split("/")[1], "source": {"bytes": data}}
    ext = url.rsplit(".", 1)[-1].lower()
    if ext not in ("png", "jpg", "jpeg"):
        raise RequestError(field, f"{url[:100]!r} must end in .png, .jpg or .jpeg so its format is known")
    return {"format": "png" if ext == "png" else "jpeg", "source": {"s3Location": {"uri": url}}}


def to_nova(model_input: Any, local: bool = True) -> tuple[dict[str, Any], list[str]]:
    """The local model's (Nova-shaped) request for a Luma one, and notes on what the local model cannot honour.

    With ``local`` False (the id is forwarded, the Luma request goes upstream as it is) the Nova form
    only describes the video for listings and estimates: keyframes stay in the Luma request.
    """
    d = check_input(model_input)
    width, height = size(d["aspect_ratio"], d["resolution"])
    params: dict[str, Any] = {"text": d["prompt"]}
    frames = (model_input.get("keyframes") or {}) if local else {}
    if "frame1" in frames:
        raise RequestError("keyframes.frame1", f"an end keyframe is not supported by the local model serving {MODEL_ID}; "
                           "give frame0 only, or forward the id to Bedrock (docs/remote.md)")
    if "frame0" in frames:
        params["images"] = [_image(frames["frame0"]["url"], "keyframes.frame0.url")]
    notes = ["loop: the local model does not make looping videos; recorded, not applied"] if d["loop"] and local else []
    nova = {
        "taskType": TEXT_VIDEO,
        "textToVideoParams": params,
        "videoGenerationConfig": {"durationSeconds": DURATIONS[d["duration"]], "fps": FPS, "dimension": f"{width}x{height}"},
    }
    return nova, notes


def from_nova(nova: dict[str, Any]) -> dict[str, Any]:
    """The Luma request for a Nova-shaped one (a job that came on another wire, forwarded to Luma on Bedrock)."""
    cfg = nova.get("videoGenerationConfig", {})
    width, _, height = str(cfg.get("dimension", "1280x720")).partition("x")
    shape = {size(a, r): (a, r) for a in ASPECT_RATIOS for r in RESOLUTIONS}.get((int(width), int(height)))
    if shape is None:
        raise RequestError("videoGenerationConfig.dimension", f"{width}x{height} is not a Luma Ray2 size; allowed: {', '.join(f'{w}x{h}' for w, h in SIZES)}")
    seconds = {v: k for k, v in DURATIONS.items()}.get(cfg.get("durationSeconds"))
    if seconds is None:
        raise RequestError("videoGenerationConfig.durationSeconds", f"{cfg.get('durationSeconds')} is not a Luma Ray2 length; allowed: 5, 9")
    return {"prompt": nova.get("textToVideoParams", {}).get("text", ""), "aspect_ratio": shape[0], "resolution": shape[1], "duration": seconds}

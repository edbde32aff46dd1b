"""The notebook's helpers, done right: same arguments, same dict, but checked before sending."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from reelforge import config
from reelforge.errors import UnknownModelError
from reelforge.request import images
from reelforge.request.limits import NOVA_MODELS
from reelforge.request.model import VideoRequest
from reelforge.request.check import check


def build_model_input(
    prompt: str,
    image_base64: str | None = None,
    duration: int = 6,
    fps: int = 24,
    resolution: str = "1280x720",
    seed: int = 0,
    *,
    model_id: str = config.DEFAULT_MODEL,
) -> dict[str, Any]:
    """Nova Reel's TEXT_VIDEO ``modelInput``, exactly as the notebook builds it, validated for ``model_id``.

    ``model_id`` defaults to ``amazon.nova-reel-v1:1``, reelforge's default everywhere (Client.start,
    the CLI, the server), so the dict is checked against the model it will most likely be sent to.
    The notebook's ``amazon.nova-reel-v1:0`` accepts exactly the same TEXT_VIDEO requests (v1:1 only
    adds multi-shot task types), so a notebook's dict validates the same under either id.
    Unlike the notebook, the image's format is read from the image (a JPEG is sent as "jpeg").
    ``model_id`` is one of the Nova Reel ids (the helper builds their request form; a local model's
    limits are checked when the request reaches it). Raises RequestError naming the field and the
    allowed values, UnknownModelError for another id.
    """
    nova = {spec.model_id: spec for spec in NOVA_MODELS}
    if model_id not in nova:
        raise UnknownModelError(model_id, sorted(nova))
    output: dict[str, Any] = {
        "taskType": "TEXT_VIDEO",
        "textToVideoParams": {"text": prompt},
        "videoGenerationConfig": {"durationSeconds": duration, "fps": fps, "dimension": resolution, "seed": seed},
    }
    if image_base64:
        data = images.decode_base64(image_base64, "image_base64")
        fmt = "jpeg" if images.open_image(data, "image_base64").info.get("reelforge_format") == "JPEG" else "png"
        output["textToVideoParams"]["images"] = [{"format": fmt, "source": {"bytes": image_base64}}]
    check(VideoRequest.from_model_input(output), nova[model_id])
    return output


def video_location(get_response: dict[str, Any]) -> tuple[str, str]:
    """(bucket, key of output.mp4) from a GetAsyncInvoke response, whatever prefix was used.

    The notebook's ``video_uri.split('/')[3]`` only works when the output had no prefix.
    """
    uri = get_response["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
    u = urlparse(uri)
    key = "/".join(p for p in (u.path.strip("/"), "output.mp4") if p)
    return u.netloc, key

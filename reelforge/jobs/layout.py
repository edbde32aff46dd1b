"""The output layout of a job's folder: its file names (defined in storage/layout.py, where engines read them too,
re-exported here) and the manifest and status documents the worker writes there."""

from __future__ import annotations

import json
import time
from typing import Any

from reelforge.engines import get_engine_class
from reelforge.jobs.record import JobRecord
from reelforge.request.model import VideoRequest
from reelforge.storage.base import join
from reelforge.storage.layout import (  # noqa: F401 - the layout's names, for the worker, the gallery and downloads
    CHECKPOINTS,
    CONTACT_SHEET,
    MANIFEST,
    OUTPUTS,
    POSTER,
    SHOT_FILE,
    STATUS,
    STILLS,
    VIDEO,
    checkpoint_name,
    completed_files,
    shot_file_name,
    shot_file_names,
)


def iso(t: float | None) -> str | None:
    """Bedrock's timestamp form, ``YYYY-MM-DDTHH:MM:SS.fffZ`` (None for None): manifests, the wires, webhooks."""
    if t is None:
        return None
    ms = int(t * 1000)  # truncated, so a shown time is never later than the real one
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def status_doc(job: JobRecord, shots: int, failure: str | None) -> dict[str, Any]:
    """video-generation-status.json: where the video and its shots are, or why there is none."""
    if failure is None:
        shot_list = [{"status": "SUCCESS", "location": join(job.output_uri, name)} for name in shot_file_names(shots)]
        return {"schemaVersion": "1.0", "shots": shot_list, "fullVideo": {"status": "SUCCESS", "location": join(job.output_uri, VIDEO)}}
    fail = {"status": "FAILURE", "failureType": "INTERNAL_SERVER_EXCEPTION", "failureMessage": failure}
    return {"schemaVersion": "1.0", "shots": [], "fullVideo": fail}


def manifest(job: JobRecord, engine_id: str, request: VideoRequest) -> dict[str, Any]:
    """manifest.json as written when a job starts (the worker adds its metadata and end time when it completes)."""
    return {
        "schemaVersion": "1.0",
        "invocationId": job.id,
        "invocationArn": job.arn,
        "modelId": job.model_id,
        "clientRequestToken": job.client_token,
        "submitTime": iso(job.submit_time),
        "engine": engine_id,
        "generative": get_engine_class(engine_id).generative,
        "request": strip_images(request.to_model_input()),
        "output": {"fps": request.fps, "width": request.width, "height": request.height},
        "keepAudio": job.audio,  # False: asked for a silent video (--no-audio)
        "adaptations": job.metadata.get("adaptations", []),  # images fitted to the video size at submit (--fit)
        "wire": job.wire,  # the API the job came on, and its request there (bytes as size and digest)
        "wireRequest": job.wire_request,
    }


def strip_images(model_input: dict[str, Any]) -> dict[str, Any]:
    """The request with image bytes replaced by a note of their size (manifests and pages show the recipe, not the pixels)."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (f"<{len(v)} base64 characters>" if k == "bytes" and isinstance(v, str) else walk(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(json.loads(json.dumps(model_input)))


def to_json(doc: dict[str, Any]) -> bytes:
    """A document of the folder as written there: indented JSON."""
    return json.dumps(doc, indent=2, default=str).encode()

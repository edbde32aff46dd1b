"""A job as each wire shows it: Bedrock's GetAsyncInvoke summary, OpenAI's Video, a Gemini operation.

The server's replies and the webhooks' bodies are made here, so a process that sends webhooks
(any worker) shows a job exactly as the wire that created it does, without the server.
"""

from __future__ import annotations

from typing import Any

from reelforge.errors import ReelforgeError
from reelforge.jobs.layout import iso
from reelforge.jobs.record import JobRecord, JobStatus
from reelforge.request.limits import MULTI_SHOT_MANUAL
from reelforge.engines.catalog import get_model
from reelforge.request.model import PARAMS_KEY

OPENAI_ID_PREFIX = "video_"
OPENAI_STATUS = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "in_progress",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELED: "failed",  # with error.code "canceled": any other word would end the client's poll early
}
GEMINI_RESPONSE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"


# --- the request a job was recorded with -------------------------------------------------------


def request_params(model_input: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(taskType, the task's parameters, videoGenerationConfig) of a recorded request."""
    task = model_input.get("taskType", "")
    return task, model_input.get(PARAMS_KEY.get(task, ""), {}) or {}, model_input.get("videoGenerationConfig", {}) or {}


def prompts(model_input: dict[str, Any]) -> list[str]:
    """The prompt, or one prompt per shot."""
    task, params, _ = request_params(model_input)
    if task == MULTI_SHOT_MANUAL:
        return [str(s.get("text", "")) for s in params.get("shots", [])]
    return [str(params.get("text", ""))]


def duration_s(record: JobRecord) -> int | None:
    """Length of the video the request asks for (per-shot lengths added up for manual shots)."""
    task, params, cfg = request_params(record.model_input)
    if task != MULTI_SHOT_MANUAL:
        return cfg.get("durationSeconds")
    try:
        shot_s = get_model(record.model_id).limits.shot_seconds
    except ReelforgeError:
        shot_s = 6
    return sum(s.get("durationSeconds", shot_s) for s in params.get("shots", []))


def shape(record: JobRecord) -> tuple[int, int, str]:
    """(width, height, seconds as text) of the video a job makes; an extension counts its source too."""
    cfg = record.model_input.get("videoGenerationConfig", {}) or {}
    width, _, height = str(cfg.get("dimension", "0x0")).partition("x")
    seconds = record.wire_request.get("seconds") or str(duration_s(record) or 0)
    return int(width or 0), int(height or 0), str(seconds)


def prompt(record: JobRecord) -> str:
    """The prompt as the wire took it (all shots' prompts, joined, for a Nova request)."""
    return record.wire_request.get("prompt") or " ".join(prompts(record.model_input))


# --- Bedrock --------------------------------------------------------------------------------------


def model_arn(record: JobRecord) -> str:
    region = record.arn.split(":")[3]
    return f"arn:aws:bedrock:{region}::foundation-model/{record.model_id}"


def bedrock_summary(record: JobRecord) -> dict[str, Any]:
    """A job as GetAsyncInvoke returns it (and ListAsyncInvokes, one per summary)."""
    s3: dict[str, Any] = {"s3Uri": record.output_uri}
    for key in ("kmsKeyId", "bucketOwner"):
        if record.output_config.get(key):
            s3[key] = record.output_config[key]
    out: dict[str, Any] = {
        "invocationArn": record.arn,
        "modelArn": model_arn(record),
        "status": record.status.bedrock,
        "submitTime": iso(record.submit_time),
        "lastModifiedTime": iso(record.last_modified),
        "outputDataConfig": {"s3OutputDataConfig": s3},
    }
    if record.client_token is not None:
        out["clientRequestToken"] = record.client_token
    if record.status is JobStatus.CANCELED:
        out["failureMessage"] = "Canceled."
    elif record.status is JobStatus.FAILED:
        out["failureMessage"] = (record.failure_message or "The job failed.")[:2048]
    if record.status.done and record.end_time is not None:
        out["endTime"] = iso(record.end_time)
    return out


# --- OpenAI Videos ----------------------------------------------------------------------------------


def openai_video_id(record: JobRecord) -> str:
    return OPENAI_ID_PREFIX + record.id


def openai_video(record: JobRecord, retain_s: float | None = None) -> dict[str, Any]:
    """A job as OpenAI's ``Video`` object (every field, in the types strict clients check).

    ``expires_at``: when retention (``reelforge serve --retain``) will prune an ended job; null
    while it runs, and when the server keeps every job."""
    width, height, seconds = shape(record)
    done = record.status is JobStatus.COMPLETED
    error = None
    if record.status is JobStatus.CANCELED:
        error = {"code": "canceled", "message": record.failure_message or "Canceled."}
    elif record.status is JobStatus.FAILED:
        error = {"code": "generation_failed", "message": (record.failure_message or "The job failed.")[:2048]}
    source = record.wire_request.get("remixed_from_video_id")
    return {
        "id": openai_video_id(record),
        "object": "video",
        "model": record.wire_request.get("model") or record.model_id,
        "status": OPENAI_STATUS[record.status],
        "progress": 100 if done else min(99, int(record.progress * 100)),
        "created_at": int(record.submit_time),
        "completed_at": int(record.end_time) if done and record.end_time else None,
        "expires_at": int(record.end_time + retain_s) if retain_s and record.status.done and record.end_time else None,
        "prompt": prompt(record),
        "seconds": seconds,
        "size": f"{width}x{height}",
        "remixed_from_video_id": source,
        "error": error,
    }


# --- Gemini (Veo) -------------------------------------------------------------------------------------


def gemini_response(records: list[JobRecord]) -> dict[str, Any]:
    """The Gemini Developer API's response of an operation whose samples all completed: their videos as file links."""
    samples = [{"video": {"uri": f"files/{r.id}", "mimeType": "video/mp4"}} for r in records]
    return {"@type": GEMINI_RESPONSE, "generateVideoResponse": {"generatedSamples": samples, "raiMediaFilteredCount": 0}}


def gemini_error(record: JobRecord) -> dict[str, Any]:
    """An ended job that made no video, as a google.rpc.Status."""
    canceled = record.status is JobStatus.CANCELED
    return {"code": 1 if canceled else 13, "message": record.failure_message or ("Canceled." if canceled else "The job failed."),
            "status": "CANCELLED" if canceled else "INTERNAL"}


def gemini_operation(record: JobRecord) -> dict[str, Any]:
    """One sample's job as an operation (its own name, which fetchPredictOperation and GET accept),
    its video as a file link, never inline (webhooks send this)."""
    name = f"{record.wire_request.get('resource', 'models/' + record.model_id)}/operations/{record.id}"
    if not record.status.done:
        return {"name": name, "done": False, "metadata": {"progressPercent": int(record.progress * 100)}}
    if record.status is not JobStatus.COMPLETED:
        return {"name": name, "done": True, "error": gemini_error(record)}
    return {"name": name, "done": True, "response": gemini_response([record])}


def view(record: JobRecord) -> dict[str, Any]:
    """The job as the wire that created it shows it; files as links, never inline bytes."""
    if record.wire == "openai":
        return openai_video(record)
    if record.wire == "gemini":
        return gemini_operation(record)
    return bedrock_summary(record)

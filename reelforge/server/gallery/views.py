"""What the gallery shows of a job: one summary for the list, the whole recipe for the job page.

Pure functions of a JobRecord (plus a look at the job's folder when it is on this machine), so
templates stay free of logic and tests can check them without a server.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable
from typing import Any, cast

from reelforge.jobs import layout
from reelforge.jobs.engine_cache import is_remote_engine
from reelforge.jobs.layout import strip_images
from reelforge.jobs.record import JobRecord, JobStatus
from reelforge.jobs.views import duration_s, prompts
from reelforge.request.limits import DEFAULT_SEED
from reelforge.storage import LocalStorage, local_path
from reelforge.media.audio import sound_label
from reelforge.engines.catalog import get_model
from reelforge.request.check import split_automated

# Files are served by the server's extension route, which answers HTTP Range requests.
FILE_URL = "/reelforge/jobs/{id}/files/{name}"
JOB_URL = "/gallery/jobs/{id}"
RERUN_TAG = "reelforge:rerun-of"  # on a job made by "run again": the job it repeats

_SHOT_FILE = layout.SHOT_FILE
_FILE_LABELS = {
    layout.VIDEO: "Video (MP4, H.264)",
    layout.CONTACT_SHEET: "Contact sheet (PNG)",
    layout.POSTER: "Poster frame (JPEG)",
    layout.MANIFEST: "Manifest (JSON)",
    layout.STATUS: "Bedrock status file (JSON)",
}


def file_url(job_id: str, name: str) -> str:
    return FILE_URL.format(id=job_id, name=name)


def job_url(job_id: str) -> str:
    return JOB_URL.format(id=job_id)


def when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else ""


def iso(t: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else ""


def count_line(n: int, *, filtered: bool, first_page: bool, more: bool) -> str:
    """The list's count: exact when the page holds every job, else what the page shows (no total is known)."""
    jobs = f"{n} job{'s' if n != 1 else ''}"
    matching = "matching " if filtered else ""
    if first_page and not more:
        return f"{jobs} match{'es' if n == 1 else ''}" if filtered else jobs
    if first_page:
        return f"The newest {n} {matching}jobs"
    return f"{n} older {matching}job{'s' if n != 1 else ''}"


# The largest starting image the job page shows (decoded bytes); Nova's own limit is far below.
MAX_START_IMAGE = 16 * 1024 * 1024
_IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg"}


def _inline_image(node: Any) -> dict[str, Any] | None:
    """The first ``{"format": ..., "source": {"bytes": ...}}`` in a request, depth first."""
    if isinstance(node, dict):
        source = node.get("source")
        if isinstance(source, dict) and isinstance(source.get("bytes"), str) and str(node.get("format", "")).lower() in _IMAGE_TYPES:
            return node
        children: Iterable[Any] = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        hit = _inline_image(child)
        if hit is not None:
            return hit
    return None


def start_image_sent(model_input: dict[str, Any]) -> bool:
    """Whether the request carries an inline image small enough for the job page to show."""
    image = _inline_image(model_input)
    return image is not None and len(image["source"]["bytes"]) <= MAX_START_IMAGE * 4 // 3 + 4


def start_image(model_input: dict[str, Any]) -> tuple[str, bytes] | None:
    """(media type, bytes) of the first image sent inline with the request, or None."""
    if not start_image_sent(model_input):
        return None
    image = cast(dict[str, Any], _inline_image(model_input))  # start_image_sent: there is one
    try:
        return _IMAGE_TYPES[str(image["format"]).lower()], base64.b64decode(image["source"]["bytes"], validate=True)
    except (binascii.Error, ValueError):
        return None


def seconds(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s:.1f} s" if s < 120 else f"{int(s // 60)} min {int(s % 60)} s"


def seed(record: JobRecord) -> tuple[int, bool]:
    """(seed, True when the request left it out and the default applies)."""
    cfg = record.model_input.get("videoGenerationConfig", {}) or {}
    return (cfg["seed"], False) if "seed" in cfg else (DEFAULT_SEED, True)


def s3_file_names(record: JobRecord) -> list[str]:
    """The files the worker writes for a completed job, by name."""

    shots = len((record.model_input.get("multiShotManualParams") or {}).get("shots") or [])
    if record.model_input.get("taskType") == "MULTI_SHOT_AUTOMATED":
        params, cfg = record.model_input["multiShotAutomatedParams"], record.model_input["videoGenerationConfig"]
        shots = len(split_automated(params["text"], cfg["durationSeconds"], get_model(record.model_id).limits.shot_seconds))
    return layout.completed_files(shots)


def local_folder(record: JobRecord) -> Path | None:
    return local_path(record.storage_uri) if record.storage_uri.startswith("file://") else None


@dataclass
class Summary:
    """One row of the job list."""

    id: str
    url: str
    status: str
    done: bool
    progress: float
    stage: str
    model_id: str
    duration_s: int | None
    seed: int
    default_seed: bool  # the request left the seed out; Nova's default applies
    prompt: str
    submitted: str
    submitted_iso: str
    failure_message: str | None
    poster_url: str | None


def summary(record: JobRecord) -> Summary:
    folder = local_folder(record)
    poster = None
    in_s3 = record.storage_uri.startswith("s3://")  # the worker writes poster.jpg for every completed job
    if record.status is JobStatus.COMPLETED and (in_s3 or (folder is not None and (folder / layout.POSTER).is_file())):
        poster = file_url(record.id, layout.POSTER)
    s, default = seed(record)
    return Summary(
        id=record.id,
        url=job_url(record.id),
        status=record.status.value,
        done=record.status.done,
        progress=record.progress,
        stage=record.stage,
        model_id=record.model_id,
        duration_s=duration_s(record),
        seed=s,
        default_seed=default,
        prompt=" / ".join(p for p in prompts(record.model_input) if p),
        submitted=when(record.submit_time),
        submitted_iso=iso(record.submit_time),
        failure_message=record.failure_message,
        poster_url=poster,
    )


def live(record: JobRecord) -> dict[str, Any]:
    """What the list's event stream sends; the keys match the server's job detail JSON."""
    s = summary(record)
    return {
        "id": s.id,
        "status": s.status,
        "progress": round(s.progress, 4),
        "stage": s.stage,
        "failureMessage": s.failure_message,
        "posterUrl": s.poster_url,
    }


@dataclass
class FileLink:
    name: str
    label: str
    url: str
    size: str
    leftover: bool = False  # a shot written before the job was canceled or failed; no video was made of it


@dataclass
class Detail:
    """The job page: the summary plus everything needed to make the video again."""

    summary: Summary
    record: JobRecord
    prompts: list[str]
    request_json: str
    metadata_json: str
    timings: list[tuple[str, str]]
    files: list[FileLink] = field(default_factory=list)
    video_url: str | None = None
    contact_sheet_url: str | None = None
    location: str = ""
    rerun_of: str | None = None
    image_url: str | None = None  # the request's starting image, when it was sent inline
    warnings: list[str] = field(default_factory=list)  # a LEGACY model's lifecycle, what the model could not honour
    forwarded_to: str | None = None  # the engine kind and upstream job id of a forwarded job
    webhooks: list[dict] = field(default_factory=list)  # its deliveries (webhooks.shown), never the secret
    sound: str | None = None  # the video's sound track in words, once there is a video


def _file_label(name: str) -> str:
    shot = _SHOT_FILE.fullmatch(name)
    return f"Shot {int(shot.group(1))} (MP4)" if shot else _FILE_LABELS.get(name, name)


# Downloads in the order people want them: the video, its shots, then the rest.
_FILE_ORDER = layout.OUTPUTS


def _file_key(name: str) -> tuple[int, int, str]:
    shot = _SHOT_FILE.fullmatch(name)
    if name == layout.VIDEO:
        return (0, 0, name)
    if shot:
        return (1, int(shot.group(1)), name)
    if name in _FILE_ORDER:
        return (2, _FILE_ORDER.index(name), name)
    return (3, 0, name)


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def detail(record: JobRecord) -> Detail:
    folder = local_folder(record)
    if folder is not None:
        names = LocalStorage().list(record.storage_uri)
        files = [FileLink(n, _file_label(n), file_url(record.id, n), _size((folder / n).stat().st_size)) for n in names if (folder / n).is_file()]
    elif record.storage_uri.startswith("s3://") and record.status is JobStatus.COMPLETED:
        # Listing S3 for every page view would be slow; a completed job's files are known by name.
        names = s3_file_names(record)
        files = [FileLink(n, _file_label(n), file_url(record.id, n), "") for n in names]
    else:
        names, files = [], []
    files.sort(key=lambda f: _file_key(f.name))
    if record.status in (JobStatus.CANCELED, JobStatus.FAILED):
        ended = "canceled" if record.status is JobStatus.CANCELED else "failed"
        for f in files:
            if _SHOT_FILE.fullmatch(f.name):
                f.leftover = True
                f.label = f"{f.label}, left over from the {ended} job"
    # output.mp4 is published last by the worker, so its presence means the video is whole.
    video = file_url(record.id, layout.VIDEO) if layout.VIDEO in names else None
    sheet = file_url(record.id, layout.CONTACT_SHEET) if layout.CONTACT_SHEET in names else None
    timings = [("Submitted", when(record.submit_time))]
    if record.start_time:
        timings.append(("Started", when(record.start_time)))
        timings.append(("Waited in the queue", seconds(record.start_time - record.submit_time)))
    if record.end_time:
        timings.append(("Ended", when(record.end_time)))
        if record.start_time:
            timings.append(("Ran for", seconds(record.end_time - record.start_time)))
    if isinstance(record.metadata.get("render_encode_s"), (int, float)):
        timings.append(("Rendering and encoding", seconds(record.metadata["render_encode_s"])))
    if record.attempts > 1:
        timings.append(("Attempts", str(record.attempts)))
    rerun = next((t.get("value") for t in record.tags if t.get("key") == RERUN_TAG), None)
    return Detail(
        summary=summary(record),
        record=record,
        prompts=prompts(record.model_input),
        request_json=json.dumps(strip_images(record.model_input), indent=2, ensure_ascii=False),
        metadata_json=json.dumps(record.metadata, indent=2, ensure_ascii=False, default=str) if record.metadata else "",
        timings=timings,
        files=files,
        video_url=video,
        contact_sheet_url=sheet,
        location=record.output_uri,
        rerun_of=rerun,
        image_url=f"{job_url(record.id)}/image" if start_image_sent(record.model_input) else None,
        warnings=job_warnings(record),
        forwarded_to=_forwarded_to(record),
        sound=sound_label(record.metadata.get("audio"), record.audio) if video else None,
    )


def job_warnings(record: JobRecord) -> list[str]:
    """What a job's metadata warns of: its model's lifecycle (LEGACY, with the date) and notes from submit."""
    life = record.metadata.get("lifecycle") or {}
    return ([life["warning"]] if life.get("warning") else []) + [str(n) for n in record.metadata.get("notes", [])]


def _forwarded_to(record: JobRecord) -> str | None:
    if not is_remote_engine(record.engine):
        return None
    route = record.engine_options
    upstream = (record.metadata.get("checkpoint") or {}).get("upstreamId")
    return f"{route['kind']} engine" + (f", upstream job {upstream}" if upstream else "")


"""What submitting a job checks before it is recorded, and the record it makes.

The request is checked against its model, where it is served is fixed (a forward upstream, or a
local engine and its options), the engine checks the request, and the output location is checked
writable; only then is a JobRecord made, with its fingerprint and webhook endpoints. ``Runtime.submit``
(runtime.py) records it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from reelforge import config
from reelforge.engines import get_engine_class, luma
from reelforge.errors import ConfigError, RequestError, StorageError
from reelforge.jobs import lifecycle
from reelforge.jobs import webhooks as webhooks_module
from reelforge.jobs.record import JobRecord, new_job_id, request_fingerprint
from reelforge.engines.catalog import Served, get_model, local_backend, serving
from reelforge.request.model import VideoRequest
from reelforge.request.check import check, check_served
from reelforge.storage.base import join, local_path, to_uri


def new_record(
    runtime,
    model_id: str,
    request: VideoRequest | dict[str, Any],
    output: str | os.PathLike | None,
    *,
    client_token: str | None,
    tags: list[dict[str, str]] | None,
    output_config: dict[str, Any] | None,
    region: str | None,
    wire: str,
    wire_request: dict[str, Any] | None,
    webhook: str | None,
    webhook_events: str | list[str] | None,
    audio: bool,
) -> JobRecord:
    """The record of a job ``runtime`` (its forwards, settings and output mapping) may take; raises naming what is wrong."""
    spec = get_model(model_id)
    forward = runtime.forwards.get(model_id)
    original = request.to_model_input() if isinstance(request, VideoRequest) else request
    notes: list[str] = []
    if spec.input_format == "luma" and not isinstance(request, VideoRequest):
        # checked member by member, named as Luma names them; a forward sends it upstream as it came
        request, notes = luma.to_nova(original, local=forward is None)
        wire_request = {**(wire_request or {}), "modelInput": original}
    parsed = request if isinstance(request, VideoRequest) else VideoRequest.from_model_input(request)
    prepared, shots = check(parsed, spec, None if forward else runtime.fetch_s3)
    metadata: dict[str, Any] = {}
    if forward is not None:
        served = _forwarded(runtime, model_id, spec, forward, parsed, metadata)
    else:
        served = serving(spec)  # fixed now: the job keeps it, whatever a worker's settings say later
        if served.model is not spec:
            check_served(prepared, shots, spec, served.model, served.via)
    engine = get_engine_class(served.engine)
    engine.parse_options(served.options)  # bad options are refused here, not found by a worker
    engine.check_available(served.options)
    engine.check_request(served.options, prepared, shots)  # the model's own grid and tasks
    adapted = [s.adaptation for s in shots if s.adaptation]  # images fitted to the video size, for the manifest
    requested = to_uri(output if output is not None else config.output_dir())
    same = [requested, output_config or {}] + ([wire, wire_request or {}] if wire != "bedrock" else []) + ([] if audio else ["silent"])
    job_id = new_job_id()
    output_uri, storage_uri = _locations(runtime, requested, job_id)
    record = JobRecord(
        id=job_id,
        arn=f"arn:aws:bedrock:{region or runtime.region}:{runtime.account}:async-invoke/{job_id}",
        model_id=model_id,
        model_input=prepared.to_model_input(),
        output_uri=output_uri,
        storage_uri=storage_uri,
        client_token=client_token,
        fingerprint=request_fingerprint(model_id, original, same),
        output_config=output_config or {},
        tags=tags or [],
        metadata={**metadata, **({"adaptations": adapted} if adapted else {}), **({"notes": notes} if notes else {})},
        wire=wire,
        wire_request=wire_request or {},
        audio=audio,
        engine=served.engine,
        engine_options=served.options,
    )
    record.webhooks = webhooks_module.endpoints_for(
        runtime.webhooks, record, url=webhook, kinds=webhook_events,
        named=webhooks_module.tag_endpoint(tags) if wire == "bedrock" else None, base=runtime.public_url,
    )
    return record


def _forwarded(runtime, model_id: str, spec, forward, parsed: VideoRequest, metadata: dict[str, Any]) -> Served:
    """Where a forwarded job goes, fixed now with the job (a worker's own --forward adds only credentials and limits)."""
    served = Served(spec, forward.kind, forward.route())  # the route is the engine's options
    if forward.kind == "openai-videos" and parsed.task_type != "TEXT_VIDEO":
        raise RequestError("taskType", f"{model_id} is forwarded to an OpenAI Videos server, which takes one prompt; allowed: TEXT_VIDEO")
    if forward.kind == "bedrock" and forward.url == "aws" and not forward.output:
        raise ConfigError(f"--forward {forward.entry}: Amazon Bedrock writes videos to S3; add ;output=s3://bucket/prefix to the entry")
    if forward.kind == "bedrock":
        warning = lifecycle.check(forward, runtime.lifecycle, local_backend())
        if warning:
            metadata["lifecycle"] = warning
    return served


def _locations(runtime, requested: str, job_id: str) -> tuple[str, str]:
    """(output URI the caller sees, storage URI the files go to) of a new job; StorageError when a local folder cannot be written."""
    output_uri = join(requested, job_id)
    storage_uri = join(runtime.map_output(requested), job_id) if runtime.map_output else output_uri
    if storage_uri.startswith("file://"):
        try:
            check_writable(local_path(storage_uri).parent)
        except StorageError as exc:
            if storage_uri.startswith(output_uri):
                raise
            # A mapped location (reelforge serve --bucket-dir): name what the caller asked for, not our disk.
            raise StorageError(f"output {requested} cannot be written on this server") from exc
    return output_uri, storage_uri


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"output folder {folder} cannot be created: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise StorageError(f"output folder {folder} is not writable")

"""Replies from a reelforge server or Amazon Bedrock as reelforge values: job records and errors."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any, cast

from reelforge.errors import ConflictError, JobNotFoundError, ReelforgeError, RequestError
from reelforge.jobs.record import JobRecord, JobStatus

_FIELD_MESSAGE = re.compile(r"^([A-Za-z][\w.\[\]]*): (.+)$", re.DOTALL)
_FROM_BEDROCK = {"InProgress": JobStatus.RUNNING, "Completed": JobStatus.COMPLETED, "Failed": JobStatus.FAILED}


def reply_error(code: str, message: str, ref: str) -> ReelforgeError:
    """A Bedrock error reply as the reelforge error the embedded path would raise."""
    code = code.split(":", 1)[0]
    if code == "ValidationException":
        m = _FIELD_MESSAGE.match(message)
        return RequestError(m.group(1), m.group(2)) if m else RequestError("request", message)
    if code == "ConflictException":
        return ConflictError(message)
    if code == "ResourceNotFoundException":
        err = JobNotFoundError(ref)
        if "has expired" in message:  # pruned by the server's retention: say so, not "no job"
            err.args = (message,)
        return err
    if code == "AccessDeniedException":
        return ReelforgeError(f"access denied: {message}")
    return ReelforgeError(f"{code}: {message}" if code else message)


def epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def record_from_detail(d: dict[str, Any]) -> JobRecord:
    """A JobRecord from a reelforge server's /reelforge/jobs/{id} reply."""
    return JobRecord(
        id=d["id"],
        arn=d["invocationArn"],
        model_id=d["modelId"],
        model_input=d.get("modelInput") or {},
        output_uri=d["s3Uri"],
        storage_uri=d["s3Uri"],  # the server's disk is not ours: always go through the server or S3
        client_token=d.get("clientRequestToken"),
        status=JobStatus(d["status"]),
        progress=d.get("progress", 0.0),
        stage=d.get("stage", ""),
        submit_time=cast(float, epoch(d["submitTime"])),
        start_time=epoch(d.get("startTime")),
        end_time=epoch(d.get("endTime")),
        last_modified=epoch(d.get("lastModifiedTime")) or time.time(),
        failure_message=d.get("failureMessage"),
        attempts=d.get("attempts", 0),
        output_config=d.get("outputConfig") or {},
        tags=d.get("tags") or [],
        metadata=d.get("metadata") or {},
    )


def record_from_summary(s: dict[str, Any]) -> JobRecord:
    """A JobRecord from a GetAsyncInvoke reply or a ListAsyncInvokes summary (Bedrock's words only)."""
    status = _FROM_BEDROCK.get(s.get("status", "InProgress"), JobStatus.RUNNING)
    s3 = s["outputDataConfig"]["s3OutputDataConfig"]
    arn = s["invocationArn"]
    return JobRecord(
        id=arn.rsplit("/", 1)[-1],
        arn=arn,
        model_id=s["modelArn"].split("foundation-model/", 1)[-1],
        model_input={},
        output_uri=s3["s3Uri"],
        storage_uri=s3["s3Uri"],
        client_token=s.get("clientRequestToken"),
        status=status,
        progress=1.0 if status is JobStatus.COMPLETED else 0.0,
        stage=status.value.lower(),
        submit_time=cast(float, epoch(s["submitTime"])),
        end_time=epoch(s.get("endTime")),
        last_modified=epoch(s.get("lastModifiedTime")) or time.time(),
        failure_message=s.get("failureMessage"),
        output_config={k: v for k, v in s3.items() if k != "s3Uri"},
    )


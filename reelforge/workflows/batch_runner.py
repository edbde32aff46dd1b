"""BatchRunner: a batch's checked lines through a Client, a few jobs at a time, resumable; the report of each line.

Capacity. At most ``concurrency`` jobs are in flight. A ThrottlingException or
ServiceQuotaExceededException (Amazon Bedrock: the quota of concurrent async jobs) makes the
runner wait with exponential backoff and resubmit with the *same* token; a quota error also
lowers the limit to the jobs then in flight, for the rest of the run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, cast

from reelforge.jobs import layout
from reelforge.storage import join
from reelforge.errors import JobExpiredError, RequestError
from reelforge.jobs.record import PrunedJob
from reelforge.workflows.batch import BatchItem
from reelforge.workflows.estimate import is_aws_endpoint

CAPACITY_ERRORS = ("ThrottlingException", "ServiceQuotaExceededException", "TooManyRequestsException")
NOT_SUBMITTED = "NOT_SUBMITTED"


@dataclass
class Counts:
    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    queued: int = 0
    skipped: int = 0  # finished before this run (a rerun)
    throttled: int = 0  # capacity errors met so far
    limit: int = 0  # current concurrency limit


@dataclass
class LineResult:
    """A line's outcome: the row of the report."""

    line: int
    job_id: str | None
    status: str  # a JobStatus value, or NOT_SUBMITTED
    output: str | None
    estimated_cost_usd: float | None
    seconds: int
    prompt: str
    run: str = ""  # submitted | resumed | already done
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def capacity_error(exc: BaseException | None) -> str | None:
    """The error code when ``exc`` (or what it wraps) is a throttling or quota error, else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        codes = [type(exc).__name__, str(getattr(exc, "code", "") or "")]
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            codes.insert(0, str((response.get("Error") or {}).get("Code", "")))
        # reelforge.client.remote words Bedrock errors as "<Code>: <message>"
        codes.append(str(exc).split(":", 1)[0].strip())
        for code in codes:
            if code in CAPACITY_ERRORS:
                return code
        exc = exc.__cause__ or exc.__context__
    return None


@dataclass
class _InFlight:
    item: BatchItem
    job: Any
    how: str
    status: str


@dataclass
class BatchRunner:
    """Run batch items through a Client (embedded, a reelforge server, or Amazon Bedrock).

    ``on_update(counts, result)`` is called after every change (``result`` is set when a line
    ends). Library code: nothing is printed.
    """

    client: Any
    items: list[BatchItem]
    concurrency: int = 4
    output: str | os.PathLike | None = None
    poll_s: float | None = None
    backoff_s: tuple[float, float] = (2.0, 120.0)  # first wait, longest wait
    on_update: Callable[[Counts, LineResult | None], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    batch_name: str = "batch"
    retry_failed: int = 0  # resubmit lines whose earlier job failed, up to this many more times
    counts: Counts = field(init=False)

    def __post_init__(self):
        if self.concurrency < 1:
            raise RequestError("concurrency", f"{self.concurrency} is not allowed; allowed: 1 or more")
        endpoint = getattr(self.client, "endpoint", None)
        if self.poll_s is None:
            self.poll_s = 10.0 if is_aws_endpoint(endpoint) else (1.0 if endpoint else 0.25)
        self.counts = Counts(total=len(self.items), queued=len(self.items), limit=self.concurrency)

    def run(self) -> list[LineResult]:
        """Submit and follow every item; return one result per item, in input order."""
        self._started = time.time()
        self._pending = deque(self.items)
        self._inflight: dict[int, _InFlight] = {}
        self._results: dict[int, LineResult] = {}
        self._delay, self._not_before = self.backoff_s[0], 0.0
        self._attempt: dict[int, int] = {}
        self._emit(None)
        while self._pending or self._inflight:
            self._submit_some()
            if self._inflight:
                self._poll()
            elif self._pending:
                self.sleep(max(0.0, self._not_before - self.clock()))
        return [self._results[i.line] for i in self.items]

    def _submit_some(self) -> None:
        while self._pending and len(self._inflight) < self.counts.limit and self.clock() >= self._not_before:
            item = self._pending[0]
            attempt = self._attempt.get(item.line, 0)
            try:
                job = self.client.start(
                    item.request, model=item.model_id, output=self.output, client_token=retry_token(item.token, attempt),
                    tags={"reelforge-batch": self.batch_name[:256], "reelforge-line": str(item.line)},
                )
                rec = _refresh(job)
            except Exception as exc:  # noqa: BLE001 - every submit failure ends up in the report
                code = capacity_error(exc)
                if code is None:
                    self._pending.popleft()
                    self._finish(LineResult(item.line, None, NOT_SUBMITTED, None, item.estimated_cost_usd, item.seconds, item.prompt, "", _one_line(exc)))
                    continue
                # Back off, then resubmit the same line with the same token (never a second job).
                self.counts.throttled += 1
                if code == "ServiceQuotaExceededException" and self._inflight:
                    self.counts.limit = max(1, len(self._inflight))
                self._not_before = self.clock() + self._delay * random.uniform(0.8, 1.2)
                self._delay = min(self._delay * 2, self.backoff_s[1])
                self._emit(None)
                return
            self._delay = self.backoff_s[0]
            earlier = rec.submit_time < self._started - 1e-3
            if earlier and rec.status.value in ("FAILED", "CANCELED") and attempt < self.retry_failed:
                self._attempt[item.line] = attempt + 1  # a new token: the failed job stays in the log
                continue
            self._pending.popleft()
            if rec.status.done:
                self.counts.skipped += earlier
                self._finish(self._result(item, job, rec, "already done" if earlier else "submitted"))
            else:
                self._inflight[item.line] = _InFlight(item, job, "resumed" if earlier else "submitted", rec.status.value)
                self._recount()
                self._emit(None)

    def _poll(self) -> None:
        first = next(iter(self._inflight.values())).job
        backend = getattr(self.client, "backend", None)  # a reelforge Client's (reelforge.client.backend.Backend)
        if backend is not None:
            backend.wait_for_change(first.id, self.poll_s)
        else:
            self.sleep(cast(float, self.poll_s))  # set in __post_init__
        changed = False
        for line, f in list(self._inflight.items()):
            try:
                rec = _refresh(f.job)
            except Exception as exc:  # noqa: BLE001
                if capacity_error(exc):
                    continue  # polling was throttled; look again next round
                raise
            if rec.status.done:
                del self._inflight[line]
                self._recount()
                self._finish(self._result(f.item, f.job, rec, f.how))
            elif rec.status.value != f.status:
                f.status = rec.status.value
                changed = True
        if changed:
            self._recount()
            self._emit(None)

    def _result(self, item: BatchItem, job: Any, rec: Any, how: str) -> LineResult:
        output = None
        if isinstance(rec, PrunedJob):  # the line's job ended long ago and retention removed it: not run again
            gone = JobExpiredError(rec.id, rec)
            return LineResult(item.line, rec.id, rec.status.value, None, item.estimated_cost_usd, item.seconds, item.prompt, how, f"expired: {gone.expiry}")
        if rec.status.value == "COMPLETED":
            path = getattr(job, "video_path", None) if getattr(self.client, "endpoint", None) is None else None
            output = str(path) if path else join(rec.output_uri, layout.VIDEO)
        return LineResult(item.line, rec.id, rec.status.value, output, item.estimated_cost_usd, item.seconds, item.prompt, how, rec.failure_message)

    def _finish(self, result: LineResult) -> None:
        self._results[result.line] = result
        if result.status == "COMPLETED":
            self.counts.done += 1
        else:
            self.counts.failed += 1
        self._recount()
        self._emit(result)

    def _recount(self) -> None:
        running = sum(1 for f in self._inflight.values() if f.status == "RUNNING")
        self.counts.running = running
        self.counts.queued = len(self._pending) + len(self._inflight) - running

    def _emit(self, result: LineResult | None) -> None:
        if self.on_update is not None:
            self.on_update(self.counts, result)


def _refresh(job: Any) -> Any:
    """The job's record; a pruned job's tombstone (a PrunedJob) once retention removed it."""
    try:
        return job.refresh()
    except JobExpiredError as exc:
        return exc.job


def retry_token(token: str, attempt: int) -> str:
    """The token of a line's ``attempt``-th retry (0: the line's own token); stable across runs too."""
    return token if attempt == 0 else f"{token}-r{attempt}"


def write_report(results: list[LineResult], path: str | os.PathLike) -> Path:
    """The report as CSV, or JSON when ``path`` ends in .json; written atomically."""
    from reelforge.media.files import atomic_write_bytes

    path = Path(path)
    rows = [r.to_dict() for r in results]
    if path.suffix.lower() == ".json":
        data = json.dumps(rows, indent=2).encode()
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(LineResult.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(rows)
        data = buf.getvalue().encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, data)


def default_report_path(batch_file: str | os.PathLike) -> Path:
    p = Path(batch_file)
    return p.with_name(p.name + ".report.csv")  # prompts.jsonl and prompts.csv keep reports apart


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

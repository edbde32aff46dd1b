"""Batches: many prompts from a JSONL or CSV file, a few jobs at a time, resumable.

Input. JSONL: one JSON object (or a bare JSON string, the prompt) per line; blank lines and lines
starting with ``#`` are skipped. CSV: a header row naming the columns, one video per row; an
empty cell means "not given". Fields: ``prompt`` (required; ``text`` is accepted too), and
optionally ``model``, ``duration``, ``fps``, ``resolution`` (WIDTHxHEIGHT), ``seed``, ``image``
(a path relative to the batch file) and ``fit`` (crop|pad). Fields left out take the batch's
defaults (the command line's ``--model``, ``--duration``...).

Resumable. Each line's client request token is a hash of the batch file (its resolved path),
the line number and the line's normalized content (model id, the request's ``modelInput``, the
engine options it runs with here, the output location). Submitting a line again returns the job
already started for it, so a rerun after a crash or ``kill -9`` skips finished lines, follows the
ones still running, and starts only the rest: no line ever has two jobs, and line 3 of another
file (or of this one with other engine options) is never taken for this one.

Checked first. Every line is parsed and checked before anything is submitted; the error names
every bad line (the first ``MAX_REPORTED``, then how many more).

Capacity. At most ``concurrency`` jobs are in flight. A ThrottlingException or
ServiceQuotaExceededException (Amazon Bedrock: the quota of concurrent async jobs) makes the
runner wait with exponential backoff and resubmit with the *same* token; a quota error also
lowers the limit to the jobs then in flight, for the rest of the run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from reelforge import config
from reelforge.errors import JobExpiredError, ReelforgeError, RequestError
from reelforge.workflows.estimate import estimate, is_aws_endpoint
from reelforge.request.model import ImageInput, VideoRequest, parse_dimension
from reelforge.request.check import check
from reelforge.jobs import layout
from reelforge.jobs.record import PrunedJob
from reelforge.storage.base import join

FIELDS = ("prompt", "text", "model", "duration", "fps", "resolution", "seed", "image", "fit")
CAPACITY_ERRORS = ("ThrottlingException", "ServiceQuotaExceededException", "TooManyRequestsException")
NOT_SUBMITTED = "NOT_SUBMITTED"
MAX_REPORTED = 20  # bad lines named in one error; the rest are counted


class BatchError(RequestError):
    """A batch file with lines that cannot become requests; names the file, line and field.

    ``problems`` holds one BatchError per bad line; the message lists them, one a line.
    """

    def __init__(self, path: str | os.PathLike, line: int | None, field_name: str, message: str):
        self.path, self.line, self.field_name, self.problem = str(path), line, field_name, message
        where = f"{path} line {line}" if line else str(path)
        super().__init__(f"{where}: {field_name}" if field_name else where, message)
        self.problems = [self]

    @classmethod
    def of(cls, problems: list["BatchError"]) -> "BatchError":
        """One error naming every bad line (up to MAX_REPORTED), in file order."""
        first = problems[0]
        if len(problems) == 1:
            return first
        err = cls(first.path, first.line, first.field_name, first.problem)
        err.problems = list(problems)
        rest = len(problems) - MAX_REPORTED
        lines = [str(p) for p in problems[:MAX_REPORTED]]
        if rest > 0:
            lines.append(f"... and {rest} more line{'s' if rest != 1 else ''} with problems")
        err.args = ("\n".join(lines),)
        return err


@dataclass(frozen=True)
class BatchItem:
    """One line, parsed and checked: what will be submitted for it."""

    line: int
    model_id: str
    request: VideoRequest
    token: str
    seconds: int
    estimated_cost_usd: float | None
    estimated_time_s: float | None

    @property
    def prompt(self) -> str:
        return " | ".join(self.request.shot_texts())


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


# --- reading --------------------------------------------------------------------------------
def read_batch(
    path: str | os.PathLike,
    *,
    defaults: dict[str, Any] | None = None,
    output: str | os.PathLike | None = None,
    endpoint: str | None = None,
    store: Any = None,
) -> list[BatchItem]:
    """Parse and check every line; raise BatchError naming every bad line (nothing is submitted).

    ``defaults`` holds values for fields a line leaves out (keys as in the file). ``output`` and
    ``endpoint`` go into each line's token and estimate; ``store`` is a job log to learn timings from.
    """
    path = Path(path)
    defaults = {k: v for k, v in (defaults or {}).items() if v is not None}
    rows = list(_rows(path))
    if not rows:
        raise BatchError(path, None, "", "has no lines to run")
    items, problems = [], []
    out_key = _output_key(output, endpoint)
    source = str(path.resolve())
    for line, raw in rows:
        try:
            if isinstance(raw, BatchError):
                raise raw
            model_id, request = _request(path, line, raw, defaults)
            rows_est = estimate(request, model_id, endpoint=endpoint, store=store)
            options = None if endpoint else _engine_options(model_id)  # a server's options are its own
        except BatchError as exc:
            problems.append(exc)
            continue
        except ReelforgeError as exc:
            field_name = getattr(exc, "field", "")
            message = getattr(exc, "message", str(exc))
            problems.append(BatchError(path, line, _field_name(field_name), message))
            continue
        row = rows_est[-1]  # where it will run: Bedrock on AWS, otherwise here/the server
        token = line_token(source, line, model_id, request, out_key, options)
        items.append(BatchItem(line, model_id, request, token, row.seconds, row.cost_usd, row.time_s))
    if problems:
        raise BatchError.of(problems)
    return items


def line_token(source: str, line: int, model_id: str, request: VideoRequest, output_key: str | None,
               engine_options: dict[str, Any] | None = None) -> str:
    """The client request token of a batch line: stable across runs of one file, different for anything else."""
    blob = json.dumps([source, line, model_id, request.to_model_input(), output_key, engine_options],
                      sort_keys=True, separators=(",", ":"))
    return "rfb-" + hashlib.sha256(blob.encode()).hexdigest()[:40]


def _engine_options(model_id: str) -> dict[str, Any]:
    from reelforge.engines.catalog import engine_for, get_model

    engine_id, options = engine_for(get_model(model_id))
    return {"engine": engine_id, **options}


def _output_key(output: str | os.PathLike | None, endpoint: str | None) -> str | None:
    if output is None:
        return None
    text = os.fspath(output)
    if endpoint or "://" in text:
        return text.rstrip("/")
    from reelforge.storage.base import to_uri

    return to_uri(text)


def _rows(path: Path) -> Iterable[tuple[int, Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BatchError(path, None, "", f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BatchError(path, None, "", "is not UTF-8 text") from None
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        for n, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            try:
                yield n, json.loads(raw)
            except json.JSONDecodeError as exc:  # reported with the other bad lines
                yield n, BatchError(path, n, "", f"not valid JSON: {exc.msg} (column {exc.colno})")
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            return
        header = [h.strip() for h in reader.fieldnames]
        unknown = [h for h in header if h not in FIELDS]
        if unknown:
            raise BatchError(path, 1, unknown[0], f"unknown column; allowed: {', '.join(FIELDS)}")
        if "prompt" not in header and "text" not in header:
            raise BatchError(path, 1, "prompt", "the header needs a 'prompt' column")
        reader.fieldnames = header
        start = 2
        for row in reader:
            values = {k: v.strip() for k, v in row.items() if isinstance(v, str) and v.strip() != ""}
            if None in row:  # more cells than the header names
                yield start, BatchError(path, start, "", f"has {len(header) + len(row[None])} cells; the header names {len(header)}")
            elif values:
                yield start, values
            start = reader.line_num + 1
    else:
        raise BatchError(path, None, "", "a batch file is .jsonl (one JSON object a line) or .csv with a header row")


def _request(path: Path, line: int, raw: Any, defaults: dict[str, Any]) -> tuple[str, VideoRequest]:
    if isinstance(raw, str):
        raw = {"prompt": raw}
    if not isinstance(raw, dict):
        raise BatchError(path, line, "", f"must be a JSON object with 'prompt' (or a JSON string), got {type(raw).__name__}")
    for key in raw:
        if key not in FIELDS:
            raise BatchError(path, line, key, f"unknown field; allowed: {', '.join(FIELDS)}")
    if "prompt" in raw and "text" in raw:
        raise BatchError(path, line, "text", "give 'prompt' or 'text', not both")
    values = {**defaults, **raw}
    prompt, text = values.pop("prompt", None), values.pop("text", None)
    prompt = text if prompt is None else prompt
    if not isinstance(prompt, str) or not prompt.strip():
        raise BatchError(path, line, "prompt", "is required: the text of the video")
    model_id = values.get("model") or config.DEFAULT_MODEL
    fields: dict[str, Any] = {"text": prompt}
    for key, target in (("duration", "duration_s"), ("fps", "fps"), ("seed", "seed")):
        if key in values:
            fields[target] = _int(path, line, key, values[key])
    if "resolution" in values:
        try:
            fields["width"], fields["height"] = parse_dimension(values["resolution"], "resolution")
        except RequestError as exc:
            raise BatchError(path, line, "resolution", exc.message) from None
    if "fit" in values:
        if values["fit"] not in ("crop", "pad"):
            raise BatchError(path, line, "fit", f"{values['fit']!r} is not allowed; allowed: crop, pad")
        fields["fit"] = values["fit"]
    if "image" in values:
        image = Path(str(values["image"])).expanduser()
        image = image if image.is_absolute() else path.parent / image
        if not image.is_file():
            raise BatchError(path, line, "image", f"no file {image} (image paths are relative to the batch file)")
        try:
            fields["image"] = ImageInput.from_source(image, "image")
        except RequestError as exc:
            raise BatchError(path, line, "image", f"{image}: {exc.message}") from None
    request = VideoRequest(**fields)
    from reelforge.engines.catalog import get_model

    try:
        check(request, get_model(model_id))
    except RequestError as exc:
        raise BatchError(path, line, _field_name(exc.field), exc.message) from None
    except ReelforgeError as exc:  # an unknown model id
        raise BatchError(path, line, "model", str(exc).removeprefix("modelId: ")) from None
    return model_id, request


def _int(path: Path, line: int, key: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BatchError(path, line, key, f"must be a whole number, got {value!r}")
    return value


_NAMES = {
    "videoGenerationConfig.durationSeconds": "duration",
    "videoGenerationConfig.fps": "fps",
    "videoGenerationConfig.dimension": "resolution",
    "videoGenerationConfig.seed": "seed",
    "textToVideoParams.text": "prompt",
    "textToVideoParams.images[0]": "image",
    "modelId": "model",
}


def _field_name(field_path: str) -> str:
    return _NAMES.get(field_path, field_path)


# --- running --------------------------------------------------------------------------------
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
        waiter = getattr(getattr(self.client, "_backend", None), "wait_for_change", None)
        if waiter is not None:
            waiter(first.id, self.poll_s)
        else:
            self.sleep(self.poll_s)
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
    from reelforge.media.video import atomic_write_bytes

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

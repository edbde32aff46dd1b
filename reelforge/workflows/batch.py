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

Running them: reelforge.workflows.batch_runner.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from reelforge.errors import ReelforgeError, RequestError
from reelforge.workflows.batch_line import FIELDS, LineError, field_name, parse_line
from reelforge.workflows.estimate import estimate
from reelforge.request.model import VideoRequest

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
            message = getattr(exc, "message", str(exc))
            problems.append(BatchError(path, line, field_name(getattr(exc, "field", "")), message))
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
    from reelforge.storage import to_uri

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
    """A line as (model id, request), checked against its model (workflows/batch_line.py)."""
    try:
        return parse_line(raw, defaults, path.parent)
    except LineError as exc:
        raise BatchError(path, line, exc.field, exc.message) from None

"""Dry-run estimates of what a request costs and how long it takes, before anything is submitted.

Two sources, each carried with its figure so a reader can judge it:

- **Price** per model id. Nova Reel on Amazon Bedrock: USD 0.08 per generated second, a
  *third-party* figure (calesthio/generative-media-skills, citing aws.amazon.com/bedrock/pricing)
  as of 2026-07-10, not confirmed by AWS. Local engines have no per-second charge.
- **Time.** Bedrock: AWS's documented latency (about 90 s for 6 s, 14-17 min for 120 s),
  interpolated. Local engines: measured seconds per frame,
  ``overhead_s + frames * (base_s + per_megapixel_s * megapixels)``. The animatic figures below
  come from ``bench/bench_estimate.py`` on this project's CI machine; completed jobs in the job log
  (their recorded render time) correct them for the machine at hand, and
  ``REELFORGE_S_PER_FRAME`` (``0.02`` or ``animatic=0.02,diffusers=4``) overrides them outright.

Nothing here writes anything: estimating a request never records a job.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from typing import Any, Iterable, cast
from urllib.parse import urlparse

from reelforge.engines.catalog import add_forwarded, engine_for, get_model
from reelforge.engines.forward import Forwards
from reelforge.errors import RequestError
from reelforge.jobs.record import JobStatus
from reelforge.request.check import check
from reelforge.request.limits import ModelSpec
from reelforge.request.model import VideoRequest

NOVA_USD_PER_SECOND = 0.08
NOVA_PRICE_SOURCE = (
    "USD 0.08/s: third-party figure as of 2026-07-10 (calesthio/generative-media-skills, "
    "citing aws.amazon.com/bedrock/pricing); not confirmed by AWS"
)
# Per-model price per generated second on Amazon Bedrock.
BEDROCK_PRICES: dict[str, tuple[float, str]] = {
    "amazon.nova-reel-v1:0": (NOVA_USD_PER_SECOND, NOVA_PRICE_SOURCE),
    "amazon.nova-reel-v1:1": (NOVA_USD_PER_SECOND, NOVA_PRICE_SOURCE),
}
# AWS: "about 90 seconds for a 6 second video", "approximately 14-17 minutes for a 2 minute video".
BEDROCK_LATENCY = ((6, 90.0), (120, 15.5 * 60))
BEDROCK_LATENCY_SOURCE = "AWS docs: ~90 s for 6 s, 14-17 min for 120 s (interpolated)"
# Default concurrent async jobs per account (third-party figure, UNCONFIRMED by AWS).
BEDROCK_CONCURRENCY_QUOTA = {"amazon.nova-reel-v1:0": 10, "amazon.nova-reel-v1:1": 3}


@dataclass(frozen=True)
class FrameRate:
    """Seconds a local engine takes: ``overhead_s + frames * (base_s + per_megapixel_s * MP)``."""

    base_s: float
    per_megapixel_s: float
    overhead_s: float
    source: str

    def seconds_per_frame(self, width: int, height: int) -> float:
        return self.base_s + self.per_megapixel_s * width * height / 1e6


# Measured with `python bench/bench_estimate.py` (render + H.264 encode, one worker thread).
# Runs on that shared 2-vCPU machine varied by about +-30 %; the job log corrects it where you run.
MEASURED: dict[str, FrameRate] = {
    "animatic": FrameRate(
        base_s=0.0028,
        per_megapixel_s=0.0228,
        overhead_s=0.10,
        source="bench/bench_estimate.py on a 2-vCPU Intel Xeon, 2026-11-24",
    ),
    "animatic-v2": FrameRate(  # measured at load average 8-11 (other sessions running): pessimistic
        base_s=0.0040,
        per_megapixel_s=0.0295,
        overhead_s=0.40,
        source="bench/bench_estimate.py --engine animatic-v2 on a 2-vCPU x86_64, 2026-12-02",
    ),
}

LEARN_FROM_LAST = 50  # completed jobs per engine read from the job log
SIZE_RANGE = 4.0  # learn only from jobs with between 1/4 and 4 times the pixels asked for


@dataclass(frozen=True)
class Estimate:
    """One row of a dry run: a request (or several) on one model, run in one place."""

    model_id: str
    where: str  # "Amazon Bedrock", "here (<engine>)" or "server (<engine>?)": a reelforge server, engine assumed
    jobs: int
    shots: int
    seconds: int  # seconds of video
    frames: int
    cost_usd: float | None  # None: unknown
    cost_basis: str
    time_s: float | None  # summed over the jobs; None: unknown
    time_basis: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def is_aws_endpoint(endpoint: str | None) -> bool:
    """True for an Amazon Bedrock runtime endpoint (as opposed to a reelforge server)."""
    if not endpoint:
        return False
    host = (urlparse(endpoint if "://" in endpoint else f"https://{endpoint}").hostname or "").lower()
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


def request_shape(request: VideoRequest, spec: ModelSpec) -> tuple[int, int, int]:
    """(shots, seconds, frames) of a request once checked against its model."""
    _, shots = check(request, spec)
    seconds = sum(s.duration_s for s in shots)
    return len(shots), seconds, seconds * request.fps


def bedrock_latency_s(seconds: int) -> float:
    (s0, t0), (s1, t1) = BEDROCK_LATENCY
    return t0 + (seconds - s0) * (t1 - t0) / (s1 - s0)


def estimate(
    request: VideoRequest,
    model_id: str,
    *,
    endpoint: str | None = None,
    store: Any = None,
    s_per_frame: float | None = None,
) -> list[Estimate]:
    """Rows for one request: on Bedrock (Bedrock model ids), and where it would run here.

    ``store`` is a job log to learn local timings from (None: the measured table only).
    Raises RequestError when the request does not fit the model, as submitting would.
    """
    forward = Forwards.from_env().get(model_id) if not endpoint else None
    if forward is not None:
        add_forwarded(model_id, forward.kind)
    spec = get_model(model_id)
    shots, seconds, frames = request_shape(request, spec)
    rows = []
    if forward is not None:
        return [forwarded_estimate(forward, model_id, shots, seconds, frames)]
    if spec.bedrock_id:
        price, source = BEDROCK_PRICES.get(model_id, (None, "no price on record for this model id"))
        rows.append(Estimate(
            model_id, "Amazon Bedrock", 1, shots, seconds, frames,
            None if price is None else round(price * seconds, 2), source,
            bedrock_latency_s(seconds), BEDROCK_LATENCY_SOURCE,
        ))
    if is_aws_endpoint(endpoint):
        if not rows:
            raise RequestError("modelId", f"{model_id} is not an Amazon Bedrock model id; it cannot run on {endpoint}")
        return rows
    engine_id, _ = engine_for(spec)
    where = f"here ({engine_id})" if not endpoint else f"server ({engine_id}?)"
    rate, basis = local_rate(engine_id, store=store, override=s_per_frame, size=(request.width, request.height))
    time_s = None if rate is None else rate.overhead_s + frames * rate.seconds_per_frame(request.width, request.height)
    rows.append(Estimate(
        model_id, where, 1, shots, seconds, frames, 0.0, "runs on your hardware: no per-second charge", time_s, basis,
    ))
    return rows


def forwarded_estimate(forward, model_id: str, shots: int, seconds: int, frames: int) -> Estimate:
    """A forwarded request's row: the upstream's price where configured (usd-per-s) or documented (Amazon's), else unknown."""
    where = f"forwarded ({forward.kind})"
    price, basis = None, "price unknown: none documented for this upstream; add ;usd-per-s=PRICE@DATE to its --forward entry"
    if forward.usd_per_s:
        price, basis = forward.usd_per_s[0], f"USD {forward.usd_per_s[0]:g}/s configured in --forward / REELFORGE_FORWARD, as of {forward.usd_per_s[1]}"
    elif forward.kind == "bedrock" and forward.url == "aws" and model_id in BEDROCK_PRICES:
        price, basis = BEDROCK_PRICES[model_id]
    time_s, time_basis = None, "upstream time unknown"
    if forward.kind == "bedrock" and forward.url == "aws":
        time_s, time_basis = bedrock_latency_s(seconds), BEDROCK_LATENCY_SOURCE
    return Estimate(model_id, where, 1, shots, seconds, frames, None if price is None else round(price * seconds, 2), basis, time_s, time_basis)


def local_rate(
    engine_id: str, *, store: Any = None, override: float | None = None, size: tuple[int, int] | None = None
) -> tuple[FrameRate | None, str]:
    """The frame rate model for a local engine at ``size``, and a sentence saying where it comes from."""
    forced = override if override is not None else _env_override(engine_id)
    if forced is not None:
        return FrameRate(forced, 0.0, 0.0, "override"), f"{forced:g} s/frame (override)"
    measured = MEASURED.get(engine_id)
    learned = learn(engine_id, store, measured, size) if store is not None else None
    if learned is not None:
        rate, n = learned
        return rate, f"learned from {n} completed job{'s' if n != 1 else ''} in the job log"
    if measured is not None:
        return measured, f"measured: {measured.source}"
    return None, f"unknown: no measurement for the {engine_id} engine yet (a completed job teaches it)"


def learn(engine_id: str, store: Any, measured: FrameRate | None, size: tuple[int, int] | None = None) -> tuple[FrameRate, int] | None:
    """Fit the frame rate to recent completed jobs of ``engine_id``; None when none are usable.

    With a measured figure, its shape (per-megapixel slope) is kept and scaled by the median of
    observed / predicted; without one, the median observed seconds per frame is used as is.
    Only jobs within a factor of SIZE_RANGE in pixels of ``size`` count: per-shot setup weighs on
    tiny videos, so their rate says little about large ones.
    """
    try:
        records = store.list(statuses=[JobStatus.COMPLETED], limit=500)
    except Exception:  # an unreadable job log must not stop a dry run
        return None
    ratios, per_frame = [], []
    for rec in records:
        sample = job_timing(rec)
        if sample is None or sample[0] != engine_id:
            continue
        _, secs, frames, width, height = sample
        if size is not None and not 1 / SIZE_RANGE <= (width * height) / (size[0] * size[1]) <= SIZE_RANGE:
            continue
        per_frame.append(secs / frames)
        if measured is not None:
            ratios.append(secs / (frames * measured.seconds_per_frame(width, height)))
        if len(per_frame) >= LEARN_FROM_LAST:
            break
    if not per_frame:
        return None
    if measured is not None:
        k = statistics.median(ratios)
        return FrameRate(measured.base_s * k, measured.per_megapixel_s * k, measured.overhead_s, "job log"), len(ratios)
    return FrameRate(statistics.median(per_frame), 0.0, 0.0, "job log"), len(per_frame)


def job_timing(rec: Any) -> tuple[str, float, int, int, int] | None:
    """(engine, render seconds, frames, width, height) of a completed job, from its recorded timings."""
    meta = rec.metadata or {}
    engine_id = meta.get("engine") or getattr(rec, "engine", "")
    if not engine_id:
        try:
            engine_id, _ = engine_for(get_model(rec.model_id))
        except Exception:
            return None
    try:
        request = VideoRequest.from_model_input(rec.model_input)
        _, seconds, frames = request_shape(request, get_model(rec.model_id))
    except Exception:
        return None
    timings = cast(dict[str, Any], meta.get("timings") if isinstance(meta.get("timings"), dict) else {})
    secs = _first_number(
        timings.get("render_encode_s"),
        meta.get("render_encode_s"),
        _sum_numbers(s.get("render_encode_s") for s in meta.get("shots", []) if isinstance(s, dict)),
        timings.get("total_s"),
        meta.get("total_s"),
        (rec.end_time - rec.start_time) if rec.end_time and rec.start_time else None,
    )
    if secs is None or secs <= 0 or frames <= 0:
        return None
    return engine_id, secs, frames, request.width, request.height


def total(rows: Iterable[Estimate]) -> list[Estimate]:
    """Sum rows per (model, where): what a batch of requests adds up to."""
    out: dict[tuple[str, str], Estimate] = {}
    for r in rows:
        key = (r.model_id, r.where)
        if key not in out:
            out[key] = r
            continue
        a = out[key]
        out[key] = Estimate(
            a.model_id, a.where, a.jobs + r.jobs, a.shots + r.shots, a.seconds + r.seconds, a.frames + r.frames,
            None if a.cost_usd is None or r.cost_usd is None else round(a.cost_usd + r.cost_usd, 2), a.cost_basis,
            None if a.time_s is None or r.time_s is None else a.time_s + r.time_s, a.time_basis,
        )
    return list(out.values())


def makespan_s(times: list[float], concurrency: int) -> float:
    """Ideal wall time for jobs of these durations run ``concurrency`` at a time (greedy, in order)."""
    if not times:
        return 0.0
    lanes = [0.0] * max(1, min(concurrency, len(times)))
    for t in times:
        i = lanes.index(min(lanes))
        lanes[i] += t
    return max(lanes)


def format_duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"


def _env_override(engine_id: str) -> float | None:
    raw = os.environ.get("REELFORGE_S_PER_FRAME", "").strip()
    if not raw:
        return None
    try:
        if "=" not in raw:
            return float(raw)
        for part in raw.split(","):
            name, _, value = part.partition("=")
            if name.strip() == engine_id:
                return float(value)
    except ValueError:
        raise RequestError("REELFORGE_S_PER_FRAME", f"{raw!r} is not a number or ENGINE=SECONDS list") from None
    return None


def _first_number(*values: Any) -> float | None:
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def _sum_numbers(values: Iterable[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(nums) if nums else None

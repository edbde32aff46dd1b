"""Seconds per frame of a previz engine: the figure `reelforge.workflows.estimate.MEASURED` records.

Run: .venv/bin/python bench/bench_estimate.py [--engine animatic|animatic-v2] [--frames 48] [--repeat 3]
Renders and H.264-encodes one shot at several sizes in one thread (what a worker does per shot),
fits seconds/frame = base + slope * megapixels by least squares on relative error, measures the per-job overhead
(manifest, poster, contact sheet, job log) with real embedded jobs, and compares the estimate for
a few requests with what they took.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reelforge import media  # noqa: E402
from reelforge.engines import NullProgress, ShotPlan  # noqa: E402
from reelforge.engines import get_engine_class  # noqa: E402

SIZES = [(160, 90), (320, 180), (640, 360), (1280, 720)]
PROMPT = "Closeup of a large seashell in the sand, gentle waves flow around the shell. Camera zoom in."


ENGINE = "animatic"
MODELS = {"animatic": "reelforge.animatic-v1", "animatic-v2": "reelforge.animatic-v2"}


def render_encode_s(width: int, height: int, frames: int, fps: int = 24) -> float:
    engine = get_engine_class(ENGINE)()
    plan = ShotPlan(0, 1, PROMPT, 7, max(1, frames // fps), fps, width, height)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with media.VideoWriter(Path(d) / "s.mp4", fps, width, height) as w:
            for f in engine.render_shot(plan, NullProgress()):
                w.write(f)
        return (time.perf_counter() - t0) / plan.frame_count


def job_overhead_s(repeat: int) -> float:
    """Wall time of a tiny embedded job minus its render time."""
    from reelforge.client.client import Client
    from reelforge.request.model import VideoRequest

    with tempfile.TemporaryDirectory() as home:
        os.environ["REELFORGE_HOME"] = home
        client = Client(data_dir=home, workers=1)
        out = []
        for i in range(repeat + 1):
            req = VideoRequest(text=f"{PROMPT} {i}", duration_s=1, fps=8, width=128, height=72)
            t0 = time.perf_counter()
            job = client.start(req, model=MODELS[ENGINE]).wait(60)
            wall = time.perf_counter() - t0
            meta = job.record.metadata
            render = meta.get("render_encode_s") or (meta.get("timings") or {}).get("render_encode_s") or 0.0
            if i:  # the first job pays for imports and engine start
                out.append(wall - render)
        return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engine", choices=sorted(MODELS), default="animatic")
    args = ap.parse_args()
    global ENGINE
    ENGINE = args.engine
    render_encode_s(160, 90, 24)  # warm-up: fonts, codecs
    rows = []
    for w, h in SIZES:
        best = min(render_encode_s(w, h, args.frames) for _ in range(args.repeat))
        rows.append((w, h, w * h / 1e6, best))
    mp = np.array([r[2] for r in rows])
    spf = np.array([r[3] for r in rows])
    slope, base = np.polyfit(mp, spf, 1, w=1 / spf)  # weighted: relative error counts at every size
    overhead = job_overhead_s(args.repeat)
    print(f"# {ENGINE} render+encode, {args.frames} frames, best of {args.repeat}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print()
    print("| size | megapixels | s/frame measured | s/frame fitted |")
    print("|---|---|---|---|")
    for w, h, m, s in rows:
        print(f"| {w}x{h} | {m:.3f} | {s:.4f} | {base + slope * m:.4f} |")
    print()
    print(f"fit: s/frame = {base:.4f} + {slope:.4f} * megapixels; per-job overhead {overhead:.3f} s")

    from reelforge.workflows.estimate import MEASURED, FrameRate

    rate = FrameRate(max(base, 0.0), slope, overhead, "this run")
    print()
    print("| request | estimated (recorded figure) | estimated (this run) | measured |")
    print("|---|---|---|---|")
    for w, h, secs, fps in [(1280, 720, 6, 24), (640, 360, 6, 24), (160, 90, 18, 8)]:
        frames = secs * fps
        t0 = time.perf_counter()
        render_encode_s(w, h, frames, fps)
        took = time.perf_counter() - t0
        rec = MEASURED.get(ENGINE, rate)
        print(f"| {w}x{h} {secs} s @ {fps} | {frames * rec.seconds_per_frame(w, h):.2f} s | "
              f"{frames * rate.seconds_per_frame(w, h):.2f} s | {took:.2f} s |")


if __name__ == "__main__":
    main()

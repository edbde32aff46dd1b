"""The 6 s clip on the previz engines: render, encode and whole-job time, with the ffmpeg CLI and v1 as baselines.

Run: .venv/bin/python bench/bench_clip.py [--repeat 3]
Goals (issue 2): the whole 6 s clip in less than its 6 s playing time on 2 cores; encoding within
1.1x of the ffmpeg CLI (libx264 veryfast crf 23) fed the same frames. Issue 16: animatic-v2 renders
within 2x of animatic-v1's render time, measured in the same run, and its whole job stays under 6 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_encode import find_ffmpeg, run_ffmpeg, run_reelforge

from reelforge import Client, VideoRequest
from reelforge.engines import NullProgress, ShotPlan
from reelforge.engines.animatic import AnimaticEngine
from reelforge.engines.previz import PrevizEngine

PROMPT = "Closeup of a large seashell in the sand, gentle waves flow around the shell. Camera zoom in."


def render(seed: int, engine=AnimaticEngine) -> tuple[list, float]:
    plan = ShotPlan(0, 1, PROMPT, seed, 6, 24, 1280, 720)
    t0 = time.perf_counter()
    frames = list(engine().render_shot(plan, NullProgress()))
    return frames, time.perf_counter() - t0


def whole_job(out: Path, model: str) -> float:
    t0 = time.perf_counter()
    Client().start(VideoRequest(text=PROMPT, seed=1), model=model, output=out).wait()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    exe = find_ffmpeg()
    if exe is None:
        print("No ffmpeg binary found: apt-get install ffmpeg, then run again.", file=sys.stderr)
        return 2
    v1, v2 = "render 144 frames (animatic-v1)", "render 144 frames (animatic-v2)"
    job1, job2 = "whole job, animatic-v1", "whole job, animatic-v2"
    rows: dict[str, list[float]] = {v1: [], v2: [], "encode (reelforge, PyAV)": [], "encode (ffmpeg CLI, baseline)": [], job1: [], job2: []}
    with tempfile.TemporaryDirectory(prefix="reelforge-bench-") as d:
        os.environ["REELFORGE_HOME"] = str(Path(d) / "home")
        for k in range(args.repeat):
            frames, t = render(k)
            rows[v1].append(t)
            del frames
            frames, t = render(k, PrevizEngine)  # alternating, so load from elsewhere falls on both
            rows[v2].append(t)
            rows["encode (reelforge, PyAV)"].append(run_reelforge(frames, Path(d) / f"r{k}.mp4")[0])
            rows["encode (ffmpeg CLI, baseline)"].append(run_ffmpeg(exe, frames, Path(d) / f"f{k}.mp4")[0])
            del frames
            rows[job1].append(whole_job(Path(d) / "jobs", "reelforge.animatic-v1"))
            rows[job2].append(whole_job(Path(d) / "jobs", "reelforge.animatic-v2"))
    print(f"6 s clip, 1280x720 @ 24 fps, {os.cpu_count()} cores; median of {args.repeat} runs\n")
    print(f"| {'step':<32} | median s | x real time |")
    print(f"|{'-' * 34}|----------|-------------|")
    med = {name: statistics.median(v) for name, v in rows.items()}
    for name, sec in med.items():
        print(f"| {name:<32} | {sec:8.2f} | {sec / 6:11.2f} |")
    print(f"\nencode ratio reelforge / ffmpeg CLI: {med['encode (reelforge, PyAV)'] / med['encode (ffmpeg CLI, baseline)']:.2f} (goal <= 1.10)")
    print(f"render ratio animatic-v2 / animatic-v1: {med[v2] / med[v1]:.2f} (goal <= 2.00)")
    print(f"whole job / playing time: animatic-v1 {med[job1] / 6:.2f}, animatic-v2 {med[job2] / 6:.2f} (goal < 1.00)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

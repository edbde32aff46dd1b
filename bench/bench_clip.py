"""The 6 s clip on the default engine: render, encode and whole-job time, with the ffmpeg CLI as baseline.

Run: .venv/bin/python bench/bench_clip.py [--repeat 3]
Goals (issue 2): the whole 6 s clip in less than its 6 s playing time on 2 cores; encoding within
1.1x of the ffmpeg CLI (libx264 veryfast crf 23) fed the same frames.
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

PROMPT = "Closeup of a large seashell in the sand, gentle waves flow around the shell. Camera zoom in."


def render(seed: int) -> tuple[list, float]:
    plan = ShotPlan(0, 1, PROMPT, seed, 6, 24, 1280, 720)
    t0 = time.perf_counter()
    frames = list(AnimaticEngine().render_shot(plan, NullProgress()))
    return frames, time.perf_counter() - t0


def whole_job(out: Path) -> float:
    t0 = time.perf_counter()
    Client().start(VideoRequest(text=PROMPT, seed=1), output=out).wait()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    exe = find_ffmpeg()
    if exe is None:
        print("No ffmpeg binary found: apt-get install ffmpeg, then run again.", file=sys.stderr)
        return 2
    rows: dict[str, list[float]] = {"render 144 frames (animatic)": [], "encode (reelforge, PyAV)": [], "encode (ffmpeg CLI, baseline)": [], "whole job (start -> wait)": []}
    with tempfile.TemporaryDirectory(prefix="reelforge-bench-") as d:
        os.environ["REELFORGE_HOME"] = str(Path(d) / "home")
        for k in range(args.repeat):
            frames, t = render(k)
            rows["render 144 frames (animatic)"].append(t)
            rows["encode (reelforge, PyAV)"].append(run_reelforge(frames, Path(d) / f"r{k}.mp4")[0])
            rows["encode (ffmpeg CLI, baseline)"].append(run_ffmpeg(exe, frames, Path(d) / f"f{k}.mp4")[0])
            del frames
            rows["whole job (start -> wait)"].append(whole_job(Path(d) / "jobs"))
    print(f"6 s clip, 1280x720 @ 24 fps, {os.cpu_count()} cores; median of {args.repeat} runs\n")
    print(f"| {'step':<32} | median s | x real time |")
    print(f"|{'-' * 34}|----------|-------------|")
    med = {name: statistics.median(v) for name, v in rows.items()}
    for name, sec in med.items():
        print(f"| {name:<32} | {sec:8.2f} | {sec / 6:11.2f} |")
    print(f"\nencode ratio reelforge / ffmpeg CLI: {med['encode (reelforge, PyAV)'] / med['encode (ffmpeg CLI, baseline)']:.2f} (goal <= 1.10)")
    print(f"whole job / playing time: {med['whole job (start -> wait)'] / 6:.2f} (goal < 1.00)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

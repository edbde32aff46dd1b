"""Joining shots: reelforge.media.concat_mp4 (stream copy) against re-encoding the same shots.

Run: .venv/bin/python bench/bench_join.py [--repeat 3] [--sizes 1280x720,640x360]
Three 6 s shots at 24 fps are rendered once by the animatic engine and encoded as the worker does
(libx264 veryfast crf 23). Then, timed: the stream-copy join the worker uses, and the
alternative of decoding every shot and encoding one new file with the same settings.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout without pip install
import av  # noqa: E402
from reelforge import media  # noqa: E402
from reelforge.engines import NullProgress, ShotPlan  # noqa: E402
from reelforge.engines.animatic import AnimaticEngine  # noqa: E402

PROMPTS = [
    "A red barn in a yellow field at noon. Camera pans right.",
    "A blue ocean under a white sky, static shot.",
    "A green forest at night. Camera zoom in.",
]
FPS, SECONDS = 24, 6


def render_shots(folder: Path, width: int, height: int) -> list[Path]:
    engine = AnimaticEngine()
    paths = []
    for i, text in enumerate(PROMPTS):
        plan = ShotPlan(i, len(PROMPTS), text, 42 + i, SECONDS, FPS, width, height)
        path = folder / f"shot_{i + 1:04d}.mp4"
        media.encode_mp4(engine.render_shot(plan, NullProgress()), path, FPS)
        paths.append(path)
    return paths


def reencode(paths: list[Path], out: Path) -> None:
    with media.VideoWriter(out, FPS) as writer:
        for p in paths:
            for frame in media.read_frames(p):
                writer.write(frame)


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="1280x720,640x360")
    args = ap.parse_args()
    print(f"# join {len(PROMPTS)} shots of {SECONDS} s at {FPS} fps; median of {args.repeat}; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, PyAV {av.__version__}")
    print()
    print("| size | frames | stream copy (concat_mp4) | re-encode (decode + libx264) | re-encode / copy | packets equal |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d)
            shots = render_shots(folder, w, h)
            copy_s = timed(lambda: media.concat_mp4(shots, folder / "copy.mp4"), args.repeat)
            enc_s = timed(lambda: reencode(shots, folder / "encoded.mp4"), args.repeat)
            frames = media.probe(folder / "copy.mp4").frames
            same = _packets(folder / "copy.mp4") == [p for s in shots for p in _packets(s)]
            print(f"| {size} | {frames} | {copy_s * 1000:.1f} ms | {enc_s * 1000:.0f} ms | {enc_s / copy_s:.0f}x | {'yes' if same else 'NO'} |")


def _packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


if __name__ == "__main__":
    main()

"""Encode speed: reelforge.media.video.encode_mp4 (PyAV, in process) against the ffmpeg CLI fed raw frames by pipe.

Run: .venv/bin/python bench/bench_encode.py [--repeat 3]
Both encode the same 144 pre-generated 1280x720 frames with libx264 veryfast crf 23, yuv420p, +faststart;
the time covers encoding only (for ffmpeg: process start, pipe and encode).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout without pip install
from reelforge import media  # noqa: E402

WIDTH, HEIGHT, FPS, FRAMES = 1280, 720, 24, 144


def make_frames(n: int = FRAMES) -> list[np.ndarray]:
    """A moving diagonal gradient with fixed-seed noise (+-6) on top: deterministic, mildly grainy."""
    rng = np.random.default_rng(1234)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    frames = []
    for i in range(n):
        t = i / FPS
        r = 127 + 100 * np.sin(x / 180 + t * 2.0)
        g = 127 + 100 * np.sin(y / 120 - t * 1.5)
        b = 127 + 100 * np.sin((x + y) / 240 + t)
        img = np.stack([r, g, b], axis=-1) + rng.integers(-6, 7, (HEIGHT, WIDTH, 1), dtype=np.int16)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def find_ffmpeg() -> str | None:
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


def cpu_seconds(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def run_reelforge(frames, out: Path) -> tuple[float, float]:
    c0, t0 = cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
    media.encode_mp4(frames, out, FPS, preset="veryfast", crf=23)
    return time.perf_counter() - t0, cpu_seconds(resource.RUSAGE_SELF) - c0


def run_ffmpeg(exe: str, frames, out: Path) -> tuple[float, float]:
    cmd = [
        exe, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-movflags", "+faststart", str(out),
    ]
    c0, t0 = cpu_seconds(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for frame in frames:
            proc.stdin.write(memoryview(frame))
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise SystemExit(f"ffmpeg failed ({proc.returncode}): {err.decode(errors='replace').strip()}")
    return time.perf_counter() - t0, cpu_seconds(resource.RUSAGE_CHILDREN) - c0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    exe = find_ffmpeg()
    if exe is None:
        print("No ffmpeg binary found. Install one, then run again:\n"
              "  apt-get install ffmpeg            (Debian/Ubuntu)\n"
              "  .venv/bin/pip install imageio-ffmpeg   (bundled static build)", file=sys.stderr)
        return 2
    version = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout.splitlines()[0]

    t0 = time.perf_counter()
    frames = make_frames()
    gen_s = time.perf_counter() - t0

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"PyAV {av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}); ffmpeg CLI: {version}")
    print(f"input: {FRAMES} frames {WIDTH}x{HEIGHT} @ {FPS} fps, gradient + noise, generated in {gen_s:.2f} s (not timed below)")
    print(f"x264 veryfast crf 23 yuv420p +faststart; median of {args.repeat} runs\n")

    results = {}
    with tempfile.TemporaryDirectory(prefix="reelforge-bench-") as d:
        runners = {
            "reelforge.media.video.encode_mp4": lambda out: run_reelforge(frames, out),
            "ffmpeg CLI (rgb24 pipe)": lambda out: run_ffmpeg(exe, frames, out),
        }
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
        outs: dict[str, Path] = {}
        # Interleaved, so a burst of load from elsewhere on the machine hits both encoders alike.
        for k in range(args.repeat):
            for i, (name, run) in enumerate(runners.items()):
                outs[name] = Path(d) / f"{i}_{k}.mp4"
                runs[name].append(run(outs[name]))
        for name, out in outs.items():
            info = media.probe(out)
            assert info.frames == FRAMES and info.moov_before_mdat, info
            walls, cpus = zip(*runs[name])
            results[name] = (statistics.median(walls), statistics.median(cpus), out.stat().st_size, info.profile)

    print(f"| {'encoder':<28} | median s | fps   | CPU s | KB   | profile |")
    print(f"|{'-' * 30}|----------|-------|-------|------|---------|")
    for name, (sec, cpu, size, profile) in results.items():
        print(f"| {name:<28} | {sec:8.2f} | {FRAMES / sec:5.0f} | {cpu:5.2f} | {size / 1024:4.0f} | {profile} |")
    ours, theirs = (results[n][0] for n in runners)
    print(f"\nratio reelforge / ffmpeg (median wall time): {ours / theirs:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

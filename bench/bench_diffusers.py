"""Overhead of the diffusers engine and of a whole job over the raw pipeline call, on a tiny LTX model.

    .venv/bin/python bench/bench_diffusers.py [--repeats 7] [--steps 50] [--size 96x64] [--seconds 2] [--fps 8]

One process, one tiny random LTX-Video pipeline (tests/tiny_pipelines.py) saved to a temp folder,
the same prompt, seed, size, frame count and steps on three paths, interleaved so that machine
noise hits them alike. Both the best (min) and the median of the repeats are printed: on a busy
shared machine the median carries other processes' load, the min is the cost of the path itself:

- raw: ``DiffusionPipeline.from_pretrained(folder)`` called directly with the arguments the engine
  would pass (generation size and 8k+1/4k+1 frame count already valid);
- engine: ``DiffusersEngine.render_shot`` on a warm instance, frames consumed (adds uint8
  conversion, crop and time resampling);
- job: ``Client.start(...).wait()`` on a warm embedded worker (adds the job log, H.264 encoding,
  poster, contact sheet, manifest). Job engine options come from the model spec, so the job uses
  the model's default step count: keep --steps at 50 for a like-for-like comparison.

It also prints the load time of the first and second render on one engine instance, and of the
first and second job on one worker: the second must be ~0 s (weights stay loaded).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--size", default="96x64", help="requested WIDTHxHEIGHT (tiny model: keep it small)")
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--fps", type=int, default=8)
    ap.add_argument("--no-job", action="store_true", help="skip the job path")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    import torch
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()

    from reelforge.engines.base import NullProgress, ShotPlan
    from reelforge.engines.diffusers import DiffusersEngine
    from tiny_pipelines import save_tiny

    tmp = Path(tempfile.mkdtemp(prefix="bench-diffusers-"))
    folder = save_tiny("ltx", tmp / "LTX-Video")
    prompt, seed = "a cat walks on the sea at night", 3
    plan = ShotPlan(0, 1, prompt, seed, args.seconds, args.fps, width, height, None, "reelforge.ltx-video")

    # engine: the first render loads, later ones reuse the pipeline
    engine = DiffusersEngine({"model": "ltx-video", "weights": str(folder), "num_inference_steps": args.steps})
    first = NullProgress()
    t0 = time.perf_counter()
    list(engine.render_shot(plan, first))
    first_total = time.perf_counter() - t0
    threads = torch.get_num_threads()
    shot = first.metadata["shots"][0]
    gen = shot["planned"]
    call = dict(prompt=prompt, height=gen["height"], width=gen["width"], num_frames=gen["frames"],
                frame_rate=gen["fps"], num_inference_steps=args.steps, guidance_scale=first.metadata["guidance_scale"],
                max_sequence_length=128, output_type="pt")

    raw = DiffusionPipeline.from_pretrained(folder, dtype=torch.float32, local_files_only=True).to("cpu")
    raw.set_progress_bar_config(disable=True)

    def run_raw() -> float:
        t = time.perf_counter()
        raw(generator=torch.Generator("cpu").manual_seed(seed), **call)
        return time.perf_counter() - t

    loads: list[float] = []

    def run_engine() -> float:
        p = NullProgress()
        t = time.perf_counter()
        frames = list(engine.render_shot(plan, p))
        dt = time.perf_counter() - t
        assert len(frames) == plan.frame_count and frames[0].shape == (height, width, 3)
        loads.append(p.metadata["shots"][0]["timings"]["load_s"])
        return dt

    client = None
    job_loads: list[float] = []
    if not args.no_job:
        try:
            from reelforge import Client, VideoRequest, register_engine
        except ImportError:
            print("note: reelforge.Client not importable; skipping the job path", file=sys.stderr)
        else:
            register_engine(DiffusersEngine)
            os.environ["REELFORGE_LTX_VIDEO_WEIGHTS"] = str(folder)
            os.environ.setdefault("REELFORGE_HOME", str(tmp / "home"))
            client = Client(data_dir=tmp / "data")
            request = VideoRequest(text=prompt, duration_s=args.seconds, fps=args.fps, width=width, height=height,
                                   seed=seed)

    def run_job() -> float:
        t = time.perf_counter()
        job = client.start(request, model="reelforge.ltx-video", output=str(tmp / "out"))
        job.wait(timeout=600)
        dt = time.perf_counter() - t
        assert job.status == "COMPLETED", job.failure_message
        meta = json.loads((job.local_dir / "manifest.json").read_text())["metadata"]
        if meta["num_inference_steps"] != args.steps:
            raise SystemExit(f"the job ran {meta['num_inference_steps']} steps; rerun with --steps "
                             f"{meta['num_inference_steps']} to compare like with like")
        job_loads.append(meta["shots"][0]["timings"]["load_s"])
        return dt

    if client is not None:
        run_job()  # cold job: loads the worker's own engine instance (recorded in job_loads[0])
    run_raw()  # warm-up of the raw path (first-call allocations)
    times: dict[str, list[float]] = {"raw": [], "engine": [], "job": []}
    for _ in range(args.repeats):
        times["raw"].append(run_raw())
        times["engine"].append(run_engine())
        if client is not None:
            times["job"].append(run_job())

    med = {k: statistics.median(v) for k, v in times.items() if v}
    best = {k: min(v) for k, v in times.items() if v}
    print(f"tiny LTX-Video, CPU, {threads} torch threads; request {width}x{height}, {args.seconds} s at {args.fps} fps "
          f"({plan.frame_count} frames); generated {gen['width']}x{gen['height']}x{gen['frames']}; "
          f"{args.steps} steps; {args.repeats} repeats; load average {os.getloadavg()[0]:.2f}")
    print()
    print("| path | min s | median s | min vs raw | median vs raw |")
    print("|---|---:|---:|---:|---:|")
    labels = {"raw": "raw pipeline call", "engine": "engine.render_shot (warm, frames consumed)",
              "job": "job: start -> COMPLETED (warm worker, H.264 encode included)"}
    for k in med:
        print(f"| {labels[k]} | {best[k]:.3f} | {med[k]:.3f} | {best[k] / best['raw']:.3f} | {med[k] / med['raw']:.3f} |")
    print()
    print(f"engine overhead over raw: {100 * (best['engine'] / best['raw'] - 1):+.1f}% (min), "
          f"{100 * (med['engine'] / med['raw'] - 1):+.1f}% (median)")
    if "job" in med:
        print(f"job overhead over raw: {100 * (best['job'] / best['raw'] - 1):+.1f}% (min), "
              f"{100 * (med['job'] / med['raw'] - 1):+.1f}% (median); job minus engine (job log, encoding, "
              f"poster, publishing): {best['job'] - best['engine']:.3f} s (min)")
    print()
    print(f"engine load: 1st render {shot['timings']['load_s']:.3f} s (render {first_total:.3f} s), "
          f"2nd and later renders {max(loads):.3f} s")
    if job_loads:
        print(f"job load: 1st job {job_loads[0]:.3f} s, 2nd and later jobs {max(job_loads[1:]):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Overhead of the diffusers engine over the raw pipeline call, per family and task, on tiny models.

    .venv/bin/python bench/bench_diffusers.py [--repeats 5] [--steps 20] [--only ltx2,wan2.2-5b]

One process; each tiny random pipeline of tests/tiny_pipelines.py is saved to a temp folder and
loaded twice: once by the engine, once by ``DiffusionPipeline.from_pretrained`` for the raw call.
Per family and task, the same prompt, seed, size (64x64), 1 s at 8 fps and step count on both paths,
interleaved so that machine noise hits them alike:

- raw: the pipeline class of the task called directly with exactly the arguments the engine passed
  (captured through its ``_call_pipeline`` seam), without the step callback;
- engine: ``DiffusersEngine.render`` on a warm instance with a fresh checkpoint folder, as in a job,
  frames (and audio) consumed: adds the grid plan, the step callback (or scheduler-step wrapper),
  denoising to latents, saving them (safetensors, atomically) and decoding them apart, uint8
  conversion, crop, fps resampling and, for LTX-2, fitting the audio track. The raw call decodes
  inside the pipeline (``output_type="pt"``).

Both the best (min) and the median of the repeats are printed: on a busy shared machine the
median carries other processes' load, the min is the cost of the path itself. Goal: <= 5 %.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

# (tiny layout, model id, task)
CASES = [
    ("ltx", "ltx-video", "t2v"), ("ltx", "ltx-video", "i2v"), ("ltx2", "ltx-2", "t2v"), ("ltx2", "ltx-2", "i2v"),
    ("wan", "wan2.1-t2v-1.3b", "t2v"), ("wan2.1-i2v", "wan2.1-i2v-14b-480p", "i2v"),
    ("wan2.2-5b", "wan2.2-ti2v-5b", "t2v"), ("wan2.2-5b", "wan2.2-ti2v-5b", "i2v"),
    ("wan2.2-a14b-t2v", "wan2.2-t2v-a14b", "t2v"), ("wan2.2-a14b-i2v", "wan2.2-i2v-a14b", "i2v"),
    ("hunyuan15", "hunyuanvideo-1.5", "t2v"), ("hunyuan15-i2v", "hunyuanvideo-1.5-i2v", "i2v"),
    ("cogvideox", "cogvideox-2b", "t2v"), ("cogvideox-i2v", "cogvideox-5b-i2v", "i2v"),
    ("skyreels-v2", "skyreels", "t2v"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--only", help="comma-separated layouts (default: all)")
    args = ap.parse_args()

    import numpy as np
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from PIL import Image
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()

    import diffusers

    from reelforge.engines.base import NullProgress, RenderContext, ShotPlan
    from reelforge.engines.diffusers.engine import DiffusersEngine
    from tiny_pipelines import save_tiny

    class Capturing(DiffusersEngine):
        def _call_pipeline(self, pipe, **kwargs):
            self.last = (pipe, dict(kwargs))
            return pipe(**kwargs)

    only = set(args.only.split(",")) if args.only else None
    tmp = Path(tempfile.mkdtemp(prefix="bench-diffusers-"))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    rows = []
    folders: dict[str, Path] = {}
    print(f"tiny pipelines, CPU, {torch.get_num_threads()} torch threads; request 64x64, 1 s at 8 fps; "
          f"{args.steps} steps; {args.repeats} repeats; load average at the start {os.getloadavg()[0]:.2f}")
    print()
    print("| model (tiny) | task | pipeline | raw min s | engine min s | min vs raw | median vs raw |")
    print("|---|---|---|---:|---:|---:|---:|", flush=True)
    for layout, model, task in CASES:
        if only and layout not in only:
            continue
        folder = folders.get(layout) or save_tiny(layout, tmp / layout)
        folders[layout] = folder
        engine = Capturing({"model": model, "weights": str(folder), "num_inference_steps": args.steps,
                            "max_sequence_length": 16})
        plan = ShotPlan(0, 1, 'a cat says "hello" on the sea', 3, 1, 8, 64, 64, image if task == "i2v" else None,
                        f"reelforge.{model}")

        def run_engine() -> float:
            # a fresh checkpoint folder each time, as each job has: the latents are saved, then decoded
            with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as checkpoint:
                t = time.perf_counter()
                out = engine.render(plan, RenderContext(NullProgress(), checkpoint=Path(checkpoint)))
                frames = list(out.frames)
                dt = time.perf_counter() - t
            assert len(frames) == plan.frame_count and frames[0].shape == (64, 64, 3)
            return dt

        run_engine()  # loads, and captures the arguments
        pipe, kwargs = engine.last
        kwargs.pop("callback_on_step_end", None)
        kwargs["output_type"] = "pt"  # the engine denoises to latents and decodes apart; the raw call decodes itself
        raw_pipe = DiffusionPipeline.from_pretrained(folder, dtype=torch.float32, local_files_only=True).to("cpu")
        if type(raw_pipe).__name__ != type(pipe).__name__:  # the I2V class over the same modules, as users do
            cls = getattr(diffusers, type(pipe).__name__)
            raw_pipe = cls(**raw_pipe.components, **({"expand_timesteps": raw_pipe.config.expand_timesteps}
                                                    if "expand_timesteps" in raw_pipe.config else {}))
        for attr in ("tokenizer_max_length", "tokenizer_2_max_length"):  # HunyuanVideo's text lengths, as set
            if hasattr(pipe, attr):
                setattr(raw_pipe, attr, getattr(pipe, attr))
        raw_pipe.set_progress_bar_config(disable=True)

        def run_raw() -> float:
            call = {**kwargs, "generator": torch.Generator("cpu").manual_seed(3)}
            t = time.perf_counter()
            out = raw_pipe(**call)
            np.asarray(out.frames[0])
            return time.perf_counter() - t

        run_raw()
        times: dict[str, list[float]] = {"raw": [], "engine": []}
        for _ in range(args.repeats):
            times["raw"].append(run_raw())
            times["engine"].append(run_engine())
        best = {k: min(v) for k, v in times.items()}
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((layout, model, task, type(pipe).__name__, best, med))
        print(f"| {model} | {task} | {type(pipe).__name__} | {best['raw']:.3f} | {best['engine']:.3f} | "
              f"{best['engine'] / best['raw']:.3f} | {med['engine'] / med['raw']:.3f} |", flush=True)
        engine.close()

    print()
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    worst = max(best["engine"] / best["raw"] for *_, best, _ in rows)
    print()
    print(f"worst engine overhead over raw (min): {100 * (worst - 1):+.1f}% (goal <= +5 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

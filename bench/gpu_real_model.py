"""Measure a real open-weight video model on a GPU: time per job, peak CUDA memory, frames per second.

    python bench/gpu_real_model.py --model reelforge.ltx-video --jobs 3 --seconds 5 --fps 24 --size 1280x720
    python bench/gpu_real_model.py --model reelforge.wan2.1-t2v-1.3b --path engine --steps 30 --cpu-offload

Needs a CUDA GPU, ``pip install 'reelforge[diffusers]'`` and the model's weights (found the way
the engine finds them: $REELFORGE_<MODEL>_WEIGHTS, $REELFORGE_WEIGHTS_DIR/<folder>, or the Hugging
Face cache; ``--weights DIR`` overrides). Exits with one line and status 2 when any is missing.

``--path job`` (default) runs whole jobs through ``reelforge.Client`` (the model's default options,
H.264 encoding included); ``--path engine`` calls ``DiffusersEngine.render_shot`` with the options
given here (steps, dtype, memory options) and encodes with ``reelforge.media.video.VideoWriter``.
The first job includes loading the weights; later ones run on the warm pipeline.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def fail(message: str) -> int:
    print(f"gpu_real_model: {message}", file=sys.stderr)
    return 2


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="reelforge.ltx-video")
    ap.add_argument("--weights", help="diffusers-format folder (default: the engine's lookup)")
    ap.add_argument("--path", choices=("job", "engine"), default="job")
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--fps", type=int, default=24)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--prompt", default="A red fox trots through fresh snow in a quiet pine forest at dawn, soft light")
    ap.add_argument("--steps", type=int, help="engine path: denoising steps (default: the model's)")
    ap.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"))
    ap.add_argument("--cpu-offload", action="store_true")
    ap.add_argument("--vae-tiling", action="store_true")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--allow-cpu", action="store_true", help="run without a GPU (a smoke test of this script)")
    return ap.parse_args()


def note_engine_only_options(args: argparse.Namespace) -> None:
    """Say so when options that only the engine path reads were given to the job path."""
    if args.steps or args.cpu_offload or args.vae_tiling or args.dtype != "auto":
        print("note: --path job uses the model's default options; --steps/--dtype/--cpu-offload/--vae-tiling "
              "apply to --path engine", file=sys.stderr)


def load_torch(allow_cpu: bool):
    """torch, and whether CUDA is there; exits with one line (status 2) when torch or diffusers is missing or no GPU is."""
    try:
        import torch
        import diffusers  # noqa: F401
    except ImportError as exc:
        raise SystemExit(fail(f"{exc.name} is not installed: pip install 'reelforge[diffusers]'")) from None
    cuda = torch.cuda.is_available()
    if not cuda and not allow_cpu:
        raise SystemExit(fail("no CUDA GPU visible to torch (torch.cuda.is_available() is False); this script measures GPUs"))
    return torch, cuda


def device_name(torch, cuda: bool) -> str:
    return torch.cuda.get_device_name(0) if cuda else "CPU"


def peak_cuda_gib(torch, cuda: bool) -> float:
    """The peak CUDA memory since the last reset, in GiB (NaN without CUDA)."""
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else float("nan")


def job_row(i: int, r: dict, peak_gib: float, frames_out: int) -> dict:
    """One job's row of the table, from its wall time and the first shot's recorded timings."""
    shot = r["meta"]["shots"][0]
    gen = shot["generated"]
    return {
        "job": i + 1, "wall_s": round(r["wall_s"], 3), "load_s": shot["timings"]["load_s"],
        "generate_s": shot["timings"]["generate_s"],
        "peak_gib": peak_gib,
        "out_fps": round(frames_out / r["wall_s"], 2),
        "gen_fps": round(gen["frames"] / shot["timings"]["generate_s"], 2),
        "generated": f"{gen['width']}x{gen['height']}x{gen['frames']}@{gen['fps']}",
    }


def report(args: argparse.Namespace, rows: list[dict], meta: dict, device: str, request: tuple[int, int, int]) -> None:
    """The summary line, the table of jobs and the warm median; the JSON file when --json names one."""
    width, height, frames_out = request
    print(f"{args.model} on {device}; {meta['dtype']}, {meta['num_inference_steps']} steps, "
          f"speed: {', '.join(e['feature'] + ('' if e['applied'] else ' (skipped)') for e in meta['speed']) or 'none'}; "
          f"path={args.path}; "
          f"request {width}x{height}, {args.seconds} s at {args.fps} fps ({frames_out} frames); "
          f"weights {meta['model']['weights']}")
    print()
    print("| job | wall s | load s | generate s | peak CUDA GiB | output frames/s | generated frames/s | generated |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        print(f"| {row['job']} | {row['wall_s']:.2f} | {row['load_s']:.2f} | {row['generate_s']:.2f} | "
              f"{row['peak_gib']:.2f} | {row['out_fps']:.2f} | {row['gen_fps']:.2f} | {row['generated']} |")
    warm = rows[1:] or rows
    print()
    print(f"warm jobs: median {statistics.median(r['wall_s'] for r in warm):.2f} s per job, "
          f"peak {max(r['peak_gib'] for r in rows):.2f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "metadata": meta}, indent=2))


def main() -> int:
    args = parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    torch, cuda = load_torch(args.allow_cpu)

    from reelforge.engines import register_engine
    from reelforge.engines.base import NullProgress, ShotPlan
    from reelforge.engines.diffusers.engine import DiffusersEngine
    from reelforge.engines.diffusers.weights import model_env_var
    from reelforge.errors import ReelforgeError
    from reelforge.engines.catalog import get_model

    register_engine(DiffusersEngine)  # as the entry point does once the package is installed
    try:
        spec = get_model(args.model)
        if spec.engine != "diffusers":
            return fail(f"{args.model} is served by the {spec.engine} engine, not diffusers")
        options = dict(spec.engine_options)
        if args.weights:
            options["weights"] = args.weights
            os.environ[model_env_var(options["model"])] = args.weights  # the job path finds them there
        weights = DiffusersEngine(options).locate_weights()  # fail fast, before any GPU work
    except ReelforgeError as exc:
        return fail(str(exc))

    tmp = Path(tempfile.mkdtemp(prefix="gpu-real-model-"))
    frames_out = args.seconds * args.fps
    rows: list[dict] = []

    if args.path == "engine":
        from reelforge.media.video import VideoWriter

        options.update(dtype=args.dtype, cpu_offload=args.cpu_offload, vae_tiling=args.vae_tiling,
                       weights=str(weights.path))
        if args.steps:
            options["num_inference_steps"] = args.steps
        engine = DiffusersEngine(options)

        def run(i: int) -> dict:
            plan = ShotPlan(0, 1, args.prompt, args.seed + i, args.seconds, args.fps, width, height, None, args.model)
            progress = NullProgress()
            t0 = time.perf_counter()
            with VideoWriter(tmp / f"engine_{i}.mp4", args.fps, width, height) as writer:
                for frame in engine.render_shot(plan, progress):
                    writer.write(frame)
            if cuda:
                torch.cuda.synchronize()
            return {"wall_s": time.perf_counter() - t0, "meta": progress.metadata}
    else:
        try:
            from reelforge import Client, VideoRequest
        except ImportError:
            return fail("reelforge.Client is not available; use --path engine")
        note_engine_only_options(args)
        client = Client(data_dir=tmp / "data")

        def run(i: int) -> dict:
            request = VideoRequest(text=args.prompt, duration_s=args.seconds, fps=args.fps, width=width,
                                   height=height, seed=args.seed + i)
            t0 = time.perf_counter()
            job = client.start(request, model=args.model, output=str(tmp / "out"))
            job.wait(timeout=3600)
            wall = time.perf_counter() - t0
            if job.status != "COMPLETED":
                raise SystemExit(fail(f"job {job.id} ended {job.status}: {job.failure_message}"))
            meta = json.loads((job.local_dir / "manifest.json").read_text())["metadata"]
            return {"wall_s": wall, "meta": meta}

    for i in range(args.jobs):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        r = run(i)
        rows.append(job_row(i, r, peak_cuda_gib(torch, cuda), frames_out))
        print(json.dumps(rows[-1]), file=sys.stderr)

    report(args, rows, r["meta"], device_name(torch, cuda), (width, height, frames_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed profiles against the raw pipeline call, on each family's transformer and VAE at their published sizes.

    python bench/bench_gpu_models.py --families wan2.2-ti2v-5b,ltx2 --steps 3     # one CUDA GPU, < 8 min
    python bench/bench_gpu_models.py --smoke                                      # CPU, reduced sizes, ~1 min

No weights can be downloaded here, and the time of a denoising step does not depend on the weight
values, so each family's transformer and VAE are built from their published configs with random
weights, directly on the target device in the target dtype (gpu_families.SOURCES says where each size
comes from). Cache hooks are the exception: whether a step is skipped depends on the activations, so
their skip rates and speed-ups on random weights are no real figure, and the table marks them so.
The text encoders are not built: each call gets random prompt embeddings of the real width and
length, so the bench measures the transformer steps and the decode, not the prompt encoding.

Per family, first one untimed call at reduced size (start-up costs fall on no row), then per row a
fresh pipeline (the profiles change the modules: compile, FP8 storage, offload hooks) called once as
the engine calls it, at the native grid, with 1 warm-up step plus --steps timed steps; a stand-in
for the pipeline's progress bar stamps each step (after a device sync). Rows:

- raw: the pipeline as built, called plainly;
- each profile: ``resolve_speed(preset, overrides)`` applied by ``apply_speed``; what it applied or
  skipped, and why, as read back from the pipeline, is printed under the table.

Columns: seconds per step (mean of the timed steps), the warm-up step (includes compiling), the
decode (VAE decode and post-processing, inside the same call), an extrapolated job (the recipe's
steps x s/step + decode; no prompt encoding), peak memory during the steps and during the decode
(CUDA: torch.cuda.max_memory_allocated; CPU: peak RSS above the row's start), each with its ratio to
the raw row (below 1 is better), and for cache hooks the transformer calls skipped per timed step.
On CUDA the times are wall seconds; in the CPU smoke they are this process's CPU seconds, since the
machine's other load would otherwise be the figure. --json writes the same rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpu_families import FAMILIES, SOURCES, build_pipeline, prompt_embeds  # noqa: E402  (bench/ is on sys.path)
from gpu_measure import GIB, Meter, StepClock  # noqa: E402


def fail(message: str) -> int:
    print(f"bench_gpu_models: {message}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------ measuring


@dataclass
class Run:
    """What a run needs: sizes, device, dtypes, the speed module, the meter."""

    small: bool
    device: str
    dtype: object
    steps: int
    meter: Meter
    speed: object = None  # reelforge.engines.diffusers.speed, when profiles are asked for
    size: tuple | None = None  # (width, height, frames) instead of each family's grid
    rows: list = field(default_factory=list)


def call_kwargs(fam, run: Run) -> dict:
    """The raw pipeline call the engine makes for this family (its recipe's guidance), at the native grid."""
    from reelforge.engines.diffusers.families import FAMILIES as RECIPES

    grid = fam.small_grid if run.small else fam.grid
    width, height, frames = run.size or (grid.width, grid.height, grid.frames)
    recipe = RECIPES[fam.engine_family]
    kwargs = dict(height=height, width=width, num_frames=frames, num_inference_steps=1 + run.steps,
                  output_type="pt", return_dict=False)
    if recipe.guidance is not None:  # None: the pipeline's guider holds it (HunyuanVideo 1.5: CFG 6)
        kwargs["guidance_scale"] = recipe.guidance
    if recipe.takes_fps:
        kwargs["frame_rate"] = grid.fps
    return {**kwargs, **prompt_embeds(fam, run.small, run.device, run.dtype)}


def recipe_steps(fam) -> int:
    from reelforge.engines.diffusers.families import FAMILIES as RECIPES, KNOWN_MODELS

    return KNOWN_MODELS[fam.model].steps or RECIPES[fam.engine_family].steps


def vae_dtype(fam, dtype):
    """The VAE's dtype as the engine loads it (Wan's in float32, the diffusers docs' way)."""
    import torch

    from reelforge.engines.diffusers.families import FAMILIES as RECIPES

    return torch.float32 if RECIPES[fam.engine_family].float32_vae else dtype


def measure(fam, profile: str, speed, run: Run) -> dict:
    """One row: a fresh pipeline, ``speed`` applied (None: the raw call), one call of 1 + steps steps."""
    import torch

    row = {"family": fam.key, "profile": profile, "report": [], "error": None, "recipe_steps": recipe_steps(fam)}
    run.meter.free()
    pipe = None
    try:
        pipe = build_pipeline(fam, run.small, run.device, run.dtype, vae_dtype(fam, run.dtype))
        if speed is not None:
            row["report"] = run.speed.apply_speed(pipe, speed, run.device, fam.engine_family)
        kwargs = call_kwargs(fam, run)
        clock = StepClock(1 + run.steps, run.meter)
        pipe.progress_bar = clock  # the pipelines open ``self.progress_bar(total=...)`` around the denoising loop
        run.meter.sync()
        run.meter.reset()
        start = run.meter.clock()
        try:
            pipe(**kwargs)  # as the engine calls it (the pipelines run under their own no_grad)
        except torch.OutOfMemoryError as exc:
            row["error"] = "out of memory " + ("in the decode" if len(clock.marks) == clock.total else "in the steps")
            row["error_detail"] = str(exc).splitlines()[0]
        run.meter.sync()
        fill_times(row, start, run.meter.clock(), clock, run.meter)
        stats = run.speed.cache_stats(pipe) if run.speed is not None else None
        if stats is not None:
            row["cache_per_step"] = [f"{s['skipped']}/{s['skipped'] + s['computed']}" for s in stats["per_step"][1:]]
    except torch.OutOfMemoryError as exc:
        row["error"] = f"out of memory while building or applying the profile: {str(exc).splitlines()[0]}"
    except Exception as exc:  # one broken profile must not cost the other rows of a GPU session; exit status says it
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        row["broken"] = True
    finally:
        del pipe
        run.meter.free()
    return row


def fill_times(row: dict, start: float, end: float, clock: StepClock, meter: Meter) -> None:
    """The row's figures from the step stamps: the warm-up step, the timed steps' mean (a cache mixes
    computed and skipped steps), and, when the call finished, the decode (after the last step) and the job."""
    marks = [start, *clock.marks]
    steps = [b - a for a, b in zip(marks, marks[1:])]
    if steps:
        row["warmup_s"] = steps[0]
    if len(steps) < clock.total:
        return
    row["s_per_step"] = statistics.fmean(steps[1:])
    row["peak_steps_gib"] = clock.steps_peak
    if row["error"] is None:
        row["decode_s"] = end - marks[-1]
        row["peak_decode_gib"] = meter.peak_gib()
        row["job_s"] = row["recipe_steps"] * row["s_per_step"] + row["decode_s"]


def shape_check(families: list[str]) -> int:
    """The published sizes on the meta device, each family's call end to end: no data, no time, only the
    shapes, so that a config or grid that does not fit fails here and not in a GPU session."""
    import torch

    for key in families:
        fam = FAMILIES[key]
        pipe = build_pipeline(fam, False, "meta", torch.bfloat16, vae_dtype(fam, torch.bfloat16))
        params = sum(p.numel() for p in pipe.transformer.parameters()) / 1e9
        kwargs = call_kwargs(fam, Run(small=False, device="meta", dtype=torch.bfloat16, steps=1, meter=None))
        try:
            out = pipe(**kwargs)
        except RuntimeError as exc:
            if "meta tensors" not in str(exc):
                raise
            print(f"{key}: transformer {params:.2f}B; the call reads a tensor's value, which meta tensors have "
                  f"not: not checkable here ({str(exc).splitlines()[0]})")
            continue
        shapes = ", ".join(str(tuple(o.shape)) for o in out if hasattr(o, "shape"))
        print(f"{key}: transformer {params:.2f}B; {kwargs['width']}x{kwargs['height']}, {kwargs['num_frames']} "
              f"frames -> {shapes}")
    return 0


def not_run(fam, profile: str, minutes: float) -> dict:
    return {"family": fam.key, "profile": profile, "report": [], "recipe_steps": recipe_steps(fam),
            "error": f"not run: past --max-minutes {minutes:g}"}


def prime(fam, run: Run) -> None:
    """One untimed call of the family at reduced size on the run's device first, so that start-up costs
    (library handles, kernels, lazy imports, the first decode) fall on no row, the raw one included."""
    measure(fam, "prime", None, Run(small=True, device=run.device, dtype=run.dtype, steps=1, meter=run.meter,
                                    size=run.size if run.small else None))


def best_of(rounds: list[dict]) -> dict:
    """One row's rounds merged: each time and peak at its minimum (the path's cost, less the machine's noise)."""
    row = {**rounds[0], "rounds": len(rounds)}
    for key in ("warmup_s", "s_per_step", "decode_s", "peak_steps_gib", "peak_decode_gib"):
        values = [r[key] for r in rounds if r.get(key) is not None]
        row[key] = min(values) if values else None
    row.pop("job_s", None)
    if row["s_per_step"] is not None and row["decode_s"] is not None:
        row["job_s"] = row["recipe_steps"] * row["s_per_step"] + row["decode_s"]
    row["error"] = next((r["error"] for r in rounds if r["error"]), None)
    row["broken"] = any(r.get("broken") for r in rounds)
    return row


# ------------------------------------------------------------------ the table


def _num(v, digits=3) -> str:
    return "—" if v is None else f"{v:.{digits}g}" if abs(v) < 100 else f"{v:.0f}"


def _ratio(row: dict, raw: dict | None, key: str) -> float | None:
    """``row[key] / raw[key]``; none for a peak under 1 MiB, where the CPU meter's resolution (malloc's
    reuse of freed memory) is the figure."""
    a, b = row.get(key), (raw or {}).get(key)
    floor = 1 / 1024 if key.startswith("peak") else 0
    return a / b if a is not None and b and b > floor else None


def cached(row: dict) -> bool:
    return any(e["feature"] == "cache" and e["applied"] for e in row["report"])


def table(rows: list[dict]) -> list[str]:
    cols = ["s/step", "warm-up s", "decode s", "job s", "peak GiB steps", "peak GiB decode"]
    keys = ["s_per_step", "warmup_s", "decode_s", "job_s", "peak_steps_gib", "peak_decode_gib"]
    ratio_of = {"s_per_step", "decode_s", "job_s", "peak_steps_gib", "peak_decode_gib"}
    head = ["family", "profile"]
    for c, k in zip(cols, keys):
        head += [c] + (["÷ raw"] if k in ratio_of else [])
    head.append("cache: skipped/calls per timed step")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 3) + "---|"]
    raw_of = {r["family"]: r for r in rows if r["profile"] == "raw"}
    for r in rows:
        raw = raw_of.get(r["family"])
        mark = " †" if cached(r) else ""
        cells = [r["family"], r["profile"]]
        for k in keys:
            cells.append(_num(r.get(k)) + (mark if k in ("s_per_step", "job_s") else ""))
            if k in ratio_of:
                cells.append(_num(_ratio(r, raw, k)) if r is not raw or _ratio(r, raw, k) is None else "1")
        cells.append(" ".join(r.get("cache_per_step", [])) or "—")
        if r["error"]:
            cells[-1] = f"{cells[-1]}; **{r['error']}**"
        out.append("| " + " | ".join(cells) + " |")
    return out


def report_lines(rows: list[dict]) -> list[str]:
    """What each profile applied and skipped, as apply_speed read it back from the pipeline."""
    out = []
    for r in rows:
        if r["profile"] == "raw":
            continue
        if r["error"] and not r["report"]:
            out.append(f"- {r['family']} {r['profile']}: {r['error']}")
            continue
        applied = [f"{e['feature']} ({e['detail']})" for e in r["report"] if e["applied"]]
        skipped = [f"{e['feature']} ({e['reason']})" for e in r["report"] if not e["applied"]]
        out.append(f"- {r['family']} {r['profile']}: applied: {'; '.join(applied) or 'nothing'}; "
                   f"skipped: {'; '.join(skipped) or 'nothing'}")
    return out


# ------------------------------------------------------------------ profiles and the run


def parse_profile(token: str, profiles_module) -> tuple[str, object]:
    """``fast``, or a preset with single features over it: ``quality+vae_tiling=true``,
    ``quality+cache=taylorseer+cache.cache_interval=2`` (values are JSON where they parse, else text;
    a cache given as text is its kind; ``cache.NAME`` sets one of its parameters)."""
    preset, *sets = token.split("+")
    overrides: dict = {}
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"profile {token!r}: {item!r} is not KEY=VALUE")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        outer, _, inner = key.partition(".")
        if outer == "cache" and not inner and isinstance(value, str):
            value = {"kind": value}
        if inner:
            overrides.setdefault(outer, {})[inner] = value
        else:
            overrides[outer] = {**value, **overrides.get(outer, {})} if isinstance(value, dict) else value
    return token, profiles_module.resolve_speed(preset, overrides)


def machine_line(run: Run, rounds: int) -> str:
    import platform

    import diffusers
    import torch

    if run.meter.cuda:
        what = f"{torch.cuda.get_device_name(0)} ({torch.cuda.get_device_properties(0).total_memory / GIB:.0f} GiB)"
    else:
        what = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
               f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.2f} at the start"
    return (f"{what}; torch {torch.__version__}, diffusers {diffusers.__version__}; "
            f"{'reduced sizes (smoke)' if run.small else 'published sizes'}, {str(run.dtype).removeprefix('torch.')}, "
            f"random weights; 1 warm-up + {run.steps} timed steps, best of {rounds} round(s); times: "
            f"{run.meter.clock_label}; memory: {run.meter.label}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="wan2.2-ti2v-5b,ltx2",
                    help=f"comma-separated, of: {', '.join(FAMILIES)} (default: the first two; HunyuanVideo 1.5 "
                         "at 480p runs about 50k tokens a pass, minutes more on one GPU)")
    ap.add_argument("--profiles", default="quality,fast,low-memory",
                    help="comma-separated presets, each optionally +KEY=VALUE (e.g. quality+cache=taylorseer); "
                         "'none' for the raw call only")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up step (default 3)")
    ap.add_argument("--smoke", action="store_true", help="CPU, reduced sizes (automatic without CUDA)")
    ap.add_argument("--meta", action="store_true", help="no timing: run the published sizes on the meta device "
                    "(shapes only) to check the configs and grids before a GPU session")
    ap.add_argument("--size", help="WIDTHxHEIGHTxFRAMES for every family instead of its grid (native, or the "
                    "smoke's 256x256x17 / 128x128x9)")
    ap.add_argument("--rounds", type=int, help="rounds of every row, interleaved; each figure is its best round "
                    "(default: 1 on a GPU, 2 in the smoke)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the CPU smoke (default 1: no "
                    "thread spinning in the CPU seconds)")
    ap.add_argument("--max-minutes", type=float, default=8.0,
                    help="start no row after this many minutes; the rows left are listed as not run (default 8)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)

    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        return fail(f"--families: {', '.join(unknown) or 'none given'} unknown; allowed: {', '.join(FAMILIES)}")
    if args.steps < 1 or (args.rounds is not None and args.rounds < 1):
        return fail("--steps and --rounds must be at least 1")
    size = re.fullmatch(r"(\d+)x(\d+)x(\d+)", args.size or "0x0x0")
    if size is None:
        return fail(f"--size {args.size!r} is not WIDTHxHEIGHTxFRAMES (e.g. 1280x704x121)")
    try:
        import diffusers  # noqa: F401
        import torch
    except ImportError as exc:
        return fail(f"{exc.name} is not installed: pip install 'reelforge[diffusers]'")
    if args.meta:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()
        return shape_check(families)
    speed_module, profiles = None, []
    if args.profiles.strip() != "none":
        try:
            from reelforge.engines.diffusers import profiles as profiles_module, speed as speed_module
        except ImportError as exc:
            return fail(f"the speed profiles need reelforge.engines.diffusers.speed ({exc})")
        try:
            profiles = [parse_profile(t.strip(), profiles_module) for t in args.profiles.split(",") if t.strip()]
        except ValueError as exc:
            errors = getattr(exc, "errors", None)  # pydantic: name each field
            text = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors()) if errors else str(exc)
            return fail(f"--profiles: {text}")

    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        print("bench_gpu_models: no CUDA GPU here: running the CPU smoke at reduced sizes", file=sys.stderr)
    if not cuda:
        torch.set_num_threads(args.threads)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    try:
        meter = Meter(cuda)
    except RuntimeError as exc:
        return fail(str(exc))
    run = Run(small=not cuda, device="cuda" if cuda else "cpu", dtype=torch.bfloat16 if cuda else torch.float32,
              steps=args.steps, meter=meter, speed=speed_module, size=tuple(map(int, size.groups())) if args.size else None)
    rounds = args.rounds or (1 if cuda else 2)
    machine = machine_line(run, rounds)
    run_families(run, families, profiles, rounds, args.max_minutes)
    print("\n".join([machine, "", *table(run.rows), "", *report_lines(run.rows)]))
    if any(cached(r) for r in run.rows):
        print("\n† cache hooks: whether a step skips depends on the activations; on random weights their skip "
              "rate and speed-up are no real figure.")
    print(f"\njob s = the recipe's steps ({', '.join(f'{k} {recipe_steps(FAMILIES[k])}' for k in families)}) "
          "x s/step + decode; no prompt encoding. Sizes: " + "; ".join(f"{k}: {SOURCES[k]}" for k in families))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "rows": run.rows}, indent=1, default=str))
    return 1 if any(r.get("broken") for r in run.rows) else 0


def run_families(run: Run, families: list[str], profiles: list, rounds: int, max_minutes: float) -> None:
    """Per family: the priming call, then ``rounds`` interleaved rounds of raw + each profile; the rows,
    each at its best round, go to ``run.rows``. No row starts after ``max_minutes``."""
    started = time.perf_counter()

    def late() -> bool:
        return time.perf_counter() - started > 60 * max_minutes

    for key in families:
        fam = FAMILIES[key]
        if not late():
            prime(fam, run)
        results: list[list[dict]] = []
        for n in range(rounds):
            results.append([])
            for label, speed in [("raw", None), *profiles]:
                row = not_run(fam, label, max_minutes) if late() else measure(fam, label, speed, run)
                results[-1].append(row)
                print(f"  {key} {label} (round {n + 1}): {_num(row.get('s_per_step'))} s/step, "
                      f"{row['error'] or 'ok'} ({time.perf_counter() - started:.0f} s in)", file=sys.stderr, flush=True)
        run.rows.extend(best_of(list(same)) for same in zip(*results))

if __name__ == "__main__":
    sys.exit(main())

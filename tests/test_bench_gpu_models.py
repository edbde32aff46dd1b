"""bench/bench_gpu_models.py in its CPU smoke mode, at a very small size: a row per profile against the raw call,
each with a numeric ratio, what apply_speed applied or skipped (and why), and the cache hooks' calls per step.

Timings are never asserted: only that each figure was measured and the rows hold what the table says.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the extra: pip install 'reelforge[diffusers]'")
pytest.importorskip("diffusers", reason="needs the extra: pip install 'reelforge[diffusers]'")

ROOT = Path(__file__).resolve().parents[1]
FAMILY = "wan2.2-ti2v-5b"  # the family whose transformer the preset's first-block cache hooks into
PROFILES = ["quality", "fast", "low-memory", "quality+vae_tiling=true"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "rows.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_gpu_models.py"), "--smoke", "--families", FAMILY,
         "--profiles", ",".join(PROFILES), "--steps", "2", "--rounds", "1", "--size", "64x64x5", "--threads", "1",
         "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())["rows"]


def _table_row(stdout: str, profile: str) -> list[str]:
    lines = [line for line in stdout.splitlines() if line.startswith(f"| {FAMILY} | {profile} |")]
    assert len(lines) == 1, stdout
    return [c.strip() for c in lines[0].strip("|").split("|")]


def test_a_row_per_profile_after_the_raw_call(smoke):
    stdout, rows = smoke
    assert [r["profile"] for r in rows] == ["raw", *PROFILES]
    assert all(r["family"] == FAMILY and r["error"] is None for r in rows)
    for r in rows:
        assert r["s_per_step"] > 0 and r["decode_s"] > 0 and r["warmup_s"] > 0
        assert r["job_s"] == pytest.approx(r["recipe_steps"] * r["s_per_step"] + r["decode_s"])
        assert r["peak_steps_gib"] >= 0 and r["peak_decode_gib"] >= 0  # measured per phase (CPU: peak RSS)
    assert rows[0]["recipe_steps"] == 50  # Wan's recipe, read from the engine's family table


def test_each_profile_row_has_numeric_ratios_to_raw(smoke):
    stdout, rows = smoke
    head = [c.strip() for c in next(line for line in stdout.splitlines() if line.startswith("| family |"))
            .strip("|").split("|")]
    ratio_cols = [i for i, c in enumerate(head) if c == "÷ raw"]
    assert [head[i - 1] for i in ratio_cols[:3]] == ["s/step", "decode s", "job s"]
    raw = rows[0]
    for r in rows[1:]:
        cells = _table_row(stdout, r["profile"])
        step_ratio = float(cells[ratio_cols[0]])
        assert step_ratio == pytest.approx(r["s_per_step"] / raw["s_per_step"], rel=0.02)
        float(cells[ratio_cols[1]]), float(cells[ratio_cols[2]])


def test_applied_and_skipped_read_back_with_reasons(smoke):
    stdout, rows = smoke
    by = {r["profile"]: r for r in rows}
    assert by["raw"]["report"] == [] and by["quality"]["report"] == []
    fast = {e["feature"]: e for e in by["fast"]["report"]}
    assert fast["cache"]["applied"] and "first_block" in fast["cache"]["detail"]
    assert not fast["compile"]["applied"] and "CUDA" in fast["compile"]["reason"]
    low = {e["feature"]: e for e in by["low-memory"]["report"]}
    assert not low["group_offload"]["applied"] and "accelerator" in low["group_offload"]["reason"]
    assert low["fp8_storage"]["applied"] and low["vae_tiling"]["applied"]
    single = {e["feature"]: e for e in by["quality+vae_tiling=true"]["report"]}
    assert list(single) == ["vae_tiling"] and single["vae_tiling"]["applied"]
    line = next(line for line in stdout.splitlines() if line.startswith(f"- {FAMILY} low-memory:"))
    assert "applied: fp8_storage" in line and "skipped: group_offload (needs an accelerator" in line


def test_cache_hooks_show_calls_skipped_per_timed_step(smoke):
    stdout, rows = smoke
    by = {r["profile"]: r for r in rows}
    per_step = by["fast"]["cache_per_step"]
    assert len(per_step) == 2 and all(re.fullmatch(r"\d+/2", s) for s in per_step)  # Wan: cond + uncond calls
    assert "cache_per_step" not in by["low-memory"]
    cells = _table_row(stdout, "fast")
    assert cells[-1] == " ".join(per_step) and cells[2].endswith("†")
    assert "no real figure" in stdout


def test_the_published_sizes_fit_their_grids_end_to_end_on_the_meta_device():
    """No GPU here: the 5B transformer, its VAE and the native grid run through the whole call as shapes only."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_gpu_models.py"), "--meta", "--families", FAMILY],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{FAMILY}: transformer 5.00B; 1280x704, 121 frames -> (1, 121, 3, 704, 1280)" in proc.stdout


@pytest.mark.parametrize("args, names", [
    (["--families", "wan9"], "--families: wan9 unknown; allowed: wan2.2-ti2v-5b, ltx2, hunyuanvideo-1.5"),
    (["--smoke", "--profiles", "quality+cache=nope"], "--profiles: cache.kind: Input should be"),
    (["--smoke", "--size", "64x64"], "--size '64x64' is not WIDTHxHEIGHTxFRAMES"),
])
def test_bad_arguments_end_with_one_line_naming_the_field(args, names):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_gpu_models.py"), *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"bench_gpu_models: {names}")

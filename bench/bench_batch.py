"""Batch makespan against the ideal ceil(N/C)*T, with an engine that takes a fixed time per job.

Run: .venv/bin/python bench/bench_batch.py [--jobs 20] [--seconds 0.5] [--concurrency 1,2,4,8]
A test engine registered through reelforge.engines.register_engine (the door third-party engines
use) sleeps T seconds per shot and yields tiny frames. Each row runs N one-shot jobs through
reelforge.workflows.batch_runner.BatchRunner on an embedded Client with C worker threads and C jobs in flight.
T1 is one job alone, end to end (submit to COMPLETED): T plus the per-job cost of the job log,
encoding, poster and contact sheet.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reelforge.workflows.batch import read_batch  # noqa: E402
from reelforge.workflows.batch_runner import BatchRunner  # noqa: E402
from reelforge.client.client import Client  # noqa: E402
from reelforge.engines import Engine, EngineOptions, ShotPlan, register_engine  # noqa: E402
from reelforge.request.limits import LOCAL, ModelSpec  # noqa: E402

MODEL = "bench.sleep-v1"


class SleepEngine(Engine):
    """Takes exactly ``seconds`` per shot, then yields black frames."""

    engine_id = "bench-sleep"
    generative = False

    class Options(EngineOptions):
        seconds: float = 0.5

    @classmethod
    def models(cls):
        return [ModelSpec(MODEL, cls.engine_id, "fixed-duration bench engine", LOCAL, engine_options={"seconds": SECONDS})]

    def render_shot(self, shot: ShotPlan, progress) -> Iterable[np.ndarray]:
        time.sleep(self.options.seconds)
        frame = np.zeros((shot.height, shot.width, 3), np.uint8)
        for i in range(shot.frame_count):
            progress(i, shot.frame_count, "render")
            yield frame


SECONDS = 0.5


def run_batch(n: int, c: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "b.jsonl"
        path.write_text("".join(f'"A bench job number {i}."\n' for i in range(n)))
        items = read_batch(path, defaults={"model": MODEL, "duration": 1, "fps": 8, "resolution": "64x64"})
        client = Client(data_dir=Path(d) / "home", workers=c)
        t0 = time.perf_counter()
        results = BatchRunner(client, items, concurrency=c).run()
        took = time.perf_counter() - t0
        client._backend.runtime.stop()
        assert all(r.status == "COMPLETED" for r in results), results
        return took


def main() -> None:
    global SECONDS
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--concurrency", default="1,2,4,8")
    args = ap.parse_args()
    SECONDS = args.seconds
    register_engine(SleepEngine)
    run_batch(2, 1)  # warm-up: imports, codecs
    t1 = run_batch(1, 1)
    n = args.jobs
    print(f"# N={n} jobs of T={SECONDS:g} s (1 s of 64x64 at 8 fps each); T1 = {t1:.3f} s; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print()
    print("| C | makespan | ideal ceil(N/C)*T | makespan / ideal | ceil(N/C)*T1 | makespan / that |")
    print("|---|---|---|---|---|---|")
    for c in (int(v) for v in args.concurrency.split(",")):
        took = run_batch(n, c)
        waves = math.ceil(n / c)
        ideal, ideal1 = waves * SECONDS, waves * t1
        print(f"| {c} | {took:.2f} s | {ideal:.2f} s | {took / ideal:.2f} | {ideal1:.2f} s | {took / ideal1:.2f} |")


if __name__ == "__main__":
    main()

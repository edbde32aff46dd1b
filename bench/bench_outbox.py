"""Benchmark what the webhook outbox costs the job log: a job's life (create, claim, 5 heartbeats,
finish) without endpoints and with one, on SQLite in /dev/shm (so the disk's fsync, which dwarfs
it, is out of the figure).

    .venv/bin/python bench/bench_outbox.py [--jobs 300] [--rounds 5]

Rounds alternate the two cases; each cell is the median over rounds of the mean per job. With an
endpoint, the trigger writes two outbox rows per job (started, completed); without, it runs its
WHEN test only. To compare with code that has no outbox, run this in a checkout of it with
``--without-only``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reelforge.jobs.record import JobRecord, JobStatus  # noqa: E402
from reelforge.jobs.sqlite import SQLiteJobStore  # noqa: E402

ENDPOINT = {"endpoints": [{"name": "server", "url": "https://a.example/", "kinds": ["started", "completed", "failed", "canceled"], "key": "k"}]}


def one_round(jobs: int, hooks: bool) -> tuple[float, float]:
    folder = tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
    store = SQLiteJobStore(Path(folder) / "jobs.sqlite3")
    kw = {"webhooks": ENDPOINT} if hooks else {}
    t0 = time.perf_counter()
    for i in range(jobs):
        store.create(JobRecord(id=f"j{i:011d}", arn="a", model_id="m", model_input={}, output_uri="u", storage_uri="u", **kw))
    t1 = time.perf_counter()
    for _ in range(jobs):
        job = store.claim("w", 30)
        for p in (0.01, 0.02, 0.03, 0.04, 0.05):
            store.heartbeat(job.id, "w", 30, p, "rendering", fence=job.fence)
        store.finish(job.id, "w", JobStatus.COMPLETED, fence=job.fence)
    t2 = time.perf_counter()
    return (t1 - t0) / jobs * 1e6, (t2 - t1) / jobs * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--without-only", action="store_true", help="only the case without endpoints (for code without an outbox)")
    args = ap.parse_args()
    cases = [False] if args.without_only else [False, True]
    results: dict[bool, list[tuple[float, float]]] = {c: [] for c in cases}
    for _ in range(args.rounds):
        for c in cases:
            results[c].append(one_round(args.jobs, c))
    print(f"{'case':<24}{'create us':>12}{'claim..finish us':>18}")
    med = {c: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)) for c, rs in results.items()}
    for c in cases:
        print(f"{'one endpoint' if c else 'no endpoints':<24}{med[c][0]:>12.0f}{med[c][1]:>18.0f}")
    if True in med:
        print(f"ratio one endpoint / none: create {med[True][0] / med[False][0]:.2f}x, claim..finish {med[True][1] / med[False][1]:.2f}x")


if __name__ == "__main__":
    main()

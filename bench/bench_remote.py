"""Benchmark the remote engines: does forwarding add a serial bottleneck?

    PYTHONPATH=. .venv/bin/python bench/bench_remote.py [--jobs 100] [--job-s 2] [--concurrency 10] [--kinds bedrock,openai-videos] [--rounds 2]

Upstream A is `reelforge serve` (a process of its own, on loopback, as on another machine) whose engine takes a fixed T seconds
per job (``--job-s``), with ``--concurrency`` workers. Baseline: ``--jobs`` jobs submitted straight to A
(boto3), makespan from the first submit to the last completion. Then the same jobs submitted to B,
a second `reelforge serve` (one process; its forward's limit twice A's workers, so that A's own queue
stays fed; one worker thread, the remote engines being coroutines on its async lane) forwarding every job to A through each remote engine; makespan measured the
same way, on B; ``--rounds`` alternate A alone and through B, medians shown. The ratio B / A must stay within 1.1: the remote engine (create, one poller per
upstream, download, probe, publish) adds no serial bottleneck.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402

from reelforge import Engine, register_engine  # noqa: E402
from reelforge.request.limits import LOCAL, ModelSpec  # noqa: E402

MODEL = "bench.fixed-time"
TINY = {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a red ball rolls across a table"},
        "videoGenerationConfig": {"durationSeconds": 1, "fps": 8, "dimension": "128x72", "seed": 1}}


@register_engine
class FixedTimeEngine(Engine):
    """T seconds a job, whatever it asks (REELFORGE_BENCH_JOB_S), then plain frames."""

    engine_id = "bench-fixed-time"

    @classmethod
    def models(cls):
        return [ModelSpec(MODEL, "bench-fixed-time", "a fixed time per job", LOCAL)]

    def render_shot(self, shot, progress):
        end = time.monotonic() + float(os.environ["REELFORGE_BENCH_JOB_S"])
        while (left := end - time.monotonic()) > 0:
            progress(0, 1, "waiting")
            time.sleep(min(left, 0.2))
        for _ in range(shot.frame_count):
            yield np.full((shot.height, shot.width, 3), 90, np.uint8)


def makespan(url: str, jobs: int) -> float:
    from server_fixtures import bedrock

    client = bedrock(url)
    t0 = time.monotonic()
    arns = [client.start_async_invoke(modelId=MODEL, modelInput=TINY, outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bench-out/v"}})["invocationArn"]
            for _ in range(jobs)]
    pending = set(arns)
    while pending:
        for arn in list(pending):
            status = client.get_async_invoke(invocationArn=arn)["status"]
            if status == "Failed":
                raise SystemExit(f"{arn} failed: {client.get_async_invoke(invocationArn=arn).get('failureMessage')}")
            if status == "Completed":
                pending.discard(arn)
        time.sleep(0.05)
    return time.monotonic() - t0


@contextlib.contextmanager
def upstream_process(home: Path, workers: int):
    """A: `reelforge serve` in a process of its own (as on another machine), with this module's engine loaded."""
    from faults import Worker
    from server_fixtures import free_port, http

    port = free_port()
    home.mkdir(parents=True)
    env = {**os.environ, "REELFORGE_HOME": str(home / "a"), "PYTHONPATH": str(ROOT / "bench")}
    a = Worker(env, "--port", str(port), "--workers", str(workers), "--bucket-dir", str(home / "a-b"), "--log-level", "warning",
               command="serve", preload="bench_remote", log=home / "a.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http(url + "/reelforge/health")[0] == 200:
                    break
            except OSError:
                pass
            if not a.alive() or time.monotonic() > deadline:
                raise SystemExit(f"the upstream did not start; see {home / 'a.log'}")
            time.sleep(0.2)
        yield url
    finally:
        a.kill9()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--job-s", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--kinds", default="bedrock,openai-videos")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of A alone and through B; medians are shown")
    args = ap.parse_args()
    os.environ["REELFORGE_BENCH_JOB_S"] = str(args.job_s)

    from reelforge.engines.forward import Forwards
    from reelforge.server.app import ServerSettings
    from server_fixtures import ServerThread

    root = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    rows = []
    for kind in args.kinds.split(","):
        bases, forwardeds = [], []
        for n in range(args.rounds):  # alternating, so load from elsewhere on the machine falls on both alike
            home = root / f"{kind}-{n}"
            with upstream_process(home, args.concurrency) as a_url:
                bases.append(makespan(a_url, args.jobs))
                upstream = f"{a_url}#{MODEL}" if kind == "openai-videos" else a_url
                # The forward's limit is twice A's workers, so A's queue never runs dry while B notices an end and
                # creates the next job; B has one worker thread: every followed job waits on its async lane.
                fw = Forwards.parse([f"{MODEL}={kind}:{upstream};concurrency={2 * args.concurrency}"])
                with ServerThread(ServerSettings(workers=1, bucket_dir=home / "b-b", data_dir=home / "b", forwards=fw)) as b:
                    forwardeds.append(makespan(b.url, args.jobs))
        rows.append((kind, statistics.median(bases), statistics.median(forwardeds)))
    ideal = args.jobs / args.concurrency * args.job_s
    print(f"\n{args.jobs} jobs, T = {args.job_s:g} s each, concurrency {args.concurrency} (ideal makespan {ideal:.1f} s)\n")
    print("| engine | upstream A alone (s) | forwarded through B (s) | ratio B/A |")
    print("|---|---|---|---|")
    for kind, base, forwarded in rows:
        print(f"| {kind} | {base:.1f} | {forwarded:.1f} | {forwarded / base:.3f} |")
    worst = max(f / b for _, b, f in rows)
    print(f"\nworst ratio {worst:.3f} (must be <= 1.1): {'ok' if worst <= 1.1 else 'TOO SLOW'}")


if __name__ == "__main__":
    main()

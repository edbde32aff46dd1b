"""Benchmark webhook latency: from a job's completion (its end time in the job log) to the signed
notification arriving at a receiver on 127.0.0.1.

    .venv/bin/python bench/bench_webhooks.py [--jobs 40] [--postgres URL]

(``--postgres``: the job log in a fresh schema of that database instead of SQLite.)

`reelforge serve` runs as the real command (SQLite job log, one worker, --webhook to the receiver,
--webhook-events job.completed), jobs are started with unmodified boto3, and the receiver notes
the time each job.completed arrives. Two baselines are measured in the same run:

* poll: a GetAsyncInvoke loop with no sleep at all, the fastest a client can learn of the
  completion by polling (a real client sleeps between polls, so it learns later);
* POST: a bare HTTP POST of the same body to the same receiver from this process (no job log, no
  signing, no dispatcher): the floor any notification pays.

The ratios say what the outbox (a row written with the status change, a dispatcher woken in the
same process, a claim, the body kept, the attempt recorded) adds over those.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TINY = {
    "taskType": "TEXT_VIDEO",
    "textToVideoParams": {"text": "a red ball rolls across a table"},
    "videoGenerationConfig": {"durationSeconds": 1, "fps": 8, "dimension": "128x72", "seed": 1},
}
MODEL = "reelforge.animatic-v1"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def receiver() -> tuple[http.server.ThreadingHTTPServer, dict[str, float]]:
    arrived: dict[str, float] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            now = time.time()
            doc = json.loads(body)
            if doc.get("type") == "job.completed":
                arrived[doc["data"]["invocationArn"].rsplit("/", 1)[1]] = now
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, arrived


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--postgres", metavar="URL", help="a PostgreSQL database for the job log (a schema is made and dropped)")
    args = ap.parse_args()

    import boto3
    from botocore.config import Config

    from reelforge.jobs import webhooks
    from reelforge.jobs.postgres import PostgresJobStore
    from reelforge.jobs.sqlite import SQLiteJobStore

    home = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    recv, arrived = receiver()
    url = f"http://127.0.0.1:{recv.server_address[1]}/hooks"
    secret = webhooks.new_secret()
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, REELFORGE_HOME=str(home), REELFORGE_WEBHOOK_SECRET=secret, PYTHONPATH=str(ROOT))
    schema = None
    if args.postgres:
        import uuid

        import psycopg

        schema = "bench_hooks_" + uuid.uuid4().hex[:8]
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        env["REELFORGE_DATABASE_URL"] = f"{args.postgres}{'&' if '?' in args.postgres else '?'}options=-csearch_path%3D{schema}"
    cmd = [sys.executable, "-m", "reelforge", "serve", "--port", str(port), "--log-level", "warning", "--workers", "1",
           "--bucket-dir", str(home / "b"), "--webhook", url, "--webhook-events", "job.completed", "--allow-private-webhooks"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = boto3.client("bedrock-runtime", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                              aws_access_key_id="x", aws_secret_access_key="x", config=Config(retries={"total_max_attempts": 1}))
        deadline = time.monotonic() + 30
        while True:
            try:
                client.list_async_invokes(maxResults=1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        store = PostgresJobStore(env["REELFORGE_DATABASE_URL"]) if schema else SQLiteJobStore(home / "jobs.sqlite3")
        seen: dict[str, float] = {}
        for _ in range(args.jobs):  # one at a time, so each poll loop watches one job to its end
            arn = client.start_async_invoke(modelId=MODEL, modelInput=TINY, outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bench/out"}})["invocationArn"]
            while client.get_async_invoke(invocationArn=arn)["status"] == "InProgress":
                pass
            seen[arn.rsplit("/", 1)[1]] = time.time()
        deadline = time.monotonic() + 30
        while len(arrived) < args.jobs and time.monotonic() < deadline:
            time.sleep(0.05)
        ends = {job_id: store.get(job_id).end_time for job_id in seen}
        hook = [(arrived[j] - ends[j]) * 1000 for j in seen if j in arrived]
        poll = [(seen[j] - ends[j]) * 1000 for j in seen]
        body = json.dumps({"type": "job.completed", "data": {"invocationArn": "arn:x/bare"}}).encode()
        bare = []
        for _ in range(args.jobs):
            t0 = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", recv.server_address[1], timeout=10)
            conn.request("POST", "/hooks", body=body, headers={"Content-Type": "application/json"})
            conn.getresponse().read()
            conn.close()
            bare.append((time.perf_counter() - t0) * 1000)
    finally:
        proc.terminate()
        proc.wait(15)
        recv.shutdown()
        if schema:
            from reelforge.jobs.postgres import close_pools

            close_pools(schema)
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")

    print(f"job log: {'PostgreSQL' if schema else 'SQLite'}; jobs: {args.jobs}, notifications arrived: {len(hook)}")
    print(f"{'latency after completion (ms)':<44}{'p50':>9}{'p99':>9}")
    for name, values in (("webhook (job.completed at the receiver)", hook), ("poll without sleep (GetAsyncInvoke)", poll), ("bare HTTP POST to the receiver", bare)):
        print(f"{name:<44}{pct(values, 50):>9.2f}{pct(values, 99):>9.2f}")
    print(f"ratio webhook / poll without sleep: p50 {pct(hook, 50) / pct(poll, 50):.2f}x, p99 {pct(hook, 99) / pct(poll, 99):.2f}x")
    print(f"ratio webhook / bare POST:          p50 {pct(hook, 50) / pct(bare, 50):.2f}x, p99 {pct(hook, 99) / pct(bare, 99):.2f}x")
    print(f"(mean webhook {statistics.mean(hook):.2f} ms)")


if __name__ == "__main__":
    main()

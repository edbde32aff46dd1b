"""Benchmark `reelforge serve`: request rate and latency of Get/List, and completion-to-wait delay.

    .venv/bin/python bench/bench_server.py [--seconds 10] [--rounds 5] [--threads 4] [--jobs 100] [--waits 10] [--ops get,list,video]

1. GetAsyncInvoke and ListAsyncInvokes (100 jobs stored, one page of all 100) from 1 and from 4
   boto3 threads, and OpenAI's retrieve (``videos.retrieve``) from as many openai clients, on
   kept-alive connections, against `reelforge serve` and against a minimal
   Starlette app that returns the very same response bytes, fixed. reelforge runs as the real
   command (`python -m reelforge serve`: its own listener from `bind_listener`, its protocol and
   limits from `uvicorn_config`); the minimal app runs on `uvicorn.run`'s own listener. So the
   ratio is the cost of everything `reelforge serve` adds, the listener included: a listener
   without TCP_NODELAY on its connections shows as ~40 ms per request (the delayed ACK), most
   plainly in the 1-thread rows. The two servers are measured in alternating rounds
   (``--rounds``), so that load from elsewhere on the machine falls on both alike.
   With ``--instructions N`` it also counts, under valgrind's callgrind, the CPU instructions
   each server executes per request over N requests of each operation (the same requests from
   the same clients, both servers started under valgrind, `reelforge serve` with ``--workers
   0``): a count that does not move with the machine's load, where the request rates of a shared
   two-CPU machine swing by 10 % from run to run. Its ratio minimal/reelforge is the share of
   reelforge's server work that the minimal app also does.
2. The delay from a job's end (its end time in the job log) to `Job.wait()` returning:
   server-sent events, reelforge's adaptive polling (1 s growing to 15 s), and the notebook's
   fixed 60 s polling. The notebook's figure is analytic: a job ends at a uniformly random point
   of a 60 s sleep, so the mean delay is 30 s and the worst 60 s; the polling loop itself is also
   measured with the sleep scaled down 60x (1 s) and scaled back up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = {
    "taskType": "TEXT_VIDEO",
    "textToVideoParams": {"text": "a red ball rolls across a table"},
    "videoGenerationConfig": {"durationSeconds": 1, "fps": 8, "dimension": "128x72", "seed": 1},
}
MODEL = "reelforge.animatic-v1"


# --- the minimal comparison app (run as a subprocess with --minimal FILE PORT) -----------------


def minimal_app(fixed: dict[str, bytes]):
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def get(request):
        return Response(fixed["get"], media_type="application/json")

    async def lst(request):
        return Response(fixed["list"], media_type="application/json")

    async def video(request):
        return Response(fixed["video"], media_type="application/json")

    return Starlette(routes=[
        Route("/async-invoke", lst, methods=["GET"]), Route("/async-invoke/{arn:path}", get, methods=["GET"]),
        Route("/v1/videos/{video_id}", video, methods=["GET"]),
    ])


def serve_minimal(path: str, port: int) -> None:
    import uvicorn

    data = json.loads(Path(path).read_text())
    fixed = {k: v.encode() for k, v in data.items()}
    uvicorn.run(minimal_app(fixed), host="127.0.0.1", port=port, log_level="warning")


# --- helpers ------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early ({proc.returncode})")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not start")


def bedrock(url: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=4),
    )


def openai_client(url: str):
    import warnings

    import openai

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the client announces the hosted API's shutdown
    return openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0)


def compare(urls: dict[str, str], op: str, arns: list[str], threads: int, seconds: float, rounds: int) -> dict[str, tuple[float, list[float]]]:
    """Requests per second and every latency (s) of ``op`` on each server, measured in alternating rounds."""
    make = openai_client if op == "video" else bedrock
    clients = {label: [make(url) for _ in range(threads)] for label, url in urls.items()}
    for group in clients.values():  # warm connections and botocore's model caches
        for c in group:
            call(c, op, arns)
    elapsed = dict.fromkeys(urls, 0.0)
    lat: dict[str, list[float]] = {label: [] for label in urls}
    for _ in range(rounds):
        for label, group in clients.items():
            took, more = hammer(group, op, arns, seconds / rounds)
            elapsed[label] += took
            lat[label] += more
    return {label: (len(lat[label]) / elapsed[label], lat[label]) for label in urls}


def hammer(clients: list, op: str, arns: list[str], seconds: float) -> tuple[float, list[float]]:
    """Elapsed seconds and every latency (s) of ``op`` from one thread per (warm) boto3 client."""
    threads = len(clients)
    lat: list[list[float]] = [[] for _ in range(threads)]
    stop = time.perf_counter() + seconds

    def run(i: int) -> None:
        rng = random.Random(i)
        c = clients[i]
        while time.perf_counter() < stop:
            t = time.perf_counter()
            call(c, op, arns, rng)
            lat[i].append(time.perf_counter() - t)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0, [x for part in lat for x in part]


def call(client, op: str, arns: list[str], rng: random.Random | None = None) -> None:
    if op == "get":
        client.get_async_invoke(invocationArn=(rng or random).choice(arns))
    elif op == "video":
        client.videos.retrieve("video_" + (rng or random).choice(arns).rsplit("/", 1)[1])
    else:
        r = client.list_async_invokes(maxResults=100)
        assert len(r["asyncInvokeSummaries"]) == min(len(arns), 100)


def instructions(cmd: list[str], env: dict, url: str, op: str, arns: list[str], n: int, out: Path) -> float:
    """CPU instructions per request of ``op`` that the server ``cmd`` runs (callgrind, counting only during the N requests)."""
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *cmd],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_up(url + "/reelforge/health", proc, timeout=600)
        client = (openai_client if op == "video" else bedrock)(url)
        for some in [[arn] for arn in arns] if op != "list" else [arns] * 10:  # warm: every job read, connections and caches made
            call(client, op, some)
        subprocess.run(["callgrind_control", "--instr=on", str(proc.pid)], check=True, capture_output=True)
        rng = random.Random(0)  # the same requests for both servers
        for _ in range(n):
            call(client, op, arns, rng)
        subprocess.run(["callgrind_control", "--instr=off", str(proc.pid)], check=True, capture_output=True)
    finally:
        proc.terminate()
        proc.wait(60)
    totals = [line for line in out.read_text().splitlines() if line.startswith("totals:")]
    return int(totals[0].split()[1]) / n


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")


# --- the benchmark ------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0, help="load time per server and operation, all rounds together")
    ap.add_argument("--rounds", type=int, default=5, help="alternations between the two servers")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--waits", type=int, default=10, help="jobs per wait-delay measurement (0: skip it)")
    ap.add_argument("--ops", default="get,list,video", help="operations to measure: get (GetAsyncInvoke), list (ListAsyncInvokes), video (OpenAI videos.retrieve)")
    ap.add_argument("--instructions", type=int, default=0, metavar="N", help="also count each server's CPU instructions per request over N requests (valgrind)")
    ap.add_argument("--minimal", nargs=2, metavar=("FILE", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.minimal:
        serve_minimal(args.minimal[0], int(args.minimal[1]))
        return

    tmp = Path(tempfile.mkdtemp(prefix="reelforge-bench-"))
    env = dict(os.environ, REELFORGE_HOME=str(tmp / "home"))
    env.pop("AWS_BEARER_TOKEN_BEDROCK", None)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs = []
    try:
        rf = subprocess.Popen(
            [sys.executable, "-m", "reelforge", "serve", "--port", str(port), "--workers", "2", "--bucket-dir", str(tmp / "buckets"), "--log-level", "warning"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(rf)
        wait_up(url + "/reelforge/health", rf)
        c = bedrock(url)
        arns = [c.start_async_invoke(modelId=MODEL, modelInput=TINY, outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bench-bucket/out"}})["invocationArn"] for _ in range(args.jobs)]
        while any(s["status"] == "InProgress" for s in c.list_async_invokes(maxResults=1000)["asyncInvokeSummaries"]):
            time.sleep(0.2)

        fixed = {
            "get": urllib.request.urlopen(f"{url}/async-invoke/{urllib.parse.quote(arns[0], safe='')}").read().decode(),
            "list": urllib.request.urlopen(f"{url}/async-invoke?maxResults=100").read().decode(),
            "video": urllib.request.urlopen(f"{url}/v1/videos/video_{arns[0].rsplit('/', 1)[1]}").read().decode(),
        }
        (tmp / "fixed.json").write_text(json.dumps(fixed))
        mport = free_port()
        murl = f"http://127.0.0.1:{mport}"
        mini = subprocess.Popen([sys.executable, __file__, "--minimal", str(tmp / "fixed.json"), str(mport)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(mini)
        wait_up(murl + "/async-invoke", mini)

        rows = []
        ops = (("get", "GetAsyncInvoke"), ("list", f"ListAsyncInvokes ({args.jobs} jobs, 1 page)"), ("video", "OpenAI videos.retrieve"))
        for op, name in [o for o in ops if o[0] in args.ops.split(",")]:
            for threads in sorted({1, args.threads}):
                res = compare({"reelforge": url, "minimal": murl}, op, arns, threads, args.seconds, args.rounds)
                for label, (rps, lat) in res.items():
                    rows.append([name, str(threads), label, f"{rps:,.0f}", f"{pct(lat, 50) * 1000:.1f}", f"{pct(lat, 99) * 1000:.1f}", f"{len(lat):,}"])
                rows.append([name, str(threads), "ratio reelforge/minimal", f"{res['reelforge'][0] / res['minimal'][0]:.2f}", "", "", ""])
        table(
            f"Request rate, boto3 threads x {args.seconds:g} s in {args.rounds} alternating rounds, uvicorn subprocesses, {os.cpu_count()} CPUs",
            ["operation", "threads", "server", "req/s", "p50 ms", "p99 ms", "requests"],
            rows,
        )

        if args.instructions:
            if not shutil.which("valgrind"):
                raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
            rows = []
            for op, name in [o for o in ops if o[0] in args.ops.split(",")]:
                counts = {}
                for label in ("reelforge", "minimal"):
                    cport = free_port()
                    if label == "reelforge":
                        cmd = [sys.executable, "-m", "reelforge", "serve", "--port", str(cport), "--workers", "0", "--bucket-dir", str(tmp / "buckets"), "--log-level", "warning"]
                    else:
                        cmd = [sys.executable, __file__, "--minimal", str(tmp / "fixed.json"), str(cport)]
                    counts[label] = instructions(cmd, env, f"http://127.0.0.1:{cport}", op, arns, args.instructions, tmp / f"callgrind.{op}.{label}")
                    rows.append([name, label, f"{counts[label]:,.0f}"])
                rows.append([name, "ratio minimal/reelforge", f"{counts['minimal'] / counts['reelforge']:.2f}"])
            table(f"CPU instructions per request in the server (callgrind, {args.instructions} requests, 1 client)", ["operation", "server", "instructions"], rows)

        if not args.waits:
            return
        delays = measure_wait_delays(url, args.waits)
        rows = [[name, f"{statistics.mean(d):.3f}", f"{pct(d, 50):.3f}", f"{max(d):.3f}", str(len(d))] for name, d in delays]
        rows.append(["Job.wait(), adaptive polling once at 15 s (analytic, jobs over ~32 s)", "7.500", "7.500", "15.000", "-"])
        rows.append(["notebook, 60 s polling (analytic: uniform 0-60 s)", "30.000", "30.000", "60.000", "-"])
        table("Delay from a job's end to the waiter returning (seconds)", ["waiter", "mean", "p50", "max", "jobs"], rows)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def measure_wait_delays(url: str, n: int) -> list[tuple[str, list[float]]]:
    sys.path.insert(0, str(ROOT))
    import reelforge

    req = reelforge.VideoRequest(text="a red ball rolls across a table", duration_s=1, fps=8, width=128, height=72)
    slow = reelforge.VideoRequest(text="a slow pan over hills", duration_s=4, fps=24, width=640, height=360)
    out = []

    sse = reelforge.Client(endpoint=url)
    d = []
    for i in range(n):
        job = sse.start(req if i % 2 else slow, model=MODEL, output="s3://bench-bucket/wait")
        job.wait(timeout=120)
        returned = time.time()
        d.append(returned - job.record.end_time)
    out.append(("Job.wait(), server-sent events", d))

    polling = reelforge.Client(endpoint=url)
    polling._backend._reelforge = False  # as against Bedrock: Get only, 1 s growing to 15 s
    d = []
    for _ in range(max(3, n // 3)):
        job = polling.start(slow, model=MODEL, output="s3://bench-bucket/wait")
        job.wait(timeout=120)
        returned = time.time()
        d.append(returned - sse.get(job.id).record.end_time)
    out.append(("Job.wait(), adaptive polling 1->15 s (~1 s jobs: first poll)", d))

    # the notebook's loop (get, check, sleep), its 60 s sleep scaled down 60x, result scaled back up
    client = reelforge.client.remote.RemoteBackend(url).bedrock
    scale = 60.0
    d = []
    for _ in range(max(3, n // 3)):
        arn = client.start_async_invoke(modelId=MODEL, modelInput=TINY, outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bench-bucket/nb"}})["invocationArn"]
        time.sleep(random.random())  # start at a random phase of the poll
        while client.get_async_invoke(invocationArn=arn)["status"] == "InProgress":
            time.sleep(60 / scale)
        returned = time.time()
        d.append((returned - sse.get(arn).record.end_time) * scale)
    out.append((f"notebook loop, 60 s polling (measured at 1/{scale:g} scale, scaled up)", d))
    return out


if __name__ == "__main__":
    main()

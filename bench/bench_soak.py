"""Soak: many jobs through real worker (and server) processes while they are killed, frozen and cut off.

    .venv/bin/python bench/bench_soak.py                      # 200 jobs, SQLite and PostgreSQL
    .venv/bin/python bench/bench_soak.py --jobs 50 --db sqlite

Faults, at random every 1-3 s while jobs run: kill -9 of a worker (restarted at once), kill -9 of
the server (restarted; clients retry their starts with the same client token), a worker frozen
with SIGSTOP for twice the lease then thawed, and (PostgreSQL) every database connection cut
with a TCP RST through a proxy. Then every accepted job is checked:

  lost           accepted (a start that returned an id) but not in the job log
  stuck          not ended when the run was over
  completed 2x   a unit whose completion was recorded twice (from the workers' logs)
  corrupt        COMPLETED but output.mp4 does not decode to the frames asked for
  failed         FAILED (a job may use 20 attempts here, so kills alone do not fail one)

and the takeover time of every unit a killed or frozen worker held: from the fault to the unit
being claimed again (dead workers on this host are seen at once; frozen ones when their lease ends).
tests/test_soak.py runs a small one of these in CI.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from faults import TcpProxy, Worker  # noqa: E402

PG_URL = os.environ.get("REELFORGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
MODEL = "reelforge.animatic-v1"


@dataclass
class Report:
    db: str
    jobs: int = 0
    lost: int = 0
    stuck: int = 0
    twice: int = 0
    corrupt: int = 0
    failed: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    takeovers: list[tuple[str, bool, float]] = field(default_factory=list)  # (kind, backlog, seconds)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def worst(self, kind: str, backlog: bool | None = None) -> float | None:
        times = [t for k, b, t in self.takeovers if k == kind and (backlog is None or b == backlog)]
        return max(times) if times else None

    @property
    def ok(self) -> bool:
        return not (self.lost or self.stuck or self.twice or self.corrupt)


def _request(rng: random.Random, n: int) -> dict:
    cfg = {"fps": 8, "dimension": "64x64", "seed": n}
    if rng.random() < 0.2:
        shots = [{"text": f"shot {k} of job {n}. Camera pan left."} for k in range(3)]
        return {"taskType": "MULTI_SHOT_MANUAL", "multiShotManualParams": {"shots": [dict(s, durationSeconds=1) for s in shots]}, "videoGenerationConfig": cfg}
    cfg["durationSeconds"] = rng.choice([1, 2])
    return {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": f"job {n}: a lighthouse at dusk. Camera zoom in."}, "videoGenerationConfig": cfg}


def _frames(model_input: dict) -> int:
    cfg = model_input["videoGenerationConfig"]
    if model_input["taskType"] == "MULTI_SHOT_MANUAL":
        return sum(s["durationSeconds"] for s in model_input["multiShotManualParams"]["shots"]) * cfg["fps"]
    return cfg["durationSeconds"] * cfg["fps"]


def soak(db: str, jobs: int = 200, workers: int = 3, server: bool = True, faults: bool = True, lease_s: float = 3.0,
         limit_s: float = 600.0, seed: int = 1, work: Path | None = None, log=print, fault_gap_s: tuple[float, float] = (1.0, 3.0)) -> Report:
    """Run one soak on ``db`` ("sqlite" or "postgres"); return its report. A fault comes every ``fault_gap_s`` (min, max) seconds."""
    run = _Soak(db, workers, server, faults, lease_s, seed, Path(work or tempfile.mkdtemp(prefix="reelforge-soak-")), fault_gap_s)
    try:
        return run.go(jobs, limit_s)
    finally:
        run.close()


class _Soak:
    def __init__(self, db, workers, server, faults, lease_s, seed, work: Path, fault_gap_s=(1.0, 3.0)):
        import boto3
        from botocore.config import Config

        from reelforge.jobs.open import open_store
        from reelforge.jobs.runtime import Runtime

        self.rng = random.Random(seed)
        self.seed, self.faults_on, self.lease_s, self.work, self.fault_gap_s = seed, faults, lease_s, work, fault_gap_s
        self.home = work / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.report = Report(db)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REELFORGE_")}
        # Attempts are many here: a job killed three times is given up by design, which would hide what we count.
        env.update(REELFORGE_HOME=str(self.home), REELFORGE_LEASE_S=str(lease_s), REELFORGE_RECOVER_S="0.5", REELFORGE_MAX_ATTEMPTS="20",
                   REELFORGE_BACKGROUND_WORKER="never", REELFORGE_DB_RETRY_S="20", AWS_ACCESS_KEY_ID="soak", AWS_SECRET_ACCESS_KEY="soak")
        self.proxy = self.schema = None
        if db == "postgres":
            import psycopg

            self.schema = "soak_" + uuid.uuid4().hex[:10]
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {self.schema}")
            self.proxy = TcpProxy(("127.0.0.1", 5432))
            env["REELFORGE_DATABASE_URL"] = self.proxy.url_for(f"{PG_URL}?options=-csearch_path%3D{self.schema}")
        self.saved = {k: os.environ.get(k) for k in env if k.startswith("REELFORGE_")}
        os.environ.update({k: v for k, v in env.items() if k.startswith("REELFORGE_")})
        self.runtime = Runtime(open_store(env.get("REELFORGE_DATABASE_URL") or self.home / "jobs.sqlite3"))
        self.store = self.runtime.store
        self.workers = [Worker(env, log=work / "workers.out").start() for _ in range(workers)]
        port = _free_port()
        args = ("--port", str(port), "--workers", "1", "--bucket-dir", str(work / "buckets"), "--log-level", "warning")
        self.server = Worker(env, *args, command="serve", log=work / "server.out").start() if server else None
        self.boto = boto3.client("bedrock-runtime", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                                 config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=30),
                                 aws_access_key_id="soak", aws_secret_access_key="soak")
        self.accepted: dict[str, dict] = {}  # job id -> model input
        self.pending: list[tuple[str, bool, float, list[tuple[str, int]]]] = []  # takeovers still to time
        self.frozen: list[tuple[Worker, float]] = []  # (worker, when to thaw it)
        self.next_fault = time.monotonic() + self.rng.uniform(*self.fault_gap_s)

    def go(self, jobs: int, limit_s: float) -> Report:
        t0 = time.monotonic()
        for n in range(jobs):
            model_input = _request(self.rng, n)
            if self.server is not None and n % 2:
                job_id = self._start_via_server(model_input, f"soak-{self.seed}-{n}")
            else:
                job_id = self.runtime.submit(MODEL, model_input, self.work / "out")[0].id
            self.accepted[job_id] = model_input
            self._tick()
        while time.monotonic() - t0 < limit_s and not all(self.store.get(i).status.done for i in self.accepted):
            self._tick()
            time.sleep(0.1)
        for w, _ in self.frozen:
            w.thaw()
        while self.pending and time.monotonic() - t0 < limit_s:
            self._time_takeovers()
            time.sleep(0.1)
        self.report.seconds = time.monotonic() - t0
        self._check()
        return self.report

    def _tick(self) -> None:
        now = time.monotonic()
        for entry in [f for f in self.frozen if f[1] <= now]:
            entry[0].thaw()
            self.frozen.remove(entry)
        self._time_takeovers()
        if self.faults_on and now >= self.next_fault:
            self._fault()
            self.next_fault = time.monotonic() + self.rng.uniform(*self.fault_gap_s)

    def _fault(self) -> None:
        from reelforge.jobs.record import JobStatus

        kinds = ["kill worker"] * 4 + ["freeze worker"] + (["kill server"] if self.server else []) + (["reset db"] if self.proxy else [])
        kind = self.rng.choice(kinds)
        self.report.faults[kind] = self.report.faults.get(kind, 0) + 1
        if kind == "reset db":
            self.proxy.reset()
            return
        thawed = [w for w in self.workers if w not in {f[0] for f in self.frozen}]
        target = self.server if kind == "kill server" else self.rng.choice(thawed or self.workers)
        backlog = bool(self.store.list(statuses=[JobStatus.QUEUED], limit=1))
        held = _held_by(self.store, target.pid)
        if kind == "freeze worker":
            if target in {f[0] for f in self.frozen}:
                return
            target.freeze()
            self.frozen.append((target, time.monotonic() + 2 * self.lease_s))  # long enough for a takeover
        else:
            target.kill9()
            target.start()
        if held:
            self.pending.append(("frozen" if kind == "freeze worker" else "killed", backlog, time.monotonic(), held))

    def _start_via_server(self, model_input, token) -> str:
        """StartAsyncInvoke as a careful client does it: after any error, the same request with the same token."""
        error = None
        for _ in range(300):
            try:
                arn = self.boto.start_async_invoke(modelId=MODEL, modelInput=model_input, clientRequestToken=token,
                                                   outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://soak-bucket/out"}})["invocationArn"]
                return arn.rsplit("/", 1)[-1]
            except Exception as exc:  # the server is restarting (or the database is away): try again shortly
                error = exc
                if not self.server.alive():
                    self.server.start()
                self._tick()
                time.sleep(0.2)
        raise RuntimeError(f"could not start a job through the server: {error}")

    def _time_takeovers(self) -> None:
        now = time.monotonic()
        for entry in list(self.pending):
            kind, backlog, started, units = entry
            left = []
            for unit_id, fence in units:
                unit = self.store.get(unit_id)
                if unit.fence == fence and not unit.status.done:
                    left.append((unit_id, fence))
                else:
                    self.report.takeovers.append((kind, backlog, now - started))
            self.pending.remove(entry)
            if left:
                self.pending.append((kind, backlog, started, left))

    def _check(self) -> None:
        from reelforge.media import video as media
        from reelforge.jobs.record import JobStatus

        r = self.report
        r.jobs = len(self.accepted)
        for job_id, model_input in self.accepted.items():
            try:
                job = self.store.get(job_id)
            except Exception:
                r.lost += 1
                r.problems.append(f"lost {job_id}")
                continue
            if not job.status.done:
                r.stuck += 1
                r.problems.append(f"stuck {job_id} {job.status.value} {job.stage}")
            elif job.status is JobStatus.FAILED:
                r.failed += 1
                r.problems.append(f"failed {job_id}: {job.failure_message}")
            elif job.status is JobStatus.COMPLETED:
                try:
                    frames = sum(1 for _ in media.read_frames(Path(job.storage_uri[len("file://"):]) / "output.mp4"))
                except Exception as exc:
                    frames = f"undecodable ({exc})"
                if frames != _frames(model_input):
                    r.corrupt += 1
                    r.problems.append(f"corrupt {job_id}: {frames} frames, {_frames(model_input)} asked for")
        r.twice = _completed_twice(self.home / "logs" / "reelforge.log", r)

    def close(self) -> None:
        for w, _ in self.frozen:
            w.thaw()
        for p in self.workers + ([self.server] if self.server else []):
            p.stop()
        self.runtime.stop()
        if self.proxy is not None:
            self.proxy.close()
        if self.schema is not None:
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {self.schema} CASCADE")
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _held_by(store, pid: int) -> list[tuple[str, int]]:
    """(unit id, fence) of every unit the process ``pid`` has claimed, shot units included."""
    from reelforge.jobs.record import JobStatus

    held = []
    for job in store.list(statuses=[JobStatus.RUNNING], limit=1000):
        for unit in [job, *store.children(job.id)]:
            if unit.status is JobStatus.RUNNING and unit.worker_id and f":{pid}:" in unit.worker_id:
                held.append((unit.id, unit.fence))
    return held


_COMPLETED = re.compile(r" completed in [0-9.]+ s \(.*?\bunit ([a-z0-9]{12}), claim (\d+)")


def _completed_twice(log_file: Path, report: Report) -> int:
    seen: dict[str, int] = {}
    if log_file.exists():
        for m in _COMPLETED.finditer(log_file.read_text(errors="replace")):
            seen[m.group(1)] = seen.get(m.group(1), 0) + 1
    twice = [u for u, n in seen.items() if n > 1]
    report.problems += [f"unit {u} completed {seen[u]} times" for u in twice]
    return len(twice)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _table(reports: list[Report], lease_s: float) -> str:
    def s(v):
        return "-" if v is None else f"{v:.1f}"

    lines = [
        "| job log    | jobs | lost | stuck | completed 2x | corrupt | failed | faults | worst takeover, killed (backlog / none) | worst takeover, frozen | run s |",
        "|------------|------|------|-------|--------------|---------|--------|--------|------------------------------------------|------------------------|-------|",
    ]
    for r in reports:
        faults = ", ".join(f"{n} {k}" for k, n in sorted(r.faults.items()))
        killed = f"{s(r.worst('killed', True))} / {s(r.worst('killed', False))}"
        lines.append(f"| {r.db:<10} | {r.jobs:>4} | {r.lost:>4} | {r.stuck:>5} | {r.twice:>12} | {r.corrupt:>7} | {r.failed:>6} | {faults} | {killed:>40} | {s(r.worst('frozen')):>22} | {r.seconds:5.0f} |")
    lines.append(f"\nLease {lease_s:g} s, recovery every 0.5 s: a takeover is due within lease + 5 = {lease_s + 5:g} s.")
    return "\n".join(lines)


def main() -> None:
    import logging

    logging.getLogger().addHandler(logging.NullHandler())  # the workers' logs are in the soak's folder; keep the table clean
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-server", action="store_true")
    args = parser.parse_args()
    reports = []
    for db in (["sqlite", "postgres"] if args.db == "both" else [args.db]):
        print(f"soaking {db}: {args.jobs} jobs, {args.workers} workers ...", flush=True)
        r = soak(db, jobs=args.jobs, workers=args.workers, server=not args.no_server, lease_s=args.lease, seed=args.seed)
        for p in r.problems:
            print("  " + p)
        reports.append(r)
    print(_table(reports, args.lease))
    sys.exit(0 if all(r.ok for r in reports) else 1)


if __name__ == "__main__":
    main()

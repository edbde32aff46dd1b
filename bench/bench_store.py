"""Benchmark the job log at scale: a page, a count, a get, a search, a claim and a create at 1k to 1M jobs.

    .venv/bin/python bench/bench_store.py [--sizes 1000,10000,100000,1000000] [--dbs sqlite,postgres]
                                          [--repeat 15] [--postgres URL]

For each size, a fresh job log (an SQLite file; a PostgreSQL schema) is made by the store itself,
then filled in bulk (executemany in large transactions; COPY) with realistic rows: mixed statuses
(a backlog of 100 queued and 8 running jobs, the rest 90% completed, 7% failed, 3% canceled), four
model ids, prompts drawn from a vocabulary ("lighthouse" in about 6% of them, "a red fox" in about
1%, "narwhal" in exactly 10, a few non-ASCII), 15% multi-shot jobs with their shot units, 2% with a
start image. PostgreSQL is vacuumed and analyzed after the fill, as autovacuum would; SQLite gets no
ANALYZE, as in use.

Each operation is timed `--repeat` times after a warm-up; the median is printed with its ratio to
the smallest size's median in the same run (and the rows returned where fewer than the page of 100:
a sparse filter at 1k jobs). A claim takes a new queued job each time. To measure older code, copy
this script into a checkout of it and run it there: operations it lacks (count) are left out.
"""

from __future__ import annotations

import argparse
import base64
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reelforge.jobs.open import open_store
from reelforge.jobs.record import JobRecord, JobStatus
from reelforge.jobs.sqlbase import row_values

T0 = 1_700_000_000.0
MODELS = [("amazon.nova-reel-v1:1", 60), ("reelforge.animatic-v1", 25), ("reelforge.ltx-video", 10), ("reelforge.wan-t2v", 5)]
ADJ = ["a red", "a tiny", "an old", "a glowing", "a paper", "a wooden", "a lonely", "a giant", "a silver", "a sleepy"]
SUBJECT = ["fox", "robot", "sailboat", "cat", "dragon", "bicycle", "owl", "train", "kite", "teapot", "whale", "astronaut"]
ACTION = ["drifts over", "runs across", "circles", "sleeps beside", "dances on", "races through", "watches", "climbs"]
PLACE = ["a quiet harbour", "the desert", "a neon city", "a pine forest", "the frozen lake", "a rooftop", "a crowded market",
         "the moon", "a wheat field", "a lighthouse", "a canyon", "a rainy street", "a coral reef", "the café terrace",
         "a mountain pass", "an old library", "a subway platform", "a volcano", "a sunflower field", "a misty bay"]
STYLE = ["cinematic", "golden hour", "35mm film", "aerial shot", "slow motion", "watercolor", "handheld", "timelapse"]
IMAGE = base64.b64encode(random.Random(0).randbytes(1500)).decode()
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def prompt(rng: random.Random, rare: bool) -> str:
    subject = "narwhal" if rare else rng.choice(SUBJECT)
    return f"{rng.choice(ADJ)} {subject} {rng.choice(ACTION)} {rng.choice(PLACE)}, {rng.choice(STYLE)}"


def job_rows(n: int, seed: int = 1):
    """Rows as dicts of every column: n top-level jobs, oldest first, and the shot units of their multi-shot jobs."""
    rng = random.Random(seed)
    models = [m for m, w in MODELS for _ in range(w)]
    rare_every = max(n // 10, 1)
    for i in range(n):
        job_id = "".join(rng.choices(ALPHABET, k=12))
        t = T0 + i * 3.0 + rng.random()
        left = n - i
        if left <= 100:
            status = "QUEUED"
        elif left <= 108:
            status = "RUNNING"
        else:
            status = rng.choices(["COMPLETED", "FAILED", "CANCELED"], [90, 7, 3])[0]
        rare = i % rare_every == rare_every // 2
        kind = rng.random()
        shots = []
        cfg = {"fps": 24, "dimension": "1280x720", "seed": rng.randrange(2**31)}
        if kind < 0.15:
            shots = [{"text": prompt(rng, rare and k == 0), "durationSeconds": 6} for k in range(rng.randint(2, 4))]
            model_input = {"taskType": "MULTI_SHOT_MANUAL", "multiShotManualParams": {"shots": shots}, "videoGenerationConfig": cfg}
        elif kind < 0.20:
            model_input = {"taskType": "MULTI_SHOT_AUTOMATED", "multiShotAutomatedParams": {"text": prompt(rng, rare)},
                           "videoGenerationConfig": {**cfg, "durationSeconds": 18}}
        else:
            params = {"text": prompt(rng, rare)}
            if kind > 0.98:
                params["images"] = [{"format": "png", "source": {"bytes": IMAGE}}]
            model_input = {"taskType": "TEXT_VIDEO", "textToVideoParams": params, "videoGenerationConfig": {**cfg, "durationSeconds": 6}}
        done = status in ("COMPLETED", "FAILED", "CANCELED")
        row = {
            "id": job_id, "arn": f"arn:aws:bedrock:us-east-1:000000000000:async-invoke/{job_id}",
            "model_id": rng.choice(models), "model_input": model_input, "output_uri": f"s3://bench-out/{job_id}",
            "storage_uri": f"s3://bench-out/{job_id}", "client_token": None, "fingerprint": "f" * 64, "status": status,
            "progress": 1.0 if status == "COMPLETED" else 0.0, "stage": status.lower(), "submit_time": t,
            "start_time": t + 1 if status != "QUEUED" else None, "end_time": t + 40 if done else None,
            "last_modified": t + 40, "failure_message": "out of memory" if status == "FAILED" else None,
            "attempts": 0 if status == "QUEUED" else 1, "cancel_requested": 0,
            "worker_id": "host:1:abc" if status == "RUNNING" else None, "lease_until": t + 60 if status == "RUNNING" else None,
            "output_config": {}, "tags": [], "metadata": {}, "parent_id": None, "shot_index": None,
            "fence": 0 if status == "QUEUED" else 1, "counted_fence": 0 if status == "QUEUED" else 1,
        }
        yield row
        if shots and status != "QUEUED":  # a multi-shot job is split into shot units when first claimed
            for k, shot in enumerate(shots):
                unit_id = "".join(rng.choices(ALPHABET, k=12))
                unit_status = "RUNNING" if status == "RUNNING" else ("COMPLETED" if status == "COMPLETED" else status)
                yield {**row, "id": unit_id, "arn": row["arn"] + f"-{k}", "status": unit_status, "worker_id": None,
                       "lease_until": None, "model_input": {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": shot["text"]},
                       "videoGenerationConfig": cfg}, "parent_id": job_id, "shot_index": k}


def encoded(row: dict, columns: list[str]) -> list:
    """``row`` as the store itself writes it, in ``columns`` order."""
    values = row_values(JobRecord(**{**row, "status": JobStatus(row["status"])}))
    return [values[c] for c in columns]


def fill_sqlite(path: Path, n: int) -> None:
    import sqlite3

    open_store(path)  # the schema, exactly as the store migrates it
    db = sqlite3.connect(path, isolation_level=None)
    columns = [r[1] for r in db.execute("PRAGMA table_info(jobs)")]
    sql = f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    rows = job_rows(n)
    while True:
        chunk = [encoded(r, columns) for _, r in zip(range(50_000), rows)]
        if not chunk:
            break
        db.execute("BEGIN")
        db.executemany(sql, chunk)
        db.execute("COMMIT")
    if "search_text" in columns:  # the store's search index, filled in bulk as its migration does
        db.execute("INSERT INTO jobs_search (job_id, text) SELECT id, search_text FROM jobs WHERE search_text IS NOT NULL")
    db.close()


def fill_postgres(url: str, n: int) -> None:
    import psycopg

    open_store(url)
    with psycopg.connect(url, autocommit=True) as conn:
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'jobs'"
            " ORDER BY ordinal_position")]
        with conn.cursor() as cur, cur.copy(f"COPY jobs ({', '.join(columns)}) FROM STDIN") as copy:
            for r in job_rows(n):
                copy.write_row(encoded(r, columns))
        conn.execute("VACUUM ANALYZE jobs")


def median_ms(fn, repeat: int) -> tuple[float, int]:
    """Median milliseconds of fn() after a warm-up, and how many rows its last call returned."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), len(out) if isinstance(out, list) else -1


def operations(store, n: int, repeat: int) -> dict[str, tuple[float, int]]:
    """(median ms, rows) of each operation against a filled store of n jobs."""
    in_progress, failed = JobStatus.from_bedrock("InProgress"), JobStatus.from_bedrock("Failed")
    span = n * 3.0  # jobs are submitted about 3 s apart
    cursor = (T0 + span / 2, "m")  # half-way through the log
    middle = {"submitted_after": T0 + span * 0.3, "submitted_before": T0 + span * 0.7}
    most = {"submitted_after": T0 + span * 0.05, "submitted_before": T0 + span * 0.95}
    model = "amazon.nova-reel-v1:1"
    ops = {
        "page: newest": lambda: store.list(limit=100),
        "page: oldest": lambda: store.list(limit=100, descending=False),
        "page: status COMPLETED": lambda: store.list(statuses=[JobStatus.COMPLETED]),
        "page: InProgress (QUEUED+RUNNING)": lambda: store.list(statuses=in_progress),
        "page: Failed (FAILED+CANCELED)": lambda: store.list(statuses=failed),
        "page: model": lambda: store.list(model_id="reelforge.animatic-v1"),
        "page: time range": lambda: store.list(**middle),
        "page: cursor mid-log": lambda: store.list(after=cursor),
        "page: cursor mid-log, oldest first": lambda: store.list(after=cursor, descending=False),
        "page: model + COMPLETED + range + cursor": lambda: store.list(model_id=model, statuses=[JobStatus.COMPLETED], after=cursor, **most),
        "page: model + Failed + range + cursor": lambda: store.list(model_id=model, statuses=failed, after=cursor, **most),
        "search: rare word (10 matches)": lambda: store.list(search="narwhal"),
        "search: common word (~6%)": lambda: store.list(search="LIGHTHOUSE"),
        "search: common word + Failed": lambda: store.list(search="lighthouse", statuses=failed),
        "search: phrase (~1%)": lambda: store.list(search="a red fox"),
    }
    if hasattr(store, "count"):  # not in the job log before the listing indexes
        ops["count: all (cap 10,000)"] = lambda: store.count()
        ops["count: Failed + model"] = lambda: store.count(statuses=failed, model_id=model)
    results = {name: median_ms(fn, repeat) for name, fn in ops.items()}
    ids = [j.id for j in store.list(limit=500, after=cursor)]
    rng = random.Random(2)
    results["get by id"] = median_ms(lambda: store.get(rng.choice(ids)), repeat * 4)
    worker = f"bench-{uuid.uuid4().hex[:6]}"
    results["claim"] = median_ms(lambda: store.claim(worker, 60), min(repeat, 40))  # each takes the next queued job

    def create():
        job_id = "".join(rng.choices(ALPHABET, k=12))
        model_input = {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": prompt(rng, False)},
                       "videoGenerationConfig": {"durationSeconds": 6, "fps": 24, "dimension": "1280x720"}}
        store.create(JobRecord(id=job_id, arn=f"arn:aws:bedrock:us-east-1:000000000000:async-invoke/{job_id}",
                               model_id=model, model_input=model_input, output_uri=f"s3://bench-out/{job_id}",
                               storage_uri=f"s3://bench-out/{job_id}", submit_time=T0 + span + rng.random()))

    results["create (one job, indexes and search text)"] = median_ms(create, repeat)
    return results


def run(dbs: list[str], sizes: list[int], repeat: int, pg_url: str) -> dict:
    out: dict[str, dict[int, dict[str, tuple[float, int]]]] = {}
    for db in dbs:
        out[db] = {}
        for n in sizes:
            started = time.perf_counter()
            if db == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "jobs.sqlite3"
                    fill_sqlite(path, n)
                    filled = time.perf_counter() - started
                    out[db][n] = operations(open_store(path), n, repeat)
            else:
                import psycopg

                schema = f"bench_store_{n}_{uuid.uuid4().hex[:6]}"
                with psycopg.connect(pg_url, autocommit=True) as conn:
                    conn.execute(f"CREATE SCHEMA {schema}")
                url = f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"
                try:
                    fill_postgres(url, n)
                    filled = time.perf_counter() - started
                    out[db][n] = operations(open_store(url), n, repeat)
                finally:
                    with psycopg.connect(pg_url, autocommit=True) as conn:
                        conn.execute(f"DROP SCHEMA {schema} CASCADE")
            print(f"# {db} {n:,} jobs: filled in {filled:.0f} s, measured in {time.perf_counter() - started - filled:.0f} s",
                  file=sys.stderr, flush=True)
    return out


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def table(db: str, results: dict[int, dict[str, tuple[float, int]]]) -> str:
    """One row an operation: its median at each size, with its ratio to the smallest size's (and rows, if under 100)."""
    sizes = sorted(results)
    lines = [f"| {db} | " + " | ".join(f"{label(n)} jobs" for n in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    for op in results[sizes[0]]:
        base = results[sizes[0]][op][0]
        cells = []
        for n in sizes:
            ms, rows = results[n][op]
            cell = f"{ms:.2f} ms" + (f" ×{ms / base:.1f}" if n != sizes[0] else "")
            if op.startswith(("page", "search")) and rows < 100:
                cell += f" ({rows} rows)"
            cells.append(cell)
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000", help="comma-separated job counts")
    ap.add_argument("--dbs", default="sqlite,postgres")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    results = run(args.dbs.split(","), sizes, args.repeat, args.postgres)
    for db, by_size in results.items():
        print(table(db, by_size))
        print()


if __name__ == "__main__":
    main()

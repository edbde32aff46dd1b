"""The job log's query plans: every listing filter combination is an ordered index scan, on both databases.

A page must cost the same at a million jobs as at a thousand, so each statement ``list``, ``count``
and ``claim`` run is recorded and EXPLAINed against 10,000 realistic jobs (PostgreSQL analyzed, as
autovacuum would; with far fewer, a sequential scan is the cheapest plan for a search's window of
the 2,000 newest jobs):
no full-table scan, no sort of the table (SQLite: no temp B-tree for ORDER BY; PostgreSQL: no Seq
Scan, and a Sort only of the few rows an index range holds, as the planner picks for a rare
combination such as one model's failed jobs), and the index used is one built for listings.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import random
import sqlite3
import uuid

import pytest
from conftest import PG_URL, pg_available

from reelforge.jobs.open import open_store
from reelforge.jobs.record import JobRecord, JobStatus
from reelforge.jobs.sql import CLAIM_HEAD
from reelforge.jobs.sqlbase import row_values
from reelforge.jobs.sqlite import SQLiteJobStore

T0 = 1_800_000_000.0
N = 10_000
FEW = 1000  # rows PostgreSQL may sort rather than read in order: a bounded cost
MODELS = ["amazon.nova-reel-v1:1"] * 12 + ["reelforge.animatic-v1"] * 5 + ["reelforge.ltx-video"] * 2 + ["reelforge.wan-t2v"]
LISTING_INDEXES = {"jobs_list", "jobs_list_status", "jobs_list_model", "jobs_list_model_status"}
PLACES = ["a harbour", "the desert", "a neon city", "a pine forest", "a lighthouse", "a rooftop", "the moon", "a canyon"]


@functools.cache
def _records(n: int) -> list[JobRecord]:
    """n jobs oldest first: a small backlog, mostly completed, some failed; 15% multi-shot with shot units."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        job_id = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=12))
        left = n - i
        status = "QUEUED" if left <= 30 else "RUNNING" if left <= 35 else rng.choices(["COMPLETED", "FAILED", "CANCELED"], [90, 7, 3])[0]
        text = f"{'a narwhal' if i in (40, 3500, 7500) else 'a fox'} runs across {rng.choice(PLACES)}, take {i}"
        cfg = {"fps": 24, "dimension": "1280x720", "durationSeconds": 6}
        multi = rng.random() < 0.15 and status != "QUEUED"
        if multi:
            shots = [{"text": f"{text}, shot {k}"} for k in range(3)]
            model_input = {"taskType": "MULTI_SHOT_MANUAL", "multiShotManualParams": {"shots": shots}, "videoGenerationConfig": cfg}
        else:
            model_input = {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": text}, "videoGenerationConfig": cfg}
        job = JobRecord(id=job_id, arn=f"arn:x/{job_id}", model_id=rng.choice(MODELS), model_input=model_input, output_uri="file:///o",
                        storage_uri="file:///o", status=JobStatus(status), submit_time=T0 + i, worker_id="w" if status == "RUNNING" else None)
        out.append(job)
        if multi:
            unit_status = JobStatus.QUEUED if status == "RUNNING" else JobStatus(status)
            out += [JobRecord(id=f"{job_id}{k}", arn="arn:x", model_id=job.model_id, model_input=model_input, output_uri="file:///o",
                              storage_uri="file:///o", status=unit_status, submit_time=job.submit_time, parent_id=job_id, shot_index=k)
                    for k in range(3)]
    return out


def _rows(records: list[JobRecord], columns: list) -> list[list]:
    """The rows the store itself would write for ``records``, in ``columns`` order."""
    return [[values[c] for c in columns] for values in map(row_values, records)]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def filled(request, tmp_path_factory):
    """A store holding N jobs put in by bulk inserts (the store's own schema, the rows it would write)."""
    records = _records(N)
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("plans") / "jobs.sqlite3"
        open_store(path)
        db = sqlite3.connect(path, isolation_level=None)
        columns = [r[1] for r in db.execute("PRAGMA table_info(jobs)")]
        db.execute("BEGIN")
        db.executemany(f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", _rows(records, columns))
        db.execute("INSERT INTO jobs_search (job_id, text) SELECT id, search_text FROM jobs WHERE search_text IS NOT NULL")
        db.execute("COMMIT")
        db.close()
        yield open_store(path)
        return
    if not pg_available():
        pytest.skip(f"no PostgreSQL at {PG_URL} (set REELFORGE_TEST_POSTGRES)")
    import psycopg

    schema = "rf_plans_" + uuid.uuid4().hex[:8]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        open_store(url)
        with psycopg.connect(url, autocommit=True) as conn:
            columns = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = 'jobs' ORDER BY ordinal_position")]
            with conn.cursor() as cur, cur.copy(f"COPY jobs ({', '.join(columns)}) FROM STDIN") as copy:
                for row in _rows(records, columns):
                    copy.write_row(row)
            conn.execute("VACUUM ANALYZE jobs")
        store = open_store(url)
        yield store
        store.pool.close()
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


class _Recorder:
    """Stands in for a store's connection and keeps every statement run through it."""

    def __init__(self, db):
        self.db, self.statements = db, []

    def execute(self, sql, args=()):
        self.statements.append((sql, list(args)))
        return self.db.execute(sql, args)

    def __getattr__(self, name):
        return getattr(self.db, name)


def _statements(store, monkeypatch, call) -> list[tuple[str, list]]:
    """The statements ``call`` runs through the store's read connections."""
    conn, statements = store._conn, []

    @contextlib.contextmanager
    def recording():
        with conn() as db:
            recorder = _Recorder(db)
            yield recorder
            statements.extend(recorder.statements)

    monkeypatch.setattr(store, "_conn", recording)
    try:
        call()
    finally:
        monkeypatch.undo()
    return statements


def _plan(store, sql: str, args: list) -> list[str]:
    """The plan as lines: SQLite's EXPLAIN QUERY PLAN details; PostgreSQL's nodes as 'Node Type [index] [relation] rows=N'."""
    with store._conn() as db:
        if isinstance(store, SQLiteJobStore):
            return [r["detail"] for r in db.execute("EXPLAIN QUERY PLAN " + sql, args)]
        (row,) = db.execute("EXPLAIN (FORMAT JSON) " + sql, args).fetchall()
    lines = []

    def walk(node):
        rows = node["Plans"][0]["Plan Rows"] if node["Node Type"] in ("Sort", "Incremental Sort") else node["Plan Rows"]
        lines.append(" ".join(filter(None, [node["Node Type"], node.get("Index Name"), node.get("Relation Name"), f"rows={rows}"])))
        for child in node.get("Plans", []):
            walk(child)

    walk(row["QUERY PLAN"][0]["Plan"])
    return lines


def _ordered_scan_problems(plan: list[str]) -> list[str]:
    """Why a plan is not an index scan in page order (nothing when it is)."""
    problems = []
    for line in plan:
        words = line.split()
        few = words[-1].startswith("rows=") and int(words[-1][5:]) <= FEW
        if line == "SCAN jobs" or "TEMP B-TREE" in line or line.startswith("Seq Scan") or line.startswith(("Sort", "Incremental Sort", "Bitmap")) and not few:
            problems.append(line)
        if "INDEX" in words:  # SQLite: SEARCH jobs USING [COVERING] INDEX name (...)
            if words[words.index("INDEX") + 1] not in LISTING_INDEXES:
                problems.append(line)
        elif line.startswith(("Index Scan", "Index Only Scan", "Bitmap Index Scan")) and words[words.index("Scan") + 1] not in LISTING_INDEXES:
            problems.append(line)
    if not any(name in line for line in plan for name in LISTING_INDEXES):
        problems.append("no listing index in " + repr(plan))
    return problems


IN_PROGRESS, FAILED = JobStatus.from_bedrock("InProgress"), JobStatus.from_bedrock("Failed")
STATUS_FILTERS = [None, [JobStatus.COMPLETED], [JobStatus.FAILED], IN_PROGRESS, FAILED]
MODEL_FILTERS = [None, "amazon.nova-reel-v1:1", "reelforge.wan-t2v"]
TIME_FILTERS = [{}, {"submitted_after": T0 + 2500}, {"submitted_before": T0 + 7500}, {"submitted_after": T0 + 1250, "submitted_before": T0 + 8750}]
CURSORS = [None, (T0 + 6250.0, "m")]


def test_every_listing_filter_combination_is_an_ordered_index_scan(filled, monkeypatch):
    failures = []
    combos = itertools.product(STATUS_FILTERS, MODEL_FILTERS, TIME_FILTERS, CURSORS, [True, False])
    for statuses, model, times, cursor, descending in combos:
        kw = dict(statuses=statuses, model_id=model, after=cursor, descending=descending, **times)
        statements = _statements(filled, monkeypatch, lambda kw=kw: filled.list(**kw))
        assert len(statements) == 1
        problems = _ordered_scan_problems(_plan(filled, *statements[0]))
        if problems:
            failures.append((kw, problems))
    assert failures == []


def test_listing_pages_and_counts_are_those_of_a_plain_filter(filled):
    """The rewritten statements (one ordered scan per status, merged) give exactly the rows a plain filter keeps."""
    everything = filled.list(limit=10 * N)
    assert len(everything) == N
    for statuses, model, times in itertools.product(STATUS_FILTERS, MODEL_FILTERS, TIME_FILTERS):
        kept = [j for j in everything if (statuses is None or j.status in statuses) and (model is None or j.model_id == model)
                and times.get("submitted_after", 0) < j.submit_time < times.get("submitted_before", 1e12)]
        kw = dict(statuses=statuses, model_id=model, **times)
        assert filled.count(**kw, cap=300) == min(len(kept), 301), kw
        for cursor, descending in itertools.product(CURSORS, [True, False]):
            ordered = kept if descending else kept[::-1]
            if cursor is not None:
                ordered = [j for j in ordered if ((j.submit_time, j.id) < cursor) == descending]
            page = filled.list(limit=50, after=cursor, descending=descending, **kw)
            assert [j.id for j in page] == [j.id for j in ordered[:50]], (kw, cursor, descending)


def test_counts_stop_at_the_cap_through_the_listing_indexes(filled, monkeypatch):
    failures = []
    for statuses, model, times in itertools.product(STATUS_FILTERS, MODEL_FILTERS, TIME_FILTERS):
        statements = _statements(filled, monkeypatch, lambda s=statuses, m=model, t=times: filled.count(statuses=s, model_id=m, cap=100, **t))
        problems = _ordered_scan_problems(_plan(filled, *statements[0]))
        if problems:
            failures.append(((statuses, model, times), problems))
    assert failures == []


def test_a_rare_search_reads_its_matches_through_the_search_index(filled, monkeypatch):
    for kw in ({}, {"statuses": FAILED}, {"model_id": "amazon.nova-reel-v1:1", "submitted_after": T0}):
        statements = _statements(filled, monkeypatch, lambda kw=kw: filled.list(search="NARWHAL", **kw))
        assert len(statements) == 2  # the newest jobs hold too few matches, so the index is asked
        window, matches = (_plan(filled, *s) for s in statements)
        assert not [line for line in window if line == "SCAN jobs" or line.startswith("Seq Scan")], window
        assert not [line for line in matches if line == "SCAN jobs" or line.startswith("Seq Scan")], matches
        index = "VIRTUAL TABLE INDEX" if isinstance(filled, SQLiteJobStore) else "Bitmap Index Scan jobs_search_trgm"
        assert any(index in line for line in matches), matches
    assert {j.submit_time for j in filled.list(search="narwhal")} == {T0 + 7500, T0 + 3500, T0 + 40}


def test_a_common_search_fills_its_page_from_the_newest_jobs(filled, monkeypatch):
    statements = _statements(filled, monkeypatch, lambda: filled.list(search="fox runs", limit=20))
    assert len(statements) == 1
    # The window is a listing's ordered scan; then the page's rows are read by primary key and put in order.
    plan = [line for line in _plan(filled, *statements[0]) if not ("TEMP B-TREE" in line or "autoindex_jobs_1 (id=?)" in line or "jobs_pkey" in line)]
    assert _ordered_scan_problems(plan) == []
    assert [j.submit_time for j in filled.list(search="fox runs", limit=3)] == [T0 + N - 1, T0 + N - 2, T0 + N - 3]


def test_a_claim_reads_the_queue_in_order(filled, monkeypatch):
    """The head of the queue is read in order and its rows by primary key; only those few (model affinity
    chooses among them) are sorted, never the queue, whatever its length."""
    filled.hold("other", [("animatic", {})], 1)  # what workers hold loaded is part of the choice
    plan = _plan(filled, filled._CLAIM_NEXT, filled._claim_args("w/t#1", T0 + N))
    assert not [line for line in plan if line.startswith(("SCAN j", "SCAN q", "SCAN p", "SCAN r", "Seq Scan jobs"))], plan
    if isinstance(filled, SQLiteJobStore):
        assert "SEARCH q USING INDEX jobs_status_submit (status=?)" in plan and "SEARCH j USING INDEX sqlite_autoindex_jobs_1 (id=?)" in plan, plan
        assert [line for line in plan if "TEMP B-TREE" in line] == ["USE TEMP B-TREE FOR ORDER BY"] and plan[-1] == "USE TEMP B-TREE FOR ORDER BY", plan
    else:
        assert any(line.startswith("Index Scan jobs_status_submit") for line in plan), plan
        assert all(int(line.split("rows=")[1]) <= CLAIM_HEAD for line in plan if line.startswith("Sort")), plan

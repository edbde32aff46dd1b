"""Batches: reading JSONL/CSV, tokens per line, backoff on capacity errors, and resuming after kill -9."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from reelforge.workflows.batch import BatchError, BatchRunner, capacity_error, read_batch, retry_token
from reelforge.errors import ReelforgeError
from reelforge.jobs.record import JobStatus
from reelforge.jobs.sqlite import SQLiteJobStore

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": "reelforge.animatic-v1", "duration": 1, "fps": 8, "resolution": "128x72"}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- reading --------------------------------------------------------------------------------------
def test_jsonl_lines_take_defaults_and_keep_their_line_numbers(tmp_path):
    path = write(tmp_path, "b.jsonl", '"A red kite."\n\n# a comment\n{"prompt": "A blue boat.", "seed": 9, "fps": 12}\n{"text": "A red kite."}\n')
    items = read_batch(path, defaults=TINY)
    assert [i.line for i in items] == [1, 4, 5]
    assert [i.prompt for i in items] == ["A red kite.", "A blue boat.", "A red kite."]
    assert (items[1].request.seed, items[1].request.fps, items[1].request.duration_s) == (9, 12, 1)
    assert {i.model_id for i in items} == {"reelforge.animatic-v1"}
    # the same prompt on two lines is two videos: tokens differ; reading again gives the same tokens
    assert len({i.token for i in items}) == 3
    assert [i.token for i in read_batch(path, defaults=TINY)] == [i.token for i in items]
    # any change of content or output location changes the token
    assert read_batch(path, defaults={**TINY, "seed": 1})[0].token != items[0].token
    assert read_batch(path, defaults=TINY, output=tmp_path / "elsewhere")[0].token != items[0].token


def test_csv_header_names_fields_and_empty_cells_mean_default(tmp_path):
    rows = [
        ["prompt", "seed", "duration", "model", "fps", "resolution"],
        ["A red kite.", "", "", "", "", ""],
        ["A blue boat, static shot.", "7", "6", "amazon.nova-reel-v1:1", "24", "1280x720"],
    ]
    path = tmp_path / "b.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    items = read_batch(path, defaults={"model": "reelforge.animatic-v1", "duration": 2, "fps": 8, "resolution": "128x72"})
    assert [(i.line, i.model_id, i.request.duration_s, i.request.seed) for i in items] == [
        (2, "reelforge.animatic-v1", 2, None), (3, "amazon.nova-reel-v1:1", 6, 7),
    ]


BAD = [
    ('{"prompt": "a"}\n{"prompt": "b", "seed": "x"}\n', "line 2: seed: must be a whole number"),
    ('{"prompt": "a", "colour": "red"}\n', "line 1: colour: unknown field; allowed: prompt, text, model"),
    ('{"seed": 3}\n', "line 1: prompt: is required"),
    ('{"prompt": "a", "duration": 7, "model": "amazon.nova-reel-v1:1"}\n', "line 1: duration: 7 is not allowed for amazon.nova-reel-v1:1 TEXT_VIDEO; allowed: 6"),
    ('{"prompt": "a", "model": "nope"}\n', "line 1: model: unknown model 'nope'"),
    ('{"prompt": "a", "image": "x.png"}\n', "line 1: image: no file"),
    ('{"prompt": "a"\n', "line 1: not valid JSON"),
    ('{"prompt": ""}\n{"prompt": 3}\n{"prompt": "ok"}\n', "line 1: prompt: is required: the text of the video\n"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_lines_are_named_before_anything_is_submitted(tmp_path, text, message):
    path = write(tmp_path, "b.jsonl", text)
    with pytest.raises(BatchError) as err:
        read_batch(path)
    assert str(err.value).startswith(f"{path} {message}")


# --- running against a client that throttles --------------------------------------------------------
class FakeClient:
    """A Bedrock-like client: jobs finish after ``polls`` looks; ``errors`` are raised on start in turn."""

    endpoint = "https://bedrock-runtime.us-east-1.amazonaws.com"

    def __init__(self, errors=(), polls=2, earlier=None):
        self.errors = list(errors)
        self.polls = polls
        self.calls = []  # tokens, one per start() call
        self.jobs = dict(earlier or {})  # token -> record

    def start(self, request, *, model, output, client_token, tags):
        self.calls.append(client_token)
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        if client_token not in self.jobs:
            n = len(self.jobs)
            self.jobs[client_token] = SimpleNamespace(
                id=f"job{n:09d}", status=JobStatus.RUNNING, submit_time=time.time(), failure_message=None,
                output_uri=f"s3://bucket/job{n:09d}", looks=0,
            )
        rec = self.jobs[client_token]
        return SimpleNamespace(id=rec.id, refresh=lambda: self._look(rec))

    def _look(self, rec):
        rec.looks += 1
        if rec.status is JobStatus.RUNNING and rec.looks > self.polls:
            rec.status = JobStatus.COMPLETED
        return rec


def throttle(code):
    return ClientError({"Error": {"Code": code, "Message": "slow down"}}, "StartAsyncInvoke")


class FakeTime:
    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s

    def clock(self):
        return self.now


def items_for(tmp_path, n):
    path = write(tmp_path, "b.jsonl", "".join(json.dumps({"prompt": f"A lighthouse number {i}."}) + "\n" for i in range(n)))
    return read_batch(path, endpoint=FakeClient.endpoint)


def test_throttling_backs_off_and_resubmits_with_the_same_token(tmp_path):
    items = items_for(tmp_path, 3)
    client, clock = FakeClient([throttle("ThrottlingException"), throttle("ThrottlingException")]), FakeTime()
    results = BatchRunner(client, items, concurrency=2, poll_s=1, sleep=clock.sleep, clock=clock.clock).run()
    assert [r.status for r in results] == ["COMPLETED"] * 3
    assert client.calls[:3] == [items[0].token] * 3  # two refusals, then the same token again
    assert sorted(set(client.calls)) == sorted(i.token for i in items)
    assert len(client.jobs) == 3
    backoffs = [s for s in clock.sleeps if s not in (1,)]
    assert 1.6 <= backoffs[0] <= 2.4 and 3.2 <= backoffs[1] <= 4.8  # exponential, with jitter
    assert results[0].estimated_cost_usd == 0.48 and results[0].output == "s3://bucket/job000000000/output.mp4"


def test_quota_error_lowers_the_limit_to_the_jobs_in_flight(tmp_path):
    items = items_for(tmp_path, 6)
    quota = throttle("ServiceQuotaExceededException")
    client, clock = FakeClient([None, None, quota], polls=3), FakeTime()
    runner = BatchRunner(client, items, concurrency=3, poll_s=1, sleep=clock.sleep, clock=clock.clock)
    results = runner.run()
    assert [r.status for r in results] == ["COMPLETED"] * 6
    assert runner.counts.limit == 2 and runner.counts.throttled == 1
    assert len(client.jobs) == 6 and client.calls.count(items[2].token) == 2


def test_capacity_errors_are_found_however_wrapped():
    try:
        try:
            raise throttle("ThrottlingException")
        except ClientError as exc:
            raise ReelforgeError("the endpoint refused") from exc
    except ReelforgeError as wrapped:
        assert capacity_error(wrapped) == "ThrottlingException"
    assert capacity_error(throttle("ValidationException")) is None
    # what reelforge.client.remote raises for a Bedrock error reply
    assert capacity_error(ReelforgeError("ServiceQuotaExceededException: too many jobs")) == "ServiceQuotaExceededException"
    assert capacity_error(ReelforgeError("access denied: ThrottlingException")) is None


def test_a_failed_line_is_reported_and_retried_only_when_asked(tmp_path):
    items = items_for(tmp_path, 2)
    failed = SimpleNamespace(id="old", status=JobStatus.FAILED, submit_time=0.0, failure_message="boom", output_uri="s3://b/old", looks=0)
    results = BatchRunner(FakeClient(earlier={items[0].token: failed}), items, poll_s=0, sleep=lambda s: None).run()
    assert [(r.job_id, r.status, r.run, r.error) for r in results][0] == ("old", "FAILED", "already done", "boom")
    client = FakeClient(earlier={items[0].token: failed})
    results = BatchRunner(client, items, poll_s=0, sleep=lambda s: None, retry_failed=1).run()
    assert [r.status for r in results] == ["COMPLETED", "COMPLETED"]
    assert retry_token(items[0].token, 1) in client.calls


# --- the real thing: kill -9 midway, rerun, 50 jobs ------------------------------------------------
def test_batch_of_50_killed_midway_and_rerun_has_50_jobs_and_no_duplicates(tmp_path):
    home, out = tmp_path / "home", tmp_path / "out"
    lines = [json.dumps({"prompt": f"A paper boat number {i} on a blue pond, static shot."}) for i in range(50)]
    path = write(tmp_path, "fifty.jsonl", "\n".join(lines) + "\n")
    env = {**os.environ, "REELFORGE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("REELFORGE_ENDPOINT", None)
    cmd = [sys.executable, "-m", "reelforge", "batch", str(path), "--concurrency", "4", "-o", str(out),
           "--model", "reelforge.animatic-v1", "--duration", "2", "--fps", "8", "--resolution", "128x72"]

    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = home / "jobs.sqlite3"
    done_at_kill, deadline = 0, time.monotonic() + 60
    while time.monotonic() < deadline and first.poll() is None:
        if log.exists():
            done_at_kill = sum(j.status is JobStatus.COMPLETED for j in SQLiteJobStore(log).list(limit=1000))
            if done_at_kill >= 8:
                break
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    before = SQLiteJobStore(log).list(limit=1000)
    assert 8 <= done_at_kill and sum(j.status is JobStatus.COMPLETED for j in before) < 50

    report = tmp_path / "report.json"
    again = subprocess.run(cmd + ["--report", str(report)], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr

    jobs = SQLiteJobStore(log).list(limit=1000)
    tokens = [i.token for i in read_batch(path, defaults=TINY | {"duration": 2}, output=out)]
    assert len(jobs) == 50 and all(j.status is JobStatus.COMPLETED for j in jobs)
    assert sorted(j.client_token for j in jobs) == sorted(tokens)  # one job per line, none twice
    assert {j.id for j in before} <= {j.id for j in jobs}  # the first run's jobs were kept, not redone
    rows = json.loads(report.read_text())
    runs = [r["run"] for r in rows]
    assert runs.count("already done") >= done_at_kill and runs.count("resumed") >= 1  # in flight at the kill: followed, not redone
    assert [r["line"] for r in rows] == list(range(1, 51))
    assert {r["status"] for r in rows} == {"COMPLETED"} and len({r["job_id"] for r in rows}) == 50
    assert all(Path(r["output"]).is_file() for r in rows)
    assert "50 lines in" in again.stdout


# --- what users met --------------------------------------------------------------------------------
def test_tokens_depend_on_the_file_and_the_engine_options_and_stay_the_same_on_a_rerun(tmp_path, monkeypatch):
    text = '"A red kite."\n"A blue boat."\n'
    (tmp_path / "other").mkdir()
    a, b = write(tmp_path, "a.jsonl", text), write(tmp_path / "other", "a.jsonl", text)
    tokens = [i.token for i in read_batch(a, defaults=TINY)]
    assert tokens == [i.token for i in read_batch(tmp_path / "other" / ".." / "a.jsonl", defaults=TINY)]  # the same file, another way
    assert not set(tokens) & {i.token for i in read_batch(b, defaults=TINY)}  # another file's line 1 is another job
    served = [i.token for i in read_batch(a, defaults=TINY, endpoint="http://127.0.0.1:9")]
    monkeypatch.setenv("REELFORGE_ANIMATIC_OPTIONS", '{"caption": false}')
    assert not set(tokens) & {i.token for i in read_batch(a, defaults=TINY)}  # other engine options render another video
    assert [i.token for i in read_batch(a, defaults=TINY, endpoint="http://127.0.0.1:9")] == served  # a server's options are its own


def test_a_second_file_with_the_same_lines_is_run_not_reported_done(tmp_path):
    from click.testing import CliRunner

    from reelforge.cli.main import cli

    text = '"A red kite."\n'
    args = ["--model", "reelforge.animatic-v1", "--duration", "1", "--fps", "8", "--resolution", "128x72", "-o", str(tmp_path / "out"), "--json"]
    first = CliRunner().invoke(cli, ["batch", str(write(tmp_path, "monday.jsonl", text)), *args])
    second = CliRunner().invoke(cli, ["batch", str(write(tmp_path, "tuesday.jsonl", text)), *args])
    assert first.exit_code == second.exit_code == 0, (first.output, second.output)
    (one,), (two,) = json.loads(first.stdout), json.loads(second.stdout)
    assert (one["run"], two["run"]) == ("submitted", "submitted") and one["job_id"] != two["job_id"]


def test_every_bad_line_is_reported_up_to_a_cap(tmp_path):
    from reelforge.workflows.batch import MAX_REPORTED

    lines = ['"fine"', '{"prompt": "a", "seed": "x"}', '{"prompt"', '{"colour": "red"}'] + ['{"prompt": ""}'] * 30
    path = write(tmp_path, "b.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(BatchError) as err:
        read_batch(path)
    report = str(err.value).splitlines()
    assert len(err.value.problems) == 33 and len(report) == MAX_REPORTED + 1
    assert report[:3] == [f"{path} line 2: seed: must be a whole number, got 'x'", f"{path} line 3: not valid JSON: Expecting ':' delimiter (column 10)",
                          f"{path} line 4: colour: unknown field; allowed: prompt, text, model, duration, fps, resolution, seed, image, fit"]
    assert report[3] == f"{path} line 5: prompt: is required: the text of the video"
    assert report[-1] == "... and 13 more lines with problems"
    rows = "prompt,seed\nok,1\nbad,x\n,3\nok,2,extra\n"
    with pytest.raises(BatchError) as err:
        read_batch(write(tmp_path, "b.csv", rows))
    assert [(p.line, p.field_name) for p in err.value.problems] == [(3, "seed"), (4, "prompt"), (5, "")]

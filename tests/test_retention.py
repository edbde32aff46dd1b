"""Retention: `jobs prune` and `serve --retain` remove ended jobs' records and files, keeping tombstones."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from reelforge.cli.main import cli
from reelforge.errors import ConfigError, ConflictError, JobExpiredError, JobNotFoundError
from reelforge.jobs.open import open_store
from reelforge.jobs.record import JobRecord, JobStatus, PrunedJob, new_job_id
from reelforge.jobs.retention import parse_duration, prune, retain_from_env
from reelforge.storage.base import local_path

DAY = 86400.0


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "jobs.sqlite3")
    return request.getfixturevalue("pg_url")


def record(root: Path, token=None, fingerprint="f", uri=None, **kw) -> JobRecord:
    job_id = new_job_id()
    uri = uri or (root / "out" / job_id).as_uri()
    return JobRecord(
        id=job_id, arn=f"arn:aws:bedrock:us-east-1:000000000000:async-invoke/{job_id}", model_id="reelforge.animatic-v1",
        model_input={"textToVideoParams": {"text": "a lighthouse at dusk"}}, output_uri=uri, storage_uri=uri,
        client_token=token, fingerprint=fingerprint, **kw,
    )


def with_files(rec: JobRecord, *names: str) -> JobRecord:
    folder = local_path(rec.storage_uri)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names or ("output.mp4", "manifest.json"):
        (folder / name).write_bytes(b"x" * 100)
    return rec


def ended(store, rec: JobRecord, status=JobStatus.COMPLETED) -> JobRecord:
    """Create ``rec`` and run it to ``status`` (no other job may be queued)."""
    store.create(with_files(rec))
    claimed = store.claim("w", 30)
    assert claimed.id == rec.id
    store.finish(rec.id, "w", status, failure_message=None if status is JobStatus.COMPLETED else "boom")
    return store.get(rec.id)


def multi_shot(store, root: Path, fail_one: bool = False) -> JobRecord:
    """A multi-shot job with its shot files; with ``fail_one`` one shot fails while the other still runs."""
    parent = with_files(record(root), "manifest.json", "shot_0001.mp4", "shot_0002.mp4")
    store.create(parent)
    store.claim("w", 30)
    store.split(parent.id, "w", [record(root, parent_id=parent.id, shot_index=i, uri=parent.storage_uri) for i in range(2)])
    shots = [store.claim(f"s{i}", 30) for i in range(2)]
    if fail_one:
        store.finish(shots[0].id, "s0", JobStatus.FAILED, failure_message="out of memory")
        assert store.get(parent.id).status is JobStatus.FAILED and store.get(shots[1].id).status is JobStatus.RUNNING
        return store.get(parent.id)
    for i, shot in enumerate(shots):
        store.finish(shot.id, f"s{i}", JobStatus.COMPLETED)
    assert store.claim("w", 30).id == parent.id  # joining the shots
    with_files(parent, "output.mp4")
    store.finish(parent.id, "w", JobStatus.COMPLETED)
    return store.get(parent.id)


def files_of(rec: JobRecord) -> list[str]:
    folder = local_path(rec.storage_uri)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_dry_run_lists_exactly_what_prune_removes_and_running_jobs_survive(location, tmp_path):
    store = open_store(location)
    old = [
        ended(store, record(tmp_path, token="tok-done")),
        ended(store, record(tmp_path), JobStatus.FAILED),
        multi_shot(store, tmp_path),
    ]
    canceled = with_files(record(tmp_path))
    store.create(canceled)
    old.append(store.request_cancel(canceled.id))  # canceled before it started
    stopping = multi_shot(store, tmp_path, fail_one=True)  # FAILED, but one shot still running
    running = with_files(record(tmp_path))
    store.create(running)
    assert store.claim("w", 30).id == running.id
    cutoff = time.time()
    time.sleep(0.01)
    young = ended(store, record(tmp_path))
    queued = with_files(record(tmp_path))
    store.create(queued)
    now = cutoff + 30 * DAY

    planned = prune(store, 30 * DAY, dry_run=True, now=now).ids
    assert set(planned) == {r.id for r in old}
    assert all(files_of(r) for r in old)  # a dry run changes nothing
    assert {r.id for r in store.list(limit=100)} >= {r.id for r in old}

    done = prune(store, 30 * DAY, now=now)
    assert done.ids == planned and not done.failed
    for r in old:
        assert not local_path(r.storage_uri).exists()  # every file, shots included
        with pytest.raises(JobExpiredError) as info:
            store.get(r.id)
        assert info.value.job.status is r.status and info.value.job.id == r.id
    assert store.children(old[2].id) == []  # the shot units went with their job
    survivors = [stopping, running, young, queued]
    assert {r.id for r in store.list(limit=100)} == {r.id for r in survivors}
    assert store.get(running.id).status is JobStatus.RUNNING and store.get(queued.id).status is JobStatus.QUEUED
    assert all(files_of(r) for r in survivors)
    assert store.list(search="lighthouse", limit=100) and {r.id for r in store.list(search="lighthouse", limit=100)} == {r.id for r in survivors}
    assert prune(store, 30 * DAY, dry_run=True, now=now).ids == []

    # Once its last shot has stopped, the failed job goes in the next round.
    store.finish([c for c in store.children(stopping.id) if c.status is JobStatus.RUNNING][0].id, "s1", JobStatus.CANCELED)
    assert prune(store, 30 * DAY, now=time.time() + 30 * DAY).ids == [stopping.id] + [young.id]


def test_a_tombstone_answers_a_repeated_token_with_the_old_job(location, tmp_path):
    store = open_store(location)
    job = ended(store, record(tmp_path, token="tok-1", fingerprint="fp"), JobStatus.FAILED)
    assert prune(store, DAY, now=time.time() + 2 * DAY).ids == [job.id]
    again, created = store.create(record(tmp_path, token="tok-1", fingerprint="fp"))
    assert not created and isinstance(again, PrunedJob)
    assert (again.id, again.arn, again.status, again.client_token) == (job.id, job.arn, JobStatus.FAILED, "tok-1")
    assert store.token_recorded("tok-1") and not store.token_recorded("tok-2")  # what admission asks (serve --max-queued)
    with pytest.raises(ConflictError, match="tok-1"):
        store.create(record(tmp_path, token="tok-1", fingerprint="another request"))
    assert store.list() == [] and store.claim("w", 30) is None  # no new job started
    with pytest.raises(JobExpiredError, match="has expired"):
        store.get(job.id)
    with pytest.raises(JobNotFoundError) as info:
        store.get("nosuchjob000")
    assert not isinstance(info.value, JobExpiredError)


CRASH = textwrap.dedent("""
    import os, shutil, sys, time
    from reelforge.jobs.open import open_store
    from reelforge.jobs.retention import prune

    def rmtree(path, *a, **kw):  # the process dies after deleting one file of the job's folder
        os.unlink(sorted(os.scandir(path), key=lambda e: e.name)[0].path)
        os._exit(9)

    shutil.rmtree = rmtree
    prune(open_store(sys.argv[1]), 86400, now=time.time() + 2 * 86400)
""")


def test_a_prune_killed_while_deleting_files_is_finished_by_the_next(location, tmp_path):
    store = open_store(location)
    job = ended(store, with_files(record(tmp_path, token="tok-crash"), "output.mp4", "shot_0001.mp4", "shot_0002.mp4"))
    done = subprocess.run([sys.executable, "-c", CRASH, location], capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr
    left = files_of(job)
    assert left and len(left) < 4  # half a job's files on disk ...
    with pytest.raises(JobExpiredError):  # ... and never playable: every reader finds it expired
        store.get(job.id)
    assert store.create(record(tmp_path, token="tok-crash"))[0].id == job.id
    # A later round finishes it, even one with a retention the job would not have reached.
    assert prune(store, 365 * DAY, dry_run=True).ids == [job.id]
    assert prune(store, 365 * DAY).ids == [job.id]
    assert not local_path(job.storage_uri).exists()
    assert prune(store, 365 * DAY, dry_run=True).ids == []


def test_durations():
    assert [parse_duration(t, "x") for t in ("90s", "15m", "12h", "30d", "2w")] == [90, 900, 43200, 30 * DAY, 14 * DAY]
    for bad in ("30", "1.5d", "0d", "-1d", "30x", "d", ""):
        with pytest.raises(ValueError, match=r"--retain: .* 12h, 30d, 2w"):
            parse_duration(bad, "--retain")
    assert retain_from_env({}) is None and retain_from_env({"REELFORGE_RETAIN": "2w"}) == 14 * DAY
    with pytest.raises(ConfigError, match="REELFORGE_RETAIN"):
        retain_from_env({"REELFORGE_RETAIN": "a month"})


def _age_everything(home: Path, days: float) -> None:
    with sqlite3.connect(home / "jobs.sqlite3") as db:
        db.execute("UPDATE jobs SET end_time = end_time - ? WHERE end_time IS NOT NULL", (days * DAY,))


def test_cli_prune_and_dry_run_print_the_same_ids(reelforge_home, tmp_path):
    store = open_store(reelforge_home / "jobs.sqlite3")
    old = [ended(store, record(tmp_path)), ended(store, record(tmp_path), JobStatus.CANCELED)]
    _age_everything(reelforge_home, 40)
    young = ended(store, record(tmp_path))
    running = with_files(record(tmp_path))
    store.create(running)
    store.claim("w", 30)
    runner = CliRunner()
    planned = runner.invoke(cli, ["jobs", "prune", "--older-than", "30d", "--dry-run"], catch_exceptions=False)
    assert planned.exit_code == 0 and "would prune 2 job(s)" in planned.stderr
    listed = planned.stdout.split()
    assert set(listed) == {r.id for r in old}
    pruned = runner.invoke(cli, ["jobs", "prune", "--older-than", "30d", "--json"], catch_exceptions=False)
    assert json.loads(pruned.stdout) == {"dry_run": False, "ids": listed, "failed": {}}
    assert {r.id for r in store.list()} == {young.id, running.id}
    bad = runner.invoke(cli, ["jobs", "prune", "--older-than", "30 days"])
    assert bad.exit_code == 2 and "--older-than" in bad.stderr and "12h, 30d, 2w" in bad.stderr


def test_a_batch_line_whose_job_was_pruned_is_not_run_again(reelforge_home, tmp_path):
    from reelforge.workflows.batch import BatchRunner, read_batch
    from reelforge.client.client import Client

    path = tmp_path / "lines.jsonl"
    path.write_text(json.dumps({"prompt": "a paper boat", "duration": 1, "fps": 8, "resolution": "128x72"}) + "\n")
    items = read_batch(path, defaults={"model": "reelforge.animatic-v1"})
    client = Client()
    first = BatchRunner(client, items, output=tmp_path / "out", poll_s=0.05).run()
    assert first[0].status == "COMPLETED"
    store = client._backend.runtime.store
    assert prune(store, DAY, now=time.time() + 2 * DAY).ids == [first[0].job_id]
    again = BatchRunner(client, read_batch(path, defaults={"model": "reelforge.animatic-v1"}), output=tmp_path / "out", poll_s=0.05).run()
    assert (again[0].job_id, again[0].status, again[0].run) == (first[0].job_id, "COMPLETED", "already done")
    assert "expired" in again[0].error and again[0].output is None
    assert store.list() == []  # nothing new was started


def test_every_wire_answers_expired_for_a_pruned_job_and_a_repeated_token_starts_nothing(tmp_path):
    import openai
    from google.genai import errors, types
    from server_fixtures import ServerThread, bedrock, expect, start_tiny, wait_done
    from test_wire_gemini import until_done, vertex
    from wire_fixtures import job_count, openai_client

    from reelforge.server.app import ServerSettings

    settings = ServerSettings(workers=1, bucket_dir=tmp_path / "buckets", data_dir=tmp_path / "home", retain_s=30 * DAY)
    with ServerThread(settings) as server:
        boto = bedrock(server.url)
        arn = start_tiny(boto, clientRequestToken="tok-wire")
        wait_done(boto, arn)
        oa = openai_client(server.url)
        video = oa.videos.create_and_poll(prompt="a kite", seconds="4", size="720x1280", extra_headers={"Idempotency-Key": "key-1"})
        assert video.status == "completed" and video.expires_at == video.completed_at + 30 * 86400  # the retention, in seconds
        g = vertex(server.url)
        op = until_done(g, g.models.generate_videos(model="veo-3.1-generate-001", prompt="a neon cat",
                                                   config=types.GenerateVideosConfig(duration_seconds=1, fps=8, resolution="720p")))
        assert op.error is None
        count = job_count(server)
        assert len(prune(server.runtime.store, 30 * DAY, now=time.time() + 31 * DAY).ids) == count == 3

        assert "has expired: it ended as COMPLETED" in expect("ResourceNotFoundException", boto.get_async_invoke, invocationArn=arn)
        assert start_tiny(boto, clientRequestToken="tok-wire") == arn  # the same invocation, not a new one
        with pytest.raises(openai.NotFoundError) as info:
            oa.videos.retrieve(video.id)
        assert info.value.code == "video_expired" and "has expired" in info.value.message
        assert oa.videos.list(after=video.id).data == []  # a pruned video still marks its place in a listing
        with pytest.raises(openai.ConflictError) as info:
            oa.videos.create(prompt="a kite", seconds="4", size="720x1280", extra_headers={"Idempotency-Key": "key-1"})
        assert info.value.code == "video_expired" and video.id in info.value.message
        with pytest.raises(errors.ClientError) as info:
            g.operations.get(op)
        assert info.value.code == 404 and "has expired" in info.value.message
        assert job_count(server) == 0 and boto.list_async_invokes()["asyncInvokeSummaries"] == []
        from reelforge.client.client import Client

        with pytest.raises(JobNotFoundError, match="has expired"):  # reelforge's own client over the wire
            Client(endpoint=server.url).get(arn)


def test_openai_expires_at_is_null_without_retention(tmp_path):
    from server_fixtures import ServerThread
    from wire_fixtures import openai_client

    from reelforge.server.app import ServerSettings

    with ServerThread(ServerSettings(workers=1, bucket_dir=tmp_path / "b", data_dir=tmp_path / "h")) as server:
        video = openai_client(server.url).videos.create_and_poll(prompt="a kite", seconds="4", size="720x1280")
        assert video.status == "completed" and video.expires_at is None


def test_serve_retain_prunes_on_its_timer(tmp_path, monkeypatch):
    from server_fixtures import ServerProcess, bedrock, expect, start_tiny, wait_done

    monkeypatch.setenv("REELFORGE_PRUNE_EVERY_S", "0.2")
    home = tmp_path / "home"
    home.mkdir()
    server = ServerProcess(home, "--retain", "1s", "--bucket-dir", str(tmp_path / "buckets")).start()
    try:
        boto = bedrock(server.url)
        arn = start_tiny(boto, "s3://bkt/out", clientRequestToken="tok-timer")
        assert wait_done(boto, arn)["status"] == "Completed"
        folder = tmp_path / "buckets" / "bkt" / "out" / arn.rsplit("/", 1)[1]
        deadline = time.monotonic() + 60
        while True:  # no timing is asserted: the outcome is waited for
            try:
                boto.get_async_invoke(invocationArn=arn)
            except boto.exceptions.ResourceNotFoundException as exc:
                assert "has expired" in str(exc)
                break
            assert time.monotonic() < deadline, "not pruned within 60 s"
            time.sleep(0.1)
        while folder.exists():  # the record goes first, then the files
            assert time.monotonic() < deadline, f"{folder} still there"
            time.sleep(0.1)
        assert start_tiny(boto, "s3://bkt/out", clientRequestToken="tok-timer") == arn
        assert "has expired" in expect("ResourceNotFoundException", boto.get_async_invoke, invocationArn=arn)
    finally:
        server.stop()


@pytest.mark.parametrize("value", ["30", "1.5d", "a month", "0s"])
def test_serve_refuses_a_bad_retain_naming_the_flag_and_the_forms(value):
    result = CliRunner().invoke(cli, ["serve", "--port", "0", "--retain", value])
    assert result.exit_code == 2
    assert "--retain" in result.stderr and "12h, 30d, 2w" in result.stderr


def test_s3_outputs_are_pruned_and_unreachable_storage_is_retried(location, tmp_path, monkeypatch):
    import os
    import threading

    import boto3
    from server_fixtures import free_port, moto_s3

    from reelforge.storage import base as storage

    def fresh_s3_clients():  # S3Storage keeps one client per thread, made from the environment of its time
        monkeypatch.setattr(storage, "_s3_clients", threading.local())

    def s3_job(store, status_end=True):
        rec = record(tmp_path)
        rec.output_uri = rec.storage_uri = f"s3://pruned/out/{rec.id}"
        for name in ("output.mp4", "shot_0001.mp4", "shot_0002.mp4", "manifest.json"):
            s3.put_object(Bucket="pruned", Key=f"out/{rec.id}/{name}", Body=b"x")
        store.create(rec)
        store.claim("w", 30)
        store.finish(rec.id, "w", JobStatus.COMPLETED)
        return rec

    def keys(rec):
        return [o["Key"] for o in s3.list_objects_v2(Bucket="pruned", Prefix=f"out/{rec.id}").get("Contents", [])]

    with moto_s3() as url:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="pruned")
        store = open_store(location)
        old = s3_job(store)
        cutoff = time.time()
        time.sleep(0.01)
        young = s3_job(store)
        now = cutoff + DAY
        fresh_s3_clients()
        os.environ.update(AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{free_port()}", AWS_MAX_ATTEMPTS="1")  # S3 away
        try:
            report = prune(store, DAY, now=now)
        finally:
            os.environ["AWS_ENDPOINT_URL_S3"] = url
            del os.environ["AWS_MAX_ATTEMPTS"]
        assert report.ids == [old.id] and list(report.failed) == [old.id]
        assert len(keys(old)) == 4
        with pytest.raises(JobExpiredError):  # the record went first: never shown with files that may be half gone
            store.get(old.id)
        fresh_s3_clients()
        assert prune(store, DAY, now=now).ids == [old.id]  # S3 back: the next round finishes it
        assert keys(old) == [] and len(keys(young)) == 4
        assert store.get(young.id).status is JobStatus.COMPLETED


def test_embedded_workers_prune_when_reelforge_retain_is_set(tmp_path, monkeypatch):
    from reelforge.client.client import Client

    monkeypatch.setenv("REELFORGE_RETAIN", "1s")
    monkeypatch.setenv("REELFORGE_PRUNE_EVERY_S", "0.1")
    job = Client().start("a paper boat", model="reelforge.animatic-v1", output=tmp_path / "out")
    folder = tmp_path / "out" / job.id
    try:
        job.wait(timeout=60)
    except JobExpiredError:  # pruned already (it ended more than 1 s ago)
        pass
    deadline = time.monotonic() + 60
    while True:  # the outcome is polled for, no timing asserted
        try:
            job.refresh()
        except JobExpiredError as exc:
            assert exc.job.status is JobStatus.COMPLETED
            break
        assert time.monotonic() < deadline, "not pruned within 60 s"
        time.sleep(0.05)
    store = job.client._backend.runtime.store
    while folder.exists() or store.unfinished_prunes():  # the record goes first, then the files
        assert time.monotonic() < deadline, f"{folder} still there"
        time.sleep(0.05)


def test_two_pruners_at_once_prune_every_job_once(location, tmp_path):
    import threading

    store = open_store(location)
    jobs = [ended(store, record(tmp_path, token=f"tok-{i}")) for i in range(30)]
    reports, barrier = [], threading.Barrier(2)

    def run():
        mine = open_store(location)
        barrier.wait()
        reports.append(prune(mine, DAY, now=time.time() + 2 * DAY))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(reports[0].ids) | set(reports[1].ids) == {j.id for j in jobs}
    assert not reports[0].failed and not reports[1].failed
    assert store.list(limit=100) == [] and store.unfinished_prunes() == []
    for i, j in enumerate(jobs):
        assert not local_path(j.storage_uri).exists()
        assert store.create(record(tmp_path, token=f"tok-{i}"))[0].id == j.id


def test_a_job_with_a_webhook_still_being_tried_waits_then_its_deliveries_go_with_it(location, tmp_path):
    store = open_store(location)
    hooks = {"endpoints": [{"name": "all", "url": "https://a.example/", "kinds": ["completed"], "key": "k"}]}
    rec = ended(store, record(tmp_path, webhooks=hooks))
    [pending] = store.deliveries(rec.id)
    assert pending["state"] == "pending"
    now = time.time() + 30 * DAY
    assert prune(store, DAY, now=now).ids == []  # its notification is still to be sent
    assert store.get(rec.id).status is JobStatus.COMPLETED
    claim = store.claim_delivery("d1", 30, ["k"])
    assert claim["id"] == pending["id"]
    assert store.end_delivery_attempt(claim["id"], "d1", state="delivered", next_attempt=now, code=204, error=None, history=[])
    assert prune(store, DAY, now=now).ids == [rec.id]
    assert store.deliveries(rec.id) == []
    assert store.tombstone(rec.id).status is JobStatus.COMPLETED

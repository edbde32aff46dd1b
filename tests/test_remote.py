"""Remote engines with two real servers on 127.0.0.1: reelforge A (the upstream, on the animatic) and
reelforge B forwarding to A through the ``bedrock`` engine (boto3) and the ``openai-videos`` engine (httpx).

B's worker is a child process where it has to die (kill -9 mid-job, and between the upstream create and
the saving of its id); elsewhere it runs in B's server.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest

from reelforge import Engine
from helpers import engines_registered
from reelforge.engines import remote
from reelforge.engines.openai_videos import OpenAIVideosEngine
from reelforge.errors import ReelforgeError
from reelforge.engines.forward import Forwards
from reelforge.jobs.record import JobStatus
from reelforge.media.video import probe
from reelforge.request.limits import LOCAL, ModelSpec
from reelforge.server.app import ServerSettings
from faults import Worker
from server_fixtures import TINY, ServerThread, bedrock, http, moto_s3, wait_done
from test_notebook import build_model_input, download_and_display_video, monitor_video_generation, start_video_generation

KINDS = ("bedrock", "openai-videos")
NOVA = "amazon.nova-reel-v1:0"  # the notebook's model id; A serves it on the animatic
TINY_ID = "reelforge.animatic-v1"  # the other tests' model id: TINY videos in tens of milliseconds


class FailsEngine(Engine):
    """An upstream engine that fails with a message of its own (A runs it; B must report it)."""

    engine_id = "test-remote-fails"

    @classmethod
    def models(cls):
        return [ModelSpec("test.remote-fails", "test-remote-fails", "fails at once", LOCAL)]

    def render_shot(self, shot, progress):
        raise ReelforgeError("the upstream's GPU caught fire")


registered_engines = engines_registered(FailsEngine)


def entry(kind: str, upstream_url: str, model_id: str = TINY_ID, extra: str = "") -> str:
    if kind == "bedrock":
        return f"{model_id}=bedrock:{upstream_url}{extra}"
    return f"{model_id}=openai-videos:{upstream_url}#{model_id}{extra}"


@pytest.fixture
def a_server(tmp_path):
    with ServerThread(ServerSettings(workers=1, bucket_dir=tmp_path / "a-buckets", data_dir=tmp_path / "a-home")) as a:
        yield a


def b_server(tmp_path: Path, forwards: list[str], workers: int = 1, s3: bool = False) -> ServerThread:
    """B: outputs to its bucket folder, or with ``s3`` to S3 (moto) as the notebook reads them."""
    return ServerThread(ServerSettings(workers=workers, bucket_dir=None if s3 else tmp_path / "b-buckets", data_dir=tmp_path / "b-home",
                                       forwards=Forwards.parse(forwards)))


def upstream_jobs(a: ServerThread) -> list:
    return a.runtime.store.list(limit=1000)


def start(client, model_id: str = TINY_ID, model_input=None) -> str:
    nova = model_input or {**TINY}
    return client.start_async_invoke(modelId=model_id, modelInput=nova, outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://b-out/videos"}})["invocationArn"]


def job_of(server: ServerThread, arn: str):
    return server.runtime.get(arn.rsplit("/", 1)[1])


def until(predicate, timeout: float = 30, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached after {timeout} s"
        time.sleep(0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_the_notebook_against_b_completes_with_a_doing_the_work(kind, tmp_path, a_server, capsys):
    with moto_s3() as s3_url, b_server(tmp_path, [entry(kind, a_server.url, model_id=NOVA)], s3=True) as b:
        bucket, out_dir = "notebook-videos", tmp_path / "videos"
        out_dir.mkdir()
        s3 = boto3.client("s3", endpoint_url=s3_url)
        s3.create_bucket(Bucket=bucket)
        bedrock_runtime = boto3.client("bedrock-runtime", endpoint_url=b.url)
        arn = start_video_generation(bedrock_runtime, bucket, build_model_input("A seashell on the sand. Camera zoom in.", duration=6))["invocationArn"]
        video = download_and_display_video(s3, bucket, monitor_video_generation(bedrock_runtime, arn), str(out_dir))
        info = probe(video.filename)  # decoded frame by frame
        assert (info.width, info.height, info.frames) == (1280, 720, 144)
        [upstream] = upstream_jobs(a_server)  # A did the work, once
        assert upstream.status is JobStatus.COMPLETED and upstream.model_id == NOVA
        job = job_of(b, arn)
        assert job.metadata["engine"] == kind and job.metadata["checkpoint"]["upstreamId"].endswith(upstream.id)
        assert upstream.client_token.endswith(remote.token_for(job.id))  # the job's own idempotency token
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{job.id}/manifest.json")["Body"].read())
        assert manifest["metadata"]["upstreamId"].endswith(upstream.id) and "upstreamTimings" in manifest["metadata"]
        assert {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]} >= {f"{job.id}/{n}" for n in ("output.mp4", "poster.jpg", "manifest.json")}


def b_worker(tmp_path: Path, *, crash_after_create: bool = False, ignore_keys: bool = False) -> Worker:
    """B's worker as a child process: no --forward of its own (where each job goes was recorded with it)."""
    env = {**__import__("os").environ, "REELFORGE_HOME": str(tmp_path / "b-home")}
    env.pop("REELFORGE_FORWARD", None)
    if crash_after_create:
        (tmp_path / "crash-once").write_text("1")
        env["TEST_CRASH_FLAG"] = str(tmp_path / "crash-once")
    if ignore_keys:
        env["TEST_IGNORE_KEYS"] = "1"
    return Worker(env, preload="remote_faults", log=tmp_path / "b-worker.log").start()


@pytest.mark.parametrize("kind, where", [
    (kind, where) for kind in KINDS for where in ("while following", "between create and saving the id")
] + [("openai-videos", "between create and saving the id, keys ignored")])  # Bedrock always honours its token
def test_kill_9_of_bs_worker_then_restart_makes_one_upstream_job(kind, where, tmp_path):
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "a-buckets", data_dir=tmp_path / "a-home")) as a, \
            b_server(tmp_path, [entry(kind, a.url)], workers=0) as b:
        arn = start(bedrock(b.url))
        job_id = arn.rsplit("/", 1)[1]
        crash = where != "while following"
        worker = b_worker(tmp_path, crash_after_create=crash, ignore_keys="keys ignored" in where)
        try:
            until(lambda: upstream_jobs(a), what="the upstream create")
            if crash:
                until(lambda: not worker.alive(), what="the worker's crash after the create")
                assert "upstreamId" not in b.runtime.get(job_id).metadata.get("checkpoint", {})  # it died before saving the id
            else:
                until(lambda: b.runtime.get(job_id).metadata.get("checkpoint", {}).get("upstreamId"), what="the saved upstream id")
                worker.kill9()
            a.runtime.start_workers(1)  # the upstream gets to work only now
            worker = b_worker(tmp_path)
            done = wait_done(bedrock(b.url), arn, timeout=60)
            assert done["status"] == "Completed", done
            assert len(upstream_jobs(a)) == 1  # exactly one upstream job
            info = probe(tmp_path / "b-buckets" / "b-out" / "videos" / job_id / "output.mp4")  # decoded; OpenAI's wire has no fps: A's own
            assert (info.width, info.height, round(info.duration)) == (128, 72, 1)
        finally:
            worker.kill9()


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_on_b_cancels_on_a(kind, tmp_path):
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "a-buckets", data_dir=tmp_path / "a-home")) as a, \
            b_server(tmp_path, [entry(kind, a.url)]) as b:
        arn = start(bedrock(b.url))
        job = until(lambda: b.runtime.get(arn.rsplit("/", 1)[1]).metadata.get("checkpoint", {}).get("upstreamId") and job_of(b, arn))
        assert http(f"{b.url}/reelforge/jobs/{job.id}/cancel", "POST")[0] == 200
        until(lambda: job_of(b, arn).status is JobStatus.CANCELED, what="B's cancel")
        [upstream] = until(lambda: [j for j in upstream_jobs(a) if j.status is JobStatus.CANCELED] or a.runtime.store.list(statuses=[JobStatus.CANCELED]),
                           what="A's cancel")
        assert upstream.status is JobStatus.CANCELED
        assert job_of(b, arn).metadata.get("upstreamCanceled") is True


@pytest.mark.parametrize("kind", KINDS)
def test_as_max_queued_makes_b_back_off_and_finish_everything(kind, tmp_path, monkeypatch):
    monkeypatch.setattr(remote, "BACKOFF_MAX_S", 1.0)
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "a-buckets", data_dir=tmp_path / "a-home", max_queued=1)) as a, \
            b_server(tmp_path, [entry(kind, a.url, extra=";concurrency=4")], workers=4) as b:
        client = bedrock(b.url)
        arns = [start(client) for _ in range(4)]
        until(lambda: any(job_of(b, x).stage.startswith("upstream busy") for x in arns), what="a back-off")
        assert len(upstream_jobs(a)) == 1  # A's limit held
        a.runtime.start_workers(1)
        for x in arns:
            assert wait_done(client, x, timeout=90)["status"] == "Completed"
        assert len(upstream_jobs(a)) == 4 and all(j.status is JobStatus.COMPLETED for j in upstream_jobs(a))
        assert sum(job_of(b, x).metadata.get("upstreamBackoffs", 0) for x in arns) > 0


@pytest.mark.parametrize("kind", KINDS)
def test_an_upstream_failure_reaches_bs_job_with_its_message(kind, tmp_path, a_server):
    with b_server(tmp_path, [entry(kind, a_server.url, model_id="test.remote-fails")]) as b:
        client = bedrock(b.url)
        arn = start(client, model_id="test.remote-fails")
        done = wait_done(client, arn, timeout=60)
        assert done["status"] == "Failed" and "the upstream's GPU caught fire" in done["failureMessage"], done
        [upstream] = upstream_jobs(a_server)
        assert upstream.status is JobStatus.FAILED


def test_a_luma_request_is_forwarded_to_a_in_lumas_own_form(tmp_path, a_server):
    luma_input = {"prompt": "a paper boat on a pond", "aspect_ratio": "1:1", "duration": "5s", "resolution": "540p", "loop": True,
                  "keyframes": {"frame1": {"type": "image", "url": "s3://somewhere/last.png"}}}
    with b_server(tmp_path, ["luma.ray-v2:0=bedrock:" + a_server.url]) as b:
        client = bedrock(b.url)
        arn = start(client, model_id="luma.ray-v2:0", model_input=luma_input)  # an end keyframe: fine when forwarded
        job = job_of(b, arn)
        assert job.wire_request["modelInput"] == luma_input and "notes" not in job.metadata
        # A gets Luma's request as it was sent, and checks it itself: its local model refuses the end keyframe
        done = wait_done(client, arn, timeout=60)
        assert done["status"] == "Failed" and "keyframes.frame1" in done["failureMessage"], done
        del luma_input["keyframes"]
        arn = start(client, model_id="luma.ray-v2:0", model_input=luma_input)
        assert wait_done(client, arn, timeout=60)["status"] == "Completed"
        upstream = [j for j in upstream_jobs(a_server) if j.status is JobStatus.COMPLETED]
        assert len(upstream) == 1 and upstream[0].wire_request["modelInput"] == luma_input
        info = probe(tmp_path / "b-buckets" / "b-out" / "videos" / job_of(b, arn).id / "output.mp4")
        assert (info.width, info.height, info.frames) == (540, 540, 120)


def test_the_embedded_client_forwards_through_reelforge_forward(monkeypatch, tmp_path, a_server):
    from reelforge import Client

    monkeypatch.setenv("REELFORGE_FORWARD", entry("openai-videos", a_server.url))
    job = Client(data_dir=tmp_path / "embedded").start(TINY, model=TINY_ID, output=tmp_path / "videos").wait(timeout=60)
    assert job.record.engine == "openai-videos" and job.record.engine_options["kind"] == "openai-videos" and job.record.metadata["engine"] == "openai-videos"
    [upstream] = upstream_jobs(a_server)
    assert upstream.wire == "openai" and job.record.metadata["checkpoint"]["upstreamId"] == f"video_{upstream.id}"
    assert probe(job.video_path).width == 128


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["canceled while requeued", "canceled while its worker was dead"])
def test_cancel_with_no_worker_following_still_reaches_a(kind, how, tmp_path):
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "a-buckets", data_dir=tmp_path / "a-home")) as a, \
            b_server(tmp_path, [entry(kind, a.url)], workers=0) as b:
        arn = start(bedrock(b.url))
        job_id = arn.rsplit("/", 1)[1]
        worker = b_worker(tmp_path)
        until(lambda: b.runtime.get(job_id).metadata.get("checkpoint", {}).get("upstreamId"), what="the saved upstream id")
        worker.kill9()
        if how == "canceled while requeued":
            assert b.runtime.recover() == [job_id] and b.runtime.get(job_id).status is JobStatus.QUEUED
            assert http(f"{b.url}/reelforge/jobs/{job_id}/cancel", "POST")[0] == 200
        else:
            assert http(f"{b.url}/reelforge/jobs/{job_id}/cancel", "POST")[0] == 200  # RUNNING: a cancel request
            assert b.runtime.recover() == [job_id]  # the dead worker's unit ends CANCELED
        assert b.runtime.get(job_id).status is JobStatus.CANCELED
        until(lambda: a.runtime.store.list(statuses=[JobStatus.CANCELED]), what="A's cancel")
        assert len(upstream_jobs(a)) == 1


def test_a_multi_shot_job_forwarded_to_a_keeps_its_shots(tmp_path, a_server):
    shots = {"taskType": "MULTI_SHOT_MANUAL", "multiShotManualParams": {"shots": [{"text": "a red ball", "durationSeconds": 1}, {"text": "a blue cube", "durationSeconds": 1}]},
             "videoGenerationConfig": {"fps": 8, "dimension": "128x72", "seed": 3}}
    with b_server(tmp_path, [entry("bedrock", a_server.url)]) as b:
        client = bedrock(b.url)
        arn = start(client, model_input=shots)
        assert wait_done(client, arn, timeout=60)["status"] == "Completed"
        folder = tmp_path / "b-buckets" / "b-out" / "videos" / arn.rsplit("/", 1)[1]
        assert [probe(folder / f"shot_000{i}.mp4").frames for i in (1, 2)] == [8, 8] and probe(folder / "output.mp4").frames == 16
        status = json.loads((folder / "video-generation-status.json").read_text())
        assert [s["location"].rsplit("/", 1)[1] for s in status["shots"]] == ["shot_0001.mp4", "shot_0002.mp4"]
        [upstream] = upstream_jobs(a_server)
        assert upstream.model_input["taskType"] == "MULTI_SHOT_MANUAL"  # A made the whole video, once


@pytest.mark.parametrize("kind", KINDS)
def test_one_worker_follows_many_forwarded_jobs_without_a_thread_each(kind, tmp_path):
    """The remote engines are coroutines on B's async lane: jobs waiting upstream hold no thread.

    B has one worker thread; A runs nothing until the end, so every job B forwards stays in flight.
    Between 2 and N jobs in flight B may add only threads of its bounded pools (the loop's default
    executor, which ``asyncio.to_thread`` uses for job-log writes and boto3, and the lane's step
    threads), never one per job: N is chosen above their sum.
    """
    import os
    import threading

    pool = min(32, (os.cpu_count() or 1) + 4)
    n = 2 + pool + 4 + 4
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "a-buckets", data_dir=tmp_path / "a-home")) as a, \
            b_server(tmp_path, [entry(kind, a.url, extra=f";concurrency={n}")], workers=1) as b:
        client = bedrock(b.url)

        def in_flight(arns):
            return all(job_of(b, x).metadata.get("checkpoint", {}).get("upstreamId") for x in arns)

        arns = [start(client) for _ in range(2)]
        until(lambda: in_flight(arns), what="2 jobs forwarded")
        threads_at_2 = {t.name for t in threading.enumerate()}
        arns += [start(client) for _ in range(n - 2)]
        until(lambda: in_flight(arns), timeout=60, what=f"{n} jobs forwarded")
        assert len(upstream_jobs(a)) == n
        assert b.runtime._lane.in_flight == n and len(b.runtime._lane.units) == n  # all followed at once, on the lane
        added = {t.name for t in threading.enumerate()} - threads_at_2
        # only bounded pools may grow: the loop's default executor and the lane's 4 step threads
        assert all(name.startswith(("asyncio_", "reelforge-lane-step")) for name in added), added
        assert len(added) <= pool + 4 < n - 2, added
        a.runtime.start_workers(1)
        for x in arns:
            assert wait_done(client, x, timeout=90)["status"] == "Completed"


def test_a_frame_rate_the_openai_wire_cannot_ask_for_is_taken_and_recorded_other_differences_are_not(tmp_path):
    """worker._take_file, loosened for OpenAI Videos (no fps on its wire): another rate of the same
    length passes and is recorded; the same file fails where the rate is not loosened, as does a wrong length."""
    import numpy as np

    from reelforge import media
    from reelforge.engines import ShotPlan
    from reelforge.jobs.units import take_file as _take_file

    def video(name: str, fps: int, frames: int) -> Path:
        with media.VideoWriter(tmp_path / name, fps, 64, 64) as w:
            for k in range(frames):
                w.write(np.full((64, 64, 3), k * 8 % 256, dtype=np.uint8))
        return tmp_path / name

    plan = ShotPlan(0, 1, "a", 1, 2, 24, 64, 64)  # 2 s at 24 fps: 48 frames
    engine = OpenAIVideosEngine
    differs: dict = {}
    _take_file(engine, plan, video("16fps.mp4", 16, 32), tmp_path / "out.mp4", loosen=engine.upstream_differs, differs=differs)
    assert differs == {"fps": {"planned": 24, "upstream": 16.0}, "frames": {"planned": 48, "upstream": 32}}
    assert probe(tmp_path / "out.mp4").frames == 32
    with pytest.raises(ReelforgeError, match="does not match its plan"):
        _take_file(remote.BedrockEngine, plan, video("16fps-b.mp4", 16, 32), tmp_path / "out2.mp4", loosen=remote.BedrockEngine.upstream_differs)
    with pytest.raises(ReelforgeError, match="does not match its plan"):
        _take_file(engine, plan, video("short.mp4", 16, 24), tmp_path / "out3.mp4", loosen=engine.upstream_differs)

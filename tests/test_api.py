"""The Python API on the embedded runtime: start, wait, download, cancel, idempotency, failures."""

import logging
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from reelforge import Client, Engine, EngineOptions, JobCanceledError, JobFailedError, JobStatus, VideoRequest
from reelforge import media
from helpers import engines_registered
from reelforge.request.limits import LOCAL, ModelSpec

TINY = dict(duration_s=1, fps=8, width=128, height=72)


class _TestEngine(Engine):
    """Solid frames whose colour encodes the shot, so tests can tell shots apart."""

    calls: list = []

    def render_shot(self, shot, progress):
        for i in range(shot.frame_count):
            progress(i, shot.frame_count, "render")
            self.step(shot, i)
            yield np.full((shot.height, shot.width, 3), 40 * (shot.index + 1), np.uint8)


class BoomEngine(_TestEngine):
    engine_id = "test-boom"

    @classmethod
    def models(cls):
        return [ModelSpec("test.boom", "test-boom", "raises", LOCAL)]

    def step(self, shot, i):
        if i == 3:
            raise ZeroDivisionError("division by zero")


class FlakyEngine(_TestEngine):
    """Fails the first attempt at shot 2 only."""

    engine_id = "test-flaky"
    failures: dict = {}

    @classmethod
    def models(cls):
        return [ModelSpec("test.flaky", "test-flaky", "fails once", LOCAL)]

    def step(self, shot, i):
        FlakyEngine.calls.append((shot.index, i))
        if shot.index == 1 and i == 2 and not FlakyEngine.failures.get(shot.seed):
            FlakyEngine.failures[shot.seed] = True
            raise RuntimeError("GPU fell over")


class SlowEngine(_TestEngine):
    engine_id = "test-slow"
    started = threading.Event()

    @classmethod
    def models(cls):
        return [ModelSpec("test.slow", "test-slow", "slow", LOCAL)]

    def step(self, shot, i):
        SlowEngine.started.set()
        time.sleep(0.05)


def test_start_wait_download(tmp_path):
    client = Client()
    job = client.start(VideoRequest(text="a lighthouse. Camera orbit.", seed=1, **TINY), model="reelforge.animatic-v1", output=tmp_path / "out")
    assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED)  # recorded before start returns
    seen = []
    job.wait(timeout=60, on_progress=lambda rec: seen.append(rec.progress))
    assert job.status is JobStatus.COMPLETED and job.progress == 1.0
    assert seen == sorted(seen)  # progress only rises
    assert job.output_uri == (tmp_path / "out").resolve().as_uri() + "/" + job.id
    path = job.download(tmp_path)
    assert path == tmp_path / f"{job.id}.mp4" and media.probe(path).frames == 8
    assert job.arn == f"arn:aws:bedrock:us-east-1:000000000000:async-invoke/{job.id}"


def test_multi_shot_manual_gives_18_seconds_and_shot_files(tmp_path):
    shots = [{"text": "A harbour at dawn. Camera pan right."}, {"text": "Boats leave. Camera zoom in."}, {"text": "Gulls overhead. Camera tilt up."}]
    job = Client().start(VideoRequest(shots=shots, seed=3), model="amazon.nova-reel-v1:1", output=tmp_path).wait(timeout=120)
    folder = job.local_dir
    info = media.probe(folder / "output.mp4")
    assert (info.frames, info.duration, info.width, info.height) == (432, 18.0, 1280, 720)
    for n in (1, 2, 3):
        assert media.probe(folder / f"shot_{n:04d}.mp4").frames == 144
    # the joined video is the shots back to back: frame 144 is shot 2's first frame
    assert np.array_equal(media.read_frame(folder / "output.mp4", 144), media.read_frame(folder / "shot_0002.mp4", 0))
    assert Client().jobs()[0].id == job.id  # shot units stay out of listings


def test_engine_failure_ends_failed_with_a_readable_message(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="reelforge")
    job = Client().start(VideoRequest(text="x", **TINY), model="test.boom", output=tmp_path)
    with pytest.raises(JobFailedError):
        job.wait(timeout=30)
    assert job.status is JobStatus.FAILED
    assert job.failure_message == "the engine failed with ZeroDivisionError: division by zero (traceback in the log)"
    assert "Traceback" in caplog.text and "ZeroDivisionError" in caplog.text
    assert not (job.local_dir / "output.mp4").exists()
    assert list(job.local_dir.glob("*.part")) == [] and list(job.local_dir.glob(".*")) == []


def test_a_failed_shot_is_retried_alone(tmp_path):
    FlakyEngine.calls.clear()
    job = Client(workers=2).start(VideoRequest(shots=[{"text": "a"}, {"text": "b"}, {"text": "c"}], seed=77, **{k: v for k, v in TINY.items() if k != "duration_s"}), model="test.flaky", output=tmp_path)
    job.wait(timeout=60)
    assert job.status is JobStatus.COMPLETED
    first_frames = [c for c in FlakyEngine.calls if c[1] == 0]
    assert sorted(first_frames) == [(0, 0), (1, 0), (1, 0), (2, 0)]  # only shot 2 ran twice
    assert media.probe(job.local_dir / "output.mp4").frames == 3 * 6 * 8


def test_client_token_makes_start_idempotent(tmp_path):
    client = Client()
    req = VideoRequest(text="same", **TINY)
    a = client.start(req, model="reelforge.animatic-v1", output=tmp_path, client_token="tok-1")
    b = client.start(req, model="reelforge.animatic-v1", output=tmp_path, client_token="tok-1")
    assert a.id == b.id and len(client.jobs()) == 1
    from reelforge import ConflictError

    with pytest.raises(ConflictError, match="tok-1"):
        client.start(VideoRequest(text="other", **TINY), model="reelforge.animatic-v1", output=tmp_path, client_token="tok-1")


def test_cancel_a_running_job(tmp_path):
    SlowEngine.started.clear()
    job = Client().start(VideoRequest(text="slow", duration_s=10, fps=8, width=64, height=64), model="test.slow", output=tmp_path)
    assert SlowEngine.started.wait(30)
    job.cancel()
    with pytest.raises(JobCanceledError):
        job.wait(timeout=30)
    assert job.status is JobStatus.CANCELED and not (job.local_dir / "output.mp4").exists()


def test_cancel_a_multi_shot_job_cancels_its_shots(tmp_path):
    SlowEngine.started.clear()
    job = Client().start(VideoRequest(shots=[{"text": "a"}, {"text": "b"}], fps=8, width=64, height=64), model="test.slow", output=tmp_path)
    assert SlowEngine.started.wait(30)
    job.cancel()
    with pytest.raises(JobCanceledError):
        job.wait(timeout=30)
    store = job.client._backend.runtime.store
    assert {c.status for c in store.children(job.id)} <= {JobStatus.CANCELED}


def test_generate_one_liner(tmp_path):
    from reelforge import generate

    job = generate("a field of wheat. Camera dolly in.", model="reelforge.animatic-v1", output=tmp_path, seed=9, **TINY)
    assert job.status is JobStatus.COMPLETED and job.video_path.exists()


def test_show_in_a_notebook_and_html_repr(tmp_path, monkeypatch):
    from reelforge.client import client as client_module

    job = Client().start(VideoRequest(text="a bell", **TINY), model="reelforge.animatic-v1", output=tmp_path).wait(timeout=60)
    html = job._repr_html_()
    assert job.id in html and "<video" in html and "data:video/mp4;base64," in html
    pytest.importorskip("IPython")
    monkeypatch.setattr(client_module, "_in_notebook", lambda: True)
    player = job.show()
    assert type(player).__name__ == "Video" and player.filename == str(job.video_path)
    assert "data:video/mp4;base64," in player._repr_html_()


def test_engine_options_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("REELFORGE_ANIMATIC_OPTIONS", '{"caption": false, "slate_frames": 0}')
    job = Client().start(VideoRequest(text="a quiet lake", **TINY), model="reelforge.animatic-v1", output=tmp_path).wait(timeout=60)
    assert job.record.metadata["engine_options"] == {"caption": False, "slate_frames": 0}
    monkeypatch.setenv("REELFORGE_ANIMATIC_OPTIONS", '{"caption": fals')
    from reelforge import EngineError

    with pytest.raises(EngineError, match="REELFORGE_ANIMATIC_OPTIONS is not valid JSON"):  # refused before recording
        Client().start(VideoRequest(text="a quiet lake", **TINY), model="reelforge.animatic-v1", output=tmp_path)
    assert len(Client().jobs()) == 1


class QuietEngine(_TestEngine):
    """Says nothing for a while before its first frame, like a model loading its weights."""

    engine_id = "test-quiet"

    @classmethod
    def models(cls):
        return [ModelSpec("test.quiet", "test-quiet", "silent start", LOCAL)]

    def render_shot(self, shot, progress):
        time.sleep(2.0)
        yield from super().render_shot(shot, progress)

    def step(self, shot, i):
        pass


def test_a_silent_engine_keeps_its_lease(tmp_path, monkeypatch):
    monkeypatch.setenv("REELFORGE_LEASE_S", "0.6")
    client = Client()
    job = client.start(VideoRequest(text="quiet", **TINY), model="test.quiet", output=tmp_path)
    runtime = client._backend.runtime
    deadline = time.time() + 10
    while job.status is not JobStatus.COMPLETED and time.time() < deadline:
        assert runtime.store.recover(3) == []  # another process looking for dead workers finds none
        time.sleep(0.2)
    assert job.wait(timeout=10).record.attempts == 1


class DiskFullEngine(_TestEngine):
    engine_id = "test-disk"

    @classmethod
    def models(cls):
        return [ModelSpec("test.disk", "test-disk", "OS error with a path", LOCAL)]

    def step(self, shot, i):
        raise OSError(28, "No space left on device", "/srv/secret/place/frame.tmp")


def test_os_errors_reach_users_without_server_paths(tmp_path, caplog):
    job = Client().start(VideoRequest(text="x", **TINY), model="test.disk", output=tmp_path)
    with pytest.raises(JobFailedError):
        job.wait(timeout=30)
    assert job.failure_message == "the engine failed with OSError: No space left on device (traceback in the log)"
    assert "/srv/secret/place" in caplog.text  # the log keeps the details


# --- what users met -----------------------------------------------------------------------------
class OptionsEngine(_TestEngine):
    """A third-party engine with options of its own, registered the way any other engine would be."""

    engine_id = "test-opts"

    class Options(EngineOptions):
        speed: int = 1
        style: str = "plain"

    @classmethod
    def models(cls):
        return [ModelSpec("test.opts", "test-opts", "has options", LOCAL),
                ModelSpec("test.opts-typo", "test-opts", "a typo in its options", LOCAL, engine_options={"sped": 2})]

    def step(self, shot, i):
        pass


registered_engines = engines_registered(BoomEngine, FlakyEngine, SlowEngine, QuietEngine, DiskFullEngine, OptionsEngine)


def test_bad_engine_options_are_refused_before_anything_is_recorded(tmp_path, monkeypatch):
    from reelforge import EngineError

    client = Client()
    with pytest.raises(EngineError) as err:
        client.start(VideoRequest(text="x", **TINY), model="test.opts-typo", output=tmp_path / "o")
    assert str(err.value) == "engine 'test-opts': bad options: unknown option 'sped' (allowed: speed, style)"
    monkeypatch.setenv("REELFORGE_TEST_OPTS_OPTIONS", '{"speed": "fast"}')
    with pytest.raises(EngineError, match=r"^engine 'test-opts': bad options: option 'speed': Input should be a valid integer.* \(allowed: speed, style\)$"):
        client.start(VideoRequest(text="x", **TINY), model="test.opts", output=tmp_path / "o")
    assert client.jobs() == [] and not (tmp_path / "o").exists()  # no FAILED job, no folder
    monkeypatch.setenv("REELFORGE_TEST_OPTS_OPTIONS", '{"speed": 3}')
    job = client.start(VideoRequest(text="x", **TINY), model="test.opts", output=tmp_path / "o").wait(timeout=60)
    assert job.record.metadata["engine_options"] == {"speed": 3}


def test_fit_adaptations_are_in_the_manifest_and_the_asked_fit_is_what_renders(tmp_path):
    import json

    from reelforge import ImageInput
    from tests.helpers import image_bytes

    square = ImageInput.from_source(image_bytes(100, 100, color=(220, 40, 40)))
    job = Client().start(VideoRequest(text="a red card. Static shot.", image=square, fit="pad", **TINY), model="reelforge.animatic-v1", output=tmp_path).wait(timeout=60)
    manifest = json.loads((job.local_dir / "manifest.json").read_text())
    assert manifest["adaptations"] == [{
        "field": "textToVideoParams.images[0]", "fit": "pad", "asked": True, "from": "100x100", "to": "128x72",
        "how": "scaled to 72x72, then 56 px of black bars added at the left and right",
    }]
    first = media.read_frame(job.local_dir / "output.mp4", 0)
    assert first[:, :20].mean() < 20 and first[:, -20:].mean() < 20  # padded, as asked: bars at the sides
    assert first[36, 64, 0] > 150  # the red card in the middle
    auto = Client().start(VideoRequest(text="a red card. Static shot.", image=square, **TINY), model="reelforge.animatic-v1", output=tmp_path).wait(timeout=60)
    (note,) = json.loads((auto.local_dir / "manifest.json").read_text())["adaptations"]
    assert (note["fit"], note["asked"], note["how"]) == ("crop", False, "scaled to 128x128, then 56 px cut off the top and bottom")


def test_show_without_a_display_or_player_says_why_and_where_the_video_is(tmp_path, monkeypatch):
    from reelforge import NoPlayerError

    if sys.platform in ("darwin", "win32"):
        pytest.skip("DISPLAY and xdg-open are how Linux desktops open files")
    job = Client().start(VideoRequest(text="a bell", **TINY), model="reelforge.animatic-v1", output=tmp_path / "o").wait(timeout=60)
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    opener = bin_dir / "xdg-open"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    def fake_opener(status, says=""):
        opener.write_text(f"#!/bin/sh\necho \"$1\" >> {calls}\n{'echo ' + repr(says) + ' >&2' if says else ''}\nexit {status}\n")
        opener.chmod(0o755)

    fake_opener(0)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(NoPlayerError) as err:
        job.show()
    assert err.value.path == job.video_path and not calls.exists()  # nothing was handed a file it cannot show
    assert str(err.value) == f"nothing opened the video: this session has no display (DISPLAY and WAYLAND_DISPLAY are unset); the video is at {job.video_path}"
    monkeypatch.setenv("DISPLAY", ":99")
    fake_opener(3, "xdg-open: no method available for opening the file")
    with pytest.raises(NoPlayerError, match=r"xdg-open exited with status 3 \(xdg-open: no method available for opening the file\); the video is at "):
        job.show()
    fake_opener(0)
    assert job.show() == job.video_path
    assert calls.read_text().splitlines() == [str(job.video_path)] * 2


def test_library_logs_never_reach_the_callers_stderr(tmp_path):
    code = (
        "import logging, numpy as np, reelforge\n"
        "from reelforge.request.limits import LOCAL, ModelSpec\n"
        "class Boom(reelforge.Engine):\n"
        "    engine_id = 'test-boom-stderr'\n"
        "    @classmethod\n"
        "    def models(cls): return [ModelSpec('test.boom-stderr', 'test-boom-stderr', 'raises', LOCAL)]\n"
        "    def render_shot(self, shot, progress):\n"
        "        raise ZeroDivisionError('division by zero')\n"
        "        yield\n"
        "reelforge.register_engine(Boom)\n"
        "req = reelforge.VideoRequest(text='x', duration_s=1, fps=8, width=128, height=72)\n"
        "try:\n"
        f"    reelforge.Client().start(req, model='test.boom-stderr', output={str(tmp_path / 'o')!r}).wait(timeout=60)\n"
        "except reelforge.JobFailedError as exc:\n"
        "    print(exc.failure_message)\n"
        "print([type(h).__name__ for h in logging.getLogger('reelforge').handlers])\n"
    )
    env = {**os.environ, "REELFORGE_HOME": str(tmp_path / "home")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # before, Python's last-resort handler printed the job's traceback here
    assert run.stdout.splitlines() == ["the engine failed with ZeroDivisionError: division by zero (traceback in the log)", "['NullHandler']"]


def test_client_jobs_filters_counts_and_pages_embedded(tmp_path):
    client = Client(workers=0)  # recorded, never run: the listing is what is tested
    for text in ("a red kite", "a blue boat", "a kite at night"):
        client.start(VideoRequest(text=text, **TINY), model="reelforge.animatic-v1", output=tmp_path)
    client.start(VideoRequest(text="a boat", duration_s=6, fps=24), model="amazon.nova-reel-v1:1", output=tmp_path)
    page = client.jobs(limit=3)
    assert (len(page), page.total, page.offset) == (3, 4, 0) and page.next_token is not None
    assert [j.prompts for j in page.next()] == [["a red kite"]] and page.next().next_token is None
    assert [j.prompts[0] for j in client.jobs(q="KITE")] == ["a kite at night", "a red kite"]
    assert [j.model_id for j in client.jobs(model="amazon.nova-reel-v1:1")] == ["amazon.nova-reel-v1:1"]
    assert client.jobs(status="failed") == [] and client.jobs(status="failed").total == 0

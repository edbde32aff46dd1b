"""The engine door for remote engines and resumable work: coroutine engines followed many at once on
one event loop, and a checkpoint folder that an attempt leaves for the next one."""

import asyncio
import time

import numpy as np

from reelforge import Client, Engine, JobStatus, ShotOutput, VideoRequest
from reelforge.client.embedded import embedded_runtime
from helpers import engines_registered
from reelforge.request.limits import LOCAL, ModelSpec

TINY = dict(duration_s=1, fps=8, width=128, height=72)


def _frames(shot, value=50):
    return [np.full((shot.height, shot.width, 3), value, np.uint8) for _ in range(shot.frame_count)]


class WaitingEngine(Engine):
    """A remote engine's shape: each render awaits until ``expected`` renders are all in flight
    (an asyncio.Event), then returns; it records when each started and ended."""

    engine_id = "test-waiting"
    expected = 0
    spans: dict = {}
    threads: set = set()
    _started = 0
    _all_in: asyncio.Event | None = None

    @classmethod
    def models(cls):
        return [ModelSpec("test.waiting", "test-waiting", "awaits the others", LOCAL)]

    async def render(self, shot, ctx):
        import threading

        cls = WaitingEngine
        if cls._all_in is None:
            cls._all_in = asyncio.Event()
        start = time.monotonic()
        cls.threads.add(threading.current_thread().name)
        cls._started += 1
        if cls._started == cls.expected:
            cls._all_in.set()
        await asyncio.wait_for(cls._all_in.wait(), timeout=30)  # alone, it would wait out the timeout and fail
        ctx.progress(1, 1, "fetched")
        cls.spans[shot.text] = (start, time.monotonic())
        return ShotOutput(frames=_frames(shot))


class ForeverEngine(Engine):
    """Awaits something that never comes: only a cancel ends it."""

    engine_id = "test-forever"
    entered: list = []

    @classmethod
    def models(cls):
        return [ModelSpec("test.forever", "test-forever", "never returns", LOCAL)]

    async def render(self, shot, ctx):
        ForeverEngine.entered.append(shot.text)
        await asyncio.Event().wait()


def test_one_worker_follows_many_coroutine_jobs_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("REELFORGE_WORKERS", "0")
    n = 6
    WaitingEngine.expected, WaitingEngine._started, WaitingEngine._all_in = n, 0, None
    WaitingEngine.spans.clear()
    WaitingEngine.threads.clear()
    client = Client()
    jobs = [client.start(VideoRequest(text=f"job {k}", **TINY), model="test.waiting", output=tmp_path) for k in range(n)]
    runtime = embedded_runtime()
    assert runtime.run_until_idle() == n  # one worker (this thread) claimed them all
    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * n
    starts = [s for s, _ in WaitingEngine.spans.values()]
    ends = [e for _, e in WaitingEngine.spans.values()]
    assert len(WaitingEngine.spans) == n and max(starts) < min(ends)  # every render was in flight before any ended
    assert WaitingEngine.threads == {"reelforge-lane"}  # all awaited on the one event loop
    assert all(j.record.progress == 1.0 and j.record.metadata["engine"] == "test-waiting" for j in jobs)


def test_canceling_a_coroutine_job_stops_its_await(tmp_path, monkeypatch):
    ForeverEngine.entered.clear()
    job = Client(workers=1).start(VideoRequest(text="never", **TINY), model="test.forever", output=tmp_path)
    deadline = time.monotonic() + 30
    while not ForeverEngine.entered and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ForeverEngine.entered == ["never"]
    job.cancel()
    job_status = None
    while time.monotonic() < deadline:
        job_status = job.status
        if job_status.done:
            break
        time.sleep(0.05)
    assert job_status is JobStatus.CANCELED


def test_a_stopping_worker_puts_its_coroutine_units_back_in_the_queue(tmp_path):
    ForeverEngine.entered.clear()
    job = Client(workers=1).start(VideoRequest(text="parked", **TINY), model="test.forever", output=tmp_path)
    deadline = time.monotonic() + 30
    while not ForeverEngine.entered and time.monotonic() < deadline:
        time.sleep(0.02)
    runtime = embedded_runtime()
    assert runtime.lane_busy
    runtime.stop()  # the lane cancels the await; the unit goes back, its attempt given back
    back = job.record
    assert (back.status, back.attempts, back.stage) == (JobStatus.QUEUED, 0, "queued again: its worker stopped")
    assert not runtime.lane_busy


class ResumingEngine(Engine):
    """Writes its progress to the checkpoint as it goes; its first attempt dies half-way (a GPU
    falling over); the next attempt reads the checkpoint and goes on from there."""

    engine_id = "test-resuming"
    seen: list = []

    @classmethod
    def models(cls):
        return [ModelSpec("test.resuming", "test-resuming", "resumes from its checkpoint", LOCAL)]

    def render(self, shot, ctx):
        saved = ctx.checkpoint / "latents.npy"
        ResumingEngine.seen.append((ctx.checkpoint, saved.exists()))
        if not saved.exists():
            np.save(saved, np.arange(4))
            raise RuntimeError("GPU fell over half-way")
        assert np.load(saved).tolist() == [0, 1, 2, 3]
        return ShotOutput(frames=_frames(shot, 99))


registered_engines = engines_registered(WaitingEngine, ForeverEngine, ResumingEngine)


def test_a_checkpoint_written_in_one_attempt_is_seen_by_the_next(tmp_path):
    ResumingEngine.seen.clear()
    shots = [{"text": "a", "duration_s": 1}, {"text": "b", "duration_s": 1}]
    job = Client(workers=1).start(VideoRequest(shots=shots, fps=8, width=128, height=72), model="test.resuming", output=tmp_path)
    job.wait(timeout=60)
    assert job.status is JobStatus.COMPLETED and job.record.attempts == 1
    by_folder = {}
    for folder, existed in ResumingEngine.seen:
        by_folder.setdefault(folder, []).append(existed)
    assert sorted(by_folder.values()) == [[False, True], [False, True]]  # each shot: written once, found by its retry
    assert len(by_folder) == 2  # one checkpoint per shot
    assert not any(f.exists() for f in by_folder)  # removed once the shots ended
    assert not next(iter(by_folder)).parent.exists()  # and nothing left of the job's .checkpoints folder


OLD_PLUGIN = '''
import numpy as np
from reelforge import Engine
from reelforge.request.limits import LOCAL, ModelSpec


class OldEngine(Engine):
    """A plugin written against the first door: render_shot and nothing else."""

    engine_id = "old-plugin"

    @classmethod
    def models(cls):
        return [ModelSpec("old.plugin", "old-plugin", "render_shot only", LOCAL)]

    def render_shot(self, shot, progress):
        for i in range(shot.frame_count):
            progress(i, shot.frame_count, "drawing")
            yield np.full((shot.height, shot.width, 3), 10 * (i + 1), np.uint8)
'''


def test_an_old_plugin_installed_by_entry_point_still_works(tmp_path, monkeypatch):
    """A package installed with an entry point in the reelforge.engines group, the way third parties ship engines."""
    import sys

    from reelforge import engines
    from reelforge import media

    site = tmp_path / "site"
    (site / "old_reelforge_plugin").mkdir(parents=True)
    (site / "old_reelforge_plugin" / "__init__.py").write_text(OLD_PLUGIN)
    dist = site / "old_reelforge_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: old-reelforge-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[reelforge.engines]\nold-plugin = old_reelforge_plugin:OldEngine\n")
    monkeypatch.syspath_prepend(str(site))
    engines._entry_point_engines.cache_clear()
    try:
        assert "old-plugin" in engines.engine_classes()
        job = Client(workers=1).start(VideoRequest(text="x", **TINY), model="old.plugin", output=tmp_path / "o").wait(timeout=60)
        assert job.status is JobStatus.COMPLETED and job.record.engine == "old-plugin"
        frames = list(media.read_frames(job.local_dir / "output.mp4"))
        assert len(frames) == 8 and abs(int(frames[7][36, 64, 0]) - 80) <= 3
    finally:
        sys.modules.pop("old_reelforge_plugin", None)
        engines._entry_point_engines.cache_clear()

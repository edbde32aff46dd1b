"""Engines for the fault tests, registered the way a third-party engine would be, in worker processes too.

A worker process imports this module first (``faults.Worker(..., preload="fault_engines")``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np

from reelforge import Engine, register_engine
from reelforge.engines.diffusers.engine import DiffusersEngine
from reelforge.request.limits import LOCAL, ModelSpec


@register_engine
class PacedEngine(Engine):
    """Plain frames at a set pace (REELFORGE_TEST_FRAME_S seconds each), so a kill lands mid-job."""

    engine_id = "test-paced"
    summary = "frames at a fixed pace"

    @classmethod
    def models(cls):
        return [ModelSpec("test.paced", "test-paced", "frames at a fixed pace", LOCAL)]

    def render_shot(self, shot, progress):
        pace = float(os.environ.get("REELFORGE_TEST_FRAME_S", "0.02"))
        for i in range(shot.frame_count):
            progress(i, shot.frame_count, "render")
            time.sleep(pace)
            yield np.full((shot.height, shot.width, 3), 30 * (shot.index + 1) % 256, np.uint8)


@register_engine
class DiesWhileLoadingEngine(PacedEngine):
    """Kills its own process while "loading" as long as REELFORGE_TEST_DEATHS (a file) holds a number > 0,
    counting it down: a worker that dies at start-up, before the engine ever starts on a job."""

    engine_id = "test-dies-loading"

    @classmethod
    def models(cls):
        return [ModelSpec("test.dies-loading", "test-dies-loading", "dies while loading", LOCAL)]

    def __init__(self, options=None):
        counter = Path(os.environ["REELFORGE_TEST_DEATHS"])
        left = int(counter.read_text() or 0)
        if left > 0:
            counter.write_text(str(left - 1))
            os.kill(os.getpid(), signal.SIGKILL)
        super().__init__(options)


@register_engine
class FailsSecondShotEngine(PacedEngine):
    """Its second shot fails for good (a ReelforgeError is not retried): a multi-shot job that fails."""

    engine_id = "test-fails-shot"

    @classmethod
    def models(cls):
        return [ModelSpec("test.fails-shot", "test-fails-shot", "fails at shot 2", LOCAL)]

    def render_shot(self, shot, progress):
        from reelforge.errors import ReelforgeError

        if shot.index == 1:
            raise ReelforgeError("shot 2 cannot be drawn")
        yield from super().render_shot(shot, progress)


@register_engine
class KilledOnceEngine(PacedEngine):
    """Saves its work to the shot's checkpoint, then kills its own process (attempt 1); the next
    attempt finds the checkpoint and writes what it read to REELFORGE_TEST_SEEN (a file)."""

    engine_id = "test-killed-once"

    @classmethod
    def models(cls):
        return [ModelSpec("test.killed-once", "test-killed-once", "killed after saving its checkpoint", LOCAL)]

    def render(self, shot, ctx):
        from reelforge import ShotOutput

        saved = ctx.checkpoint / "latents.txt"
        if not saved.exists():
            saved.write_text(f"attempt 1 of {ctx.checkpoint.name}")
            os.kill(os.getpid(), signal.SIGKILL)
        Path(os.environ["REELFORGE_TEST_SEEN"]).write_text(saved.read_text())
        return ShotOutput(frames=super().render_shot(shot, ctx.progress))


@register_engine
class DiesAtDecodeEngine(DiffusersEngine):
    """The diffusers engine on the tiny LTX-Video in REELFORGE_LTX_VIDEO_WEIGHTS, killed by SIGKILL as its
    VAE decode starts while REELFORGE_TEST_DEATHS (a file) holds a number > 0 (counted down). Every
    transformer forward appends this process's id to REELFORGE_TEST_FORWARDS, so a test can count the
    denoising each process did."""

    engine_id = "test-dies-at-decode"

    @classmethod
    def models(cls):
        from reelforge.engines.diffusers.families import KNOWN_MODELS, model_limits

        return [ModelSpec("test.dies-at-decode", cls.engine_id, "tiny LTX-Video, killed as it decodes",
                          model_limits(KNOWN_MODELS["ltx-video"]),
                          engine_options={"model": "ltx-video", "num_inference_steps": 2, "max_sequence_length": 16})]

    def _ensure_loaded(self):
        loaded = super()._ensure_loaded()
        transformer = self._pipes["t2v"].transformer
        if not getattr(transformer, "_counted", False):
            forwards = Path(os.environ["REELFORGE_TEST_FORWARDS"])

            def count(*_):  # a forward hook that returns something replaces the output: return None
                with forwards.open("a") as f:
                    f.write(f"{os.getpid()}\n")

            transformer.register_forward_hook(count)
            transformer._counted = True
        return loaded

    def _decode_latents(self, *args):
        counter = Path(os.environ["REELFORGE_TEST_DEATHS"])
        left = int(counter.read_text() or 0)
        if left > 0:
            counter.write_text(str(left - 1))
            os.kill(os.getpid(), signal.SIGKILL)
        return super()._decode_latents(*args)

"""A test engine for the multi-GPU tests, installed in worker processes as a plugin is: through an entry point.

``install(folder)`` writes a distribution's metadata there with a ``reelforge.engines`` entry point
naming ``GpuEngine``; a process with that folder (and this one's) on its path finds the engine the
way it finds any installed plugin. The engine writes what it saw to REELFORGE_TEST_GPU_LOG (a
folder): ``loads`` gets a line per engine loaded (pid, CUDA_VISIBLE_DEVICES, model), and
``<prompt>.json`` what the worker that rendered that prompt saw. A prompt starting with "wait"
blocks until ``<prompt>.go`` exists there (the test holds a worker busy with it).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from reelforge import Engine, EngineOptions, register_engine
from reelforge.request.limits import LOCAL, ModelSpec


class GpuOptions(EngineOptions):
    model: str = "x"


@register_engine
class GpuEngine(Engine):
    """Plain frames; records which process, device and model made them."""

    engine_id = "test-gpu"
    summary = "records its device"
    Options = GpuOptions

    @classmethod
    def models(cls):
        return [ModelSpec(f"test.gpu-{m}", "test-gpu", f"test model {m}", LOCAL, engine_options={"model": m}) for m in ("x", "y")]

    def __init__(self, options=None):
        super().__init__(options)
        with open(_log() / "loads", "a") as f:
            f.write(f"{os.getpid()} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')} {self.options.model}\n")

    def render_shot(self, shot, progress):
        seen = {"pid": os.getpid(), "device": os.environ.get("CUDA_VISIBLE_DEVICES"), "model": self.options.model}
        (_log() / f"{shot.text}.json").write_text(json.dumps(seen))
        gate = _log() / f"{shot.text}.go"
        while shot.text.startswith("wait") and not gate.exists():
            progress(0, shot.frame_count, "waiting for the test")
            time.sleep(0.05)
        for i in range(shot.frame_count):
            progress(i, shot.frame_count, "render")
            yield np.full((shot.height, shot.width, 3), 40, np.uint8)


def _log() -> Path:
    return Path(os.environ["REELFORGE_TEST_GPU_LOG"])


def install(folder: Path) -> Path:
    """Make ``folder`` hold an installed distribution whose entry point is GpuEngine; return it."""
    info = folder / "reelforge_gpu_test-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: reelforge-gpu-test\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[reelforge.engines]\ntest-gpu = gpu_engines:GpuEngine\n")
    return folder

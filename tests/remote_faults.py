"""Faults for B's worker process in tests/test_remote.py, installed before the worker starts.

TEST_CRASH_FLAG (a file): kill -9 this process right after the upstream create, before its id is
saved, once (the file is removed first, so the restarted worker goes on). TEST_IGNORE_KEYS: send no
Idempotency-Key, as vLLM-Omni and SGLang Diffusion ignore it, so only the list lookup can find the job.
"""

from __future__ import annotations

import os
import signal

from reelforge.engines import remote
from reelforge.engines.openai_videos import OpenAIVideosEngine

_flag = os.environ.get("TEST_CRASH_FLAG")


def _crash(job_id: str) -> None:
    if _flag and os.path.exists(_flag):
        os.unlink(_flag)
        os.kill(os.getpid(), signal.SIGKILL)


remote._after_create = _crash

if os.environ.get("TEST_IGNORE_KEYS"):
    _create = OpenAIVideosEngine.create
    OpenAIVideosEngine.create = lambda self, forward, job, token: _create(self, forward, job, f"{token}-{os.getpid()}")

"""``reelforge worker --gpus``: one worker process per GPU, each seeing only its own device.

Replica data parallelism: every child is a plain ``reelforge worker`` started with
``CUDA_VISIBLE_DEVICES`` set to one device, so torch sees that GPU as ``cuda:0`` and the child keeps
its model loaded there; the job log's claims spread the jobs and send each to a worker that holds
its model (stores.py, claim). This process only starts, watches and stops them: a child that exits
is reported and never restarted; SIGINT or SIGTERM here is passed on to every child once (each puts
its running units back in the queue), a second one kills them.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

from reelforge.errors import ConfigError

log = logging.getLogger("reelforge.gpus")

ALLOWED = "all, or a comma-separated list of device indexes (0,1) or GPU/MIG UUIDs (GPU-..., MIG-...)"
_DEVICE = re.compile(r"\d+|(GPU|MIG)-[0-9A-Za-z./-]+")


def cuda_device_count() -> int:
    """How many CUDA devices torch sees here; ConfigError when torch is not installed."""
    try:
        import torch
    except ImportError:
        raise ConfigError("--gpus all counts the GPUs with torch, which is not installed here; list the devices instead, e.g. --gpus 0,1") from None
    return torch.cuda.device_count()


def parse_gpus(value: str, visible: str | None = None, count: Callable[[], int] = cuda_device_count) -> list[str]:
    """The device each worker gets (its CUDA_VISIBLE_DEVICES), from ``--gpus``.

    ``all`` is every device torch sees (none: an error). A list is taken as given, without asking
    torch (so it can name devices of another machine, or fake ones in tests), except that when this
    process's own CUDA_VISIBLE_DEVICES (``visible``) is set, indexes count within it, as torch's do.
    """
    text = value.strip()
    shown = visible.split(",") if visible else None
    if text == "all":
        n = count()
        if n == 0:
            raise ConfigError("--gpus all: torch sees no CUDA device here; list the devices to use, e.g. --gpus 0,1")
        return shown[:n] if shown else [str(i) for i in range(n)]
    devices = [d.strip() for d in text.split(",")]
    for d in devices:
        if not _DEVICE.fullmatch(d):
            raise ConfigError(f"--gpus {value!r}: {d!r} is not a device; allowed: {ALLOWED}")
    if len(set(devices)) < len(devices):
        raise ConfigError(f"--gpus {value!r} names a device twice; one worker per device")
    if shown:
        too_far = [d for d in devices if d.isdigit() and int(d) >= len(shown)]
        if too_far:
            raise ConfigError(f"--gpus {value!r}: CUDA_VISIBLE_DEVICES={visible} shows {len(shown)} device(s), indexes 0 to {len(shown) - 1}")
        devices = [shown[int(d)] if d.isdigit() else d for d in devices]
    return devices


@dataclass
class Child:
    device: str
    proc: subprocess.Popen
    stopped: bool = False  # asked to stop by this process

    def describe(self) -> str:
        return f"GPU {self.device} (pid {self.proc.pid})"


def _die_with_parent() -> None:
    """In a child, before exec: SIGTERM it if this process dies (Linux), so no worker runs on unwatched."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start(devices: list[str], args: list[str]) -> list[Child]:
    """One ``reelforge worker ARGS`` per device, each with CUDA_VISIBLE_DEVICES set to it.

    Each child has a session of its own, so a Ctrl-C in the terminal reaches only this process,
    which passes it on once."""
    children = []
    for device in devices:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": device}
        proc = subprocess.Popen([sys.executable, "-m", "reelforge", "worker", *args], env=env,
                                start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        children.append(Child(device, proc))
        log.info("worker on GPU %s started: pid %d", device, proc.pid)
    return children


def supervise(children: list[Child], echo: Callable[[str], None]) -> int:
    """Watch the children until all have ended; 1 if any ended with an error unasked, else 0."""
    signals = 0

    def on_signal(signum, frame):
        nonlocal signals
        signals += 1
        for c in children:
            if c.proc.poll() is None:
                c.stopped = True
                c.proc.send_signal(signal.SIGTERM if signals == 1 else signal.SIGKILL)
        if signals == 1:
            echo("stopping every GPU worker (their running jobs go back to the queue); Ctrl-C again kills them")

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    failed = False
    try:
        live = list(children)
        while live:
            for c in [c for c in live if c.proc.poll() is not None]:
                live.remove(c)
                failed |= _report(c, echo)
            time.sleep(0.2)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return 1 if failed else 0


def _report(c: Child, echo: Callable[[str], None]) -> bool:
    """Say how a child ended; True when it failed without being asked to stop."""
    rc = c.proc.returncode
    how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
    if c.stopped and rc in (0, -signal.SIGTERM, -signal.SIGKILL):
        line, failed = f"worker on {c.describe()} stopped", False
    elif rc == 0:
        line, failed = f"worker on {c.describe()} exited: nothing left to do", False
    else:
        line, failed = f"worker on {c.describe()} {how}; it is not restarted (the other GPU workers go on)", True
    (log.error if failed else log.info)("%s", line)
    echo(line)
    return failed

"""Measuring one pipeline call for bench_gpu_models.py: peak memory per phase, and a clock stamping each step."""

from __future__ import annotations

import gc
import re
import time
from pathlib import Path

GIB = 1024 ** 3


class Meter:
    """Peak memory of one phase. CUDA: the allocator's peak (torch.cuda.max_memory_allocated), weights
    included. CPU: the process's peak RSS (VmHWM, reset per phase) above its RSS before the row's pipeline
    was built, so that weights are counted and the Python runtime is not."""

    def __init__(self, cuda: bool):
        import torch

        self.torch, self.cuda, self.base = torch, cuda, 0
        if not cuda and not self._clear_refs():
            raise RuntimeError("the CPU peak-memory meter needs a writable /proc/self/clear_refs (Linux)")
        if not cuda:  # a fixed mmap threshold: freed tensors leave the RSS instead of staying in malloc's heap
            import ctypes

            ctypes.CDLL(None).mallopt(-3, 1024 * 1024)  # M_MMAP_THRESHOLD
        self.label = ("torch.cuda.max_memory_allocated" if cuda else
                      "peak RSS (VmHWM, reset per phase) above the RSS before the row's build, "
                      "blocks over 1 MiB mmapped")
        # a GPU's steps by the wall clock (after a sync); on a shared CPU the wall clock carries the other
        # processes' load, so the smoke counts this process's CPU seconds (all its threads) instead
        self.clock = time.perf_counter if cuda else time.process_time
        self.clock_label = ("wall clock after torch.cuda.synchronize()" if cuda else
                            "this process's CPU seconds (time.process_time), not wall time: the machine is shared")

    @staticmethod
    def _clear_refs() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    @staticmethod
    def _status_kib(field: str) -> int:
        return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        else:
            self._clear_refs()

    def peak_gib(self) -> float:
        if self.cuda:
            return self.torch.cuda.max_memory_allocated() / GIB
        return max(0, self._status_kib("VmHWM") - self.base) / 2 ** 20

    def free(self) -> None:
        """Release what the last row held; on CPU, take the RSS left as the next row's base."""
        gc.collect()
        if self.cuda:
            self.torch._dynamo.reset()  # compiled blocks of the last row must not pin its weights
            self.torch.cuda.empty_cache()
        else:
            self.base = self._status_kib("VmRSS")


class StepClock:
    """Stands in for the pipeline's progress bar: stamps the end of each step (after a device sync) and
    takes the steps' memory peak at the last one, so that what follows in the call is the decode."""

    def __init__(self, total: int, meter: Meter):
        self.total, self.meter = total, meter
        self.marks: list[float] = []
        self.steps_peak: float | None = None

    def __call__(self, iterable=None, total=None):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def update(self, n: int = 1) -> None:
        self.meter.sync()
        self.marks.append(self.meter.clock())
        if len(self.marks) == self.total:
            self.steps_peak = self.meter.peak_gib()
            self.meter.reset()

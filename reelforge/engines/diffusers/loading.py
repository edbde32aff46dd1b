"""Loading a diffusers pipeline: the device and dtype, the weights once for every task, quiet progress bars.

torch and diffusers are handed in (or imported inside functions) so importing this module stays light.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from reelforge.errors import EngineError
from reelforge.engines.diffusers.families import KNOWN_MODELS
from reelforge.engines.diffusers.options import DiffusersOptions, Resolved
from reelforge.engines.diffusers.profiles import SpeedOptions
from reelforge.engines.diffusers.speed import apply_speed


def device_and_dtype(options: DiffusersOptions, torch) -> tuple[str, Any]:
    """The device and torch dtype ``options`` ask for, "auto" resolved to what this machine has."""
    device = options.device
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise EngineError("device 'cuda' asked for, but torch sees no CUDA GPU (torch.cuda.is_available() is False)")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise EngineError("device 'mps' asked for, but torch.backends.mps.is_available() is False")
    dtype: str = options.dtype
    if dtype == "auto":
        known = KNOWN_MODELS.get(options.model)
        # bf16 on GPUs: the T5/UMT5 text encoders overflow in fp16; CPU kernels are fastest in fp32
        if device == "cuda":
            dtype = (known.gpu_dtype if known and known.gpu_dtype else
                     "bfloat16" if torch.cuda.is_bf16_supported() else "float16")
        elif device == "mps":
            dtype = "bfloat16"
        else:
            dtype = "float32"
    return device, getattr(torch, dtype)


def load_pipelines(o: DiffusersOptions, r: Resolved, speed: SpeedOptions, device: str, dtype) -> tuple[dict, list, Any]:
    """Read ``r``'s weights once and build a pipeline per task over the same modules, placed as ``speed`` says.

    Returns the pipelines by task (plus "upsample" for the two-stage recipe), the speed report and the
    pipeline the weights were loaded into."""
    import diffusers
    import torch

    if device == "cpu":
        torch.set_num_threads(o.threads or usable_cpus())
    extra: dict[str, Any] = {}
    if r.family.float32_vae and dtype != torch.float32:
        extra["vae"] = diffusers.AutoencoderKLWan.from_pretrained(r.weights.path, subfolder="vae",
                                                                  dtype=torch.float32, local_files_only=True)
    with quiet_loading():
        try:
            pipe = diffusers.DiffusionPipeline.from_pretrained(r.weights.path, dtype=dtype, local_files_only=True,
                                                               **extra)
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot load {o.model} from {r.weights.path}: {str(exc).splitlines()[0]}") from exc
    speed_report = apply_speed(pipe, speed, device, r.family.name)  # places the pipeline (offload or .to)
    if r.family.guidance is None and o.guidance_scale is not None and getattr(pipe, "guider", None) is not None:
        pipe.guider = pipe.guider.new(guidance_scale=o.guidance_scale)
    pipes = {}
    for task, cls_name in r.tasks.items():  # one set of modules, no second copy of the weights
        pipes[task] = pipe if type(pipe).__name__ == cls_name else same_components(pipe, getattr(diffusers, cls_name))
        pipes[task].set_progress_bar_config(disable=True)
        if r.family.name == "hunyuanvideo15" and o.max_sequence_length:  # text lengths are attributes there
            pipes[task].tokenizer_max_length = pipes[task].tokenizer_2_max_length = o.max_sequence_length
    if o.two_stage:
        from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

        upsampler = LTX2LatentUpsamplerModel.from_pretrained(r.weights.path, subfolder="latent_upsampler",
                                                             dtype=dtype, local_files_only=True)
        # the VAE is placed (or offloaded) already; only the upsampler moves
        pipes["upsample"] = diffusers.LTX2LatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=upsampler.to(device))
        pipes["upsample"].set_progress_bar_config(disable=True)
    return pipes, speed_report, pipe


def same_components(pipe, cls):
    """A pipeline of class ``cls`` over ``pipe``'s loaded modules (and its registered config such as boundary_ratio)."""
    params = inspect.signature(cls.__init__).parameters
    parts = {k: v for k, v in pipe.components.items() if k in params}
    parts.update({k: v for k, v in pipe.config.items() if k in params and k not in parts and not k.startswith("_")
                  and not isinstance(v, (list, tuple))})
    return cls(**parts)


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's cpuset), not the host's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class quiet_loading:
    """Silence diffusers'/transformers' loading progress bars (library code never prints)."""

    def __enter__(self):
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        self._was = [m.is_progress_bar_enabled() for m in (dlog, tlog)]
        for m in (dlog, tlog):
            m.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        for m, was in zip((dlog, tlog), self._was):
            if was:
                m.enable_progress_bar()
        return False

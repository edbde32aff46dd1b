"""Applying the diffusers engine's speed and memory profile (profiles.py) to a loaded pipeline, and reading back what took.

``apply_speed`` applies them to a loaded pipeline and reports, per requested
feature, what the pipeline now holds (hooks, flags, dtypes, compiled blocks), read back from it
rather than copied from the request. A requirement this machine lacks (CUDA, FP8 support, a kernel
package, torchrun) skips that feature with the reason and a warning; nothing here raises for it,
because the machine that checks a job at submit is not always the one that runs it.

torch and diffusers are imported inside functions only.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any

from reelforge.engines.diffusers.profiles import (
    AUTO, CP_FAMILIES, PORTABLE_ATTENTION, CacheOptions, ContextParallelOptions, GroupOffloadOptions, SpeedOptions,
)
from reelforge.engines.diffusers.cache import cache_stats, denoisers as denoisers_of, enable_cache, hook_names, is_cache_hook

__all__ = ["apply_speed", "cache_stats", "install_model_offload"]

log = logging.getLogger("reelforge.engines.diffusers")

# ------------------------------------------------------------------ applying


def _has_accelerator(device: str) -> bool:
    import torch

    return torch.device(device).type != "cpu"


def _entry(feature: str, requested: Any, applied: bool, text: str) -> dict[str, Any]:
    if hasattr(requested, "model_dump"):
        requested = requested.model_dump(exclude_none=True)
    entry = {"feature": feature, "requested": requested, "applied": applied, "detail" if applied else "reason": text}
    if not applied:
        log.warning("speed: %s=%r not applied: %s", feature, requested, text)
    return entry


def apply_speed(pipe, speed: SpeedOptions, device: str, family: str) -> list[dict[str, Any]]:
    """Apply ``speed`` to ``pipe`` (also placing it on ``device``); one report entry per requested feature.

    Order: attention and FP8 storage on the modules as loaded, then placement (offload or .to), FP8
    quantization on the placed weights, context parallelism, the cache hooks, regional compile last
    (so that it traces the hooked blocks), then the VAE flags.
    """
    asked = speed.requested()
    report: list[dict[str, Any]] = []
    for name in ("attention", "fp8_storage"):
        if name in asked:
            report.append(_APPLY[name](pipe, asked[name], device, family))
    report.extend(_place(pipe, speed, device))
    for name in ("fp8_quant", "context_parallel", "cache", "compile", "vae_tiling", "vae_slicing"):
        if name in asked:
            report.append(_APPLY[name](pipe, asked[name], device, family))
    return report


def _attention(pipe, wanted: str, device: str, family: str) -> dict[str, Any]:
    from diffusers.models.attention_dispatch import _check_attention_backend_requirements, AttentionBackendName

    name, why = (_best_attention(device) if wanted == AUTO else (wanted, None))
    try:
        _check_attention_backend_requirements(AttentionBackendName(name))
        if name.endswith("_hub"):
            raise RuntimeError(f"{name} downloads its kernel from the Hugging Face Hub; "
                               "install the kernel's package and name its local backend instead")
        if name not in PORTABLE_ATTENTION and not device.startswith("cuda"):
            raise RuntimeError(f"{name} runs on CUDA only; the device is {device} (there: "
                               f"{', '.join(sorted(PORTABLE_ATTENTION))})")
        for d in denoisers_of(pipe):
            d.set_attention_backend(name)
    except (RuntimeError, ValueError) as exc:
        return _entry("attention", wanted, False, str(exc).splitlines()[0])
    held = {str(getattr(p._attention_backend, "value", p._attention_backend))
            for d in denoisers_of(pipe) for p in _processors(d) if hasattr(p, "_attention_backend")}
    if held != {name}:
        return _entry("attention", wanted, False, f"the attention processors hold {sorted(held) or 'no backend'}, "
                      f"not {name}: this model's attention does not dispatch through diffusers' backends")
    detail = f"{name} in every attention processor" + (f" ({why})" if why else "")
    return _entry("attention", wanted, True, detail)


def _processors(module) -> list:
    return [m.processor for m in module.modules() if getattr(m, "processor", None) is not None]


def _best_attention(device: str) -> tuple[str, str]:
    """The fastest attention backend installed here for ``device``, and why it was chosen."""
    if not device.startswith("cuda"):
        return "native", f"auto on {device}: torch SDPA, the kernels need CUDA"
    import torch
    from diffusers.models import attention_dispatch as ad

    major, minor = torch.cuda.get_device_capability(torch.device(device))
    if ad._CAN_USE_FLASH_ATTN_3 and major == 9:
        return "_flash_3", "auto: FlashAttention 3 on a Hopper GPU"
    if ad._CAN_USE_FLASH_ATTN:
        return "flash", "auto: flash-attn installed"
    if ad._CAN_USE_SAGE_ATTN:
        return "sage", "auto: sageattention installed"
    return "native", f"auto on sm{major}{minor}: torch SDPA picks its own fastest kernel (no flash-attn or sage installed)"


def _fp8_storage(pipe, wanted: bool, device: str, family: str) -> dict[str, Any]:
    import torch

    denoisers = denoisers_of(pipe)
    if not denoisers:
        return _entry("fp8_storage", wanted, False, "the pipeline has no transformer to cast")
    compute = denoisers[0].dtype
    for d in denoisers:
        d.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute)
    params = [p for d in denoisers for p in d.parameters()]
    fp8 = sum(p.dtype == torch.float8_e4m3fn for p in params)
    if not fp8:
        return _entry("fp8_storage", wanted, False, "no parameter is stored in float8_e4m3fn after casting")
    return _entry("fp8_storage", wanted, True, f"{fp8} of {len(params)} transformer parameter tensors stored as "
                  f"float8_e4m3fn, computed in {str(compute).removeprefix('torch.')}")


def _place(pipe, speed: SpeedOptions, device: str) -> list[dict[str, Any]]:
    """Put the pipeline on ``device``: offloaded as asked (reported), or moved whole (not a feature)."""
    report = []
    if speed.offload:
        if not _has_accelerator(device):
            report.append(_entry("offload", speed.offload, False, f"needs an accelerator; the device is {device}"))
        else:
            report.append(_offload(pipe, speed.offload, device))
            return report
    if speed.group_offload is not None:
        entry = _group_offload(pipe, speed.group_offload, device)
        report.append(entry)
        if entry["applied"]:
            return report
    pipe.to(device)
    return report


def _offload(pipe, kind: str, device: str) -> dict[str, Any]:
    if kind == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
        hooked = [n for n, m in pipe.components.items()
                  if hasattr(m, "modules") and any(hasattr(sub, "_hf_hook") for sub in m.modules())]
        return _entry("offload", kind, bool(hooked), f"sequential: accelerate hooks in {', '.join(hooked)}, "
                      "weights moved per layer" if hooked else "no module holds an offload hook")
    chain = install_model_offload(pipe, device)
    if not chain:
        return _entry("offload", kind, False, "no module holds an offload hook")
    return _entry("offload", kind, True, f"model: one component on {device} at a time, in the order "
                  f"{' -> '.join(chain)}; the others leave it before each denoising step")


def install_model_offload(pipe, device: str) -> list[str]:
    """Model CPU offload for the pipeline about to run, in its own order; returns the hooked components.

    diffusers offloads a component only when the next one in ``model_cpu_offload_seq`` starts; an
    image-to-video pipeline runs the VAE (to encode the image) before the transformer, so the VAE
    would stay on the GPU through the denoise. A pre-hook on each transformer sends every other
    hooked component back to the CPU before each denoising call. Pipelines sharing modules must call
    this again before each runs: the hooks live on the shared modules.
    """
    pipe.enable_model_cpu_offload(device=device)
    denoisers = denoisers_of(pipe)
    names = [n for n, m in pipe.components.items() if hasattr(m, "_hf_hook")]
    idle = [m for n, m in pipe.components.items() if hasattr(m, "_hf_hook") and all(m is not d for d in denoisers)]
    for d in denoisers:
        d._reelforge_idle = idle
        if not getattr(d, "_reelforge_idle_hook", None):
            d._reelforge_idle_hook = d.register_forward_pre_hook(_send_idle_to_cpu)
    order = [n for n in (pipe.model_cpu_offload_seq or "").split("->") if n in names]
    return order + [n for n in names if n not in order]


def _send_idle_to_cpu(module, args) -> None:
    # unconditional: moving a module already on the CPU costs a walk over its parameters, far less than a step
    for m in getattr(module, "_reelforge_idle", ()):
        m.to("cpu")


def _group_offload(pipe, opts: GroupOffloadOptions, device: str) -> dict[str, Any]:
    if not _has_accelerator(device):
        return _entry("group_offload", opts, False, f"needs an accelerator to onload to; the device is {device}")
    use_stream = opts.use_stream and device.startswith("cuda")
    blocks = opts.num_blocks_per_group if opts.offload_type == "block_level" else None
    pipe.enable_group_offload(onload_device=device, offload_type=opts.offload_type, num_blocks_per_group=blocks,
                              use_stream=use_stream)
    from diffusers.hooks.group_offloading import _is_group_offload_enabled

    held = [n for n, m in pipe.components.items() if hasattr(m, "parameters") and _is_group_offload_enabled(m)]
    if not held:
        return _entry("group_offload", opts, False, "no component holds a group offload hook")
    note = "" if use_stream == opts.use_stream else " (no CUDA streams on this device)"
    return _entry("group_offload", opts, True, f"{opts.offload_type} groups onloaded to {device}, streams "
                  f"{'on' if use_stream else 'off'}{note}: {', '.join(held)}")


def _fp8_quant(pipe, wanted: bool, device: str, family: str) -> dict[str, Any]:
    import torch

    if not device.startswith("cuda"):
        return _entry("fp8_quant", wanted, False, f"torchao FP8 needs a CUDA GPU; the device is {device}")
    capability = torch.cuda.get_device_capability(torch.device(device))
    if capability < (8, 9):
        return _entry("fp8_quant", wanted, False, f"FP8 matmuls need compute capability 8.9 or more (Ada, Hopper); "
                      f"this GPU is sm{capability[0]}{capability[1]}")
    if importlib.util.find_spec("torchao") is None:
        return _entry("fp8_quant", wanted, False, "torchao is not installed: pip install torchao")
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_

    try:
        for d in denoisers_of(pipe):
            quantize_(d, Float8DynamicActivationFloat8WeightConfig())
    except (RuntimeError, NotImplementedError, TypeError) as exc:  # e.g. weights offloaded to the CPU
        return _entry("fp8_quant", wanted, False, f"torchao could not quantize: {str(exc).splitlines()[0]}")
    linears = [m for d in denoisers_of(pipe) for m in d.modules() if isinstance(m, torch.nn.Linear)]
    quantized = sum(type(m.weight).__name__ != "Parameter" for m in linears)
    if not quantized:
        return _entry("fp8_quant", wanted, False, "no linear layer holds a quantized weight after quantize_")
    kinds = sorted({type(m.weight).__name__ for m in linears if type(m.weight).__name__ != "Parameter"})
    return _entry("fp8_quant", wanted, True, f"{quantized} of {len(linears)} linear layers hold {', '.join(kinds)} "
                  "weights (dynamic FP8 activations)")


def _context_parallel(pipe, opts: ContextParallelOptions, device: str, family: str) -> dict[str, Any]:
    world = int(os.environ.get("WORLD_SIZE", "0") or 0)
    want = opts.ulysses_degree * opts.ring_degree
    if family not in CP_FAMILIES:
        return _entry("context_parallel", opts, False, f"diffusers has no context-parallel plan for {family} "
                      f"(only {', '.join(CP_FAMILIES)})")
    if not world:
        return _entry("context_parallel", opts, False, "not running under torchrun (no WORLD_SIZE)")
    if world != want:
        return _entry("context_parallel", opts, False, f"ulysses_degree x ring_degree = {want}, but torchrun "
                      f"started {world} processes")
    import torch
    from diffusers import ContextParallelConfig

    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    for d in denoisers_of(pipe):
        if getattr(d, "_cp_plan", None) is None:
            return _entry("context_parallel", opts, False, f"{type(d).__name__} has no _cp_plan")
        d.enable_parallelism(config=ContextParallelConfig(ulysses_degree=opts.ulysses_degree,
                                                          ring_degree=opts.ring_degree))
    split = sum(getattr(p, "_parallel_config", None) is not None for d in denoisers_of(pipe) for p in _processors(d))
    if not split:
        return _entry("context_parallel", opts, False, "no attention processor holds a parallel config")
    return _entry("context_parallel", opts, True, f"{split} attention processors split over {world} ranks "
                  f"(ulysses {opts.ulysses_degree} x ring {opts.ring_degree})")


def _cache(pipe, opts: CacheOptions, device: str, family: str) -> dict[str, Any]:
    denoisers = [d for d in denoisers_of(pipe) if hasattr(d, "enable_cache")]
    if not denoisers:
        return _entry("cache", opts, False, f"{type(pipe).__name__}'s transformer takes no cache hooks")
    try:
        hooks = enable_cache(denoisers, opts.kind, opts.params())
    except (ValueError, TypeError) as exc:
        return _entry("cache", opts, False, str(exc).splitlines()[0])
    params = ", ".join(f"{k}={v}" for k, v in opts.params().items() if k != "mag_ratios")
    return _entry("cache", opts, True, f"{opts.kind} ({params or 'defaults'}) on {len(denoisers)} transformer(s): "
                  f"hooks {', '.join(hooks)}")


def _compile(pipe, wanted: bool | str, device: str, family: str) -> dict[str, Any]:
    if wanted == AUTO and not device.startswith("cuda"):
        return _entry("compile", wanted, False, f"auto compiles on CUDA only; on {device} compile time outweighs "
                      "the gain (set compile: true to force it)")
    denoisers = denoisers_of(pipe)
    # the cache hooks decide in Python, outside the graph (torch.compiler.disable): one graph per block is
    # then impossible, so a cached transformer compiles with graph breaks at the hooks
    fullgraph = not any(is_cache_hook(n) for d in denoisers for n in hook_names(d))
    try:
        for d in denoisers:
            d.compile_repeated_blocks(fullgraph=fullgraph)
    except (ValueError, AttributeError) as exc:
        return _entry("compile", wanted, False, str(exc).splitlines()[0])
    compiled = [m for d in denoisers for m in d.modules() if getattr(m, "_compiled_call_impl", None) is not None]
    if not compiled:
        return _entry("compile", wanted, False, "no block holds a compiled forward")
    kinds = sorted({type(m).__name__ for m in compiled})
    graphs = "fullgraph" if fullgraph else "graph breaks at the cache hooks"
    return _entry("compile", wanted, True, f"{len(compiled)} {', '.join(kinds)} blocks compiled ({graphs}), "
                  "compiled on the first call")


def _vae_flag(flag: str):
    method, attr = f"enable_{flag}", f"use_{flag}"

    def apply(pipe, wanted: bool, device: str, family: str) -> dict[str, Any]:
        vae, feature = getattr(pipe, "vae", None), f"vae_{flag}"
        if vae is None or not hasattr(vae, method):
            return _entry(feature, wanted, False, f"{type(vae).__name__} has no {method}")
        getattr(vae, method)()
        if getattr(vae, attr, False) is not True:
            return _entry(feature, wanted, False, f"{type(vae).__name__}.{attr} is not set after {method}()")
        return _entry(feature, wanted, True, f"{type(vae).__name__}.{attr} is True")

    return apply


_APPLY = {"attention": _attention, "fp8_storage": _fp8_storage, "fp8_quant": _fp8_quant,
          "context_parallel": _context_parallel, "cache": _cache, "compile": _compile,
          "vae_tiling": _vae_flag("tiling"), "vae_slicing": _vae_flag("slicing")}

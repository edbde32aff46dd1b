"""The diffusers engine's cache hooks (FirstBlockCache, TaylorSeer, MagCache) and what they skipped.

``enable_cache`` puts diffusers' cache hooks on the transformer(s) and a counter beside them;
``cache_stats`` says, per transformer call and per step, whether the blocks were computed or served
from the cache. torch and diffusers are imported inside functions only.
"""

from __future__ import annotations

import re
from typing import Any

CONFIGS = {"first_block": "FirstBlockCacheConfig", "taylorseer": "TaylorSeerCacheConfig", "magcache": "MagCacheConfig"}


def denoisers(pipe) -> list:
    """The pipeline's transformers: one, or two for Wan 2.2 A14B's experts."""
    return [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m is not None]


def enable_cache(modules: list, kind: str, params: dict[str, Any]) -> list[str]:
    """Put the ``kind`` cache hooks on each transformer and count their calls; the hook names, read back.

    ValueError with the reason when the transformer cannot take them.
    """
    import diffusers

    blocks = len(repeated_blocks(modules[0]))
    if kind != "taylorseer" and blocks < 2:
        raise ValueError(f"{kind} caches the blocks after the first; {type(modules[0]).__name__} has {blocks}")
    config_cls = getattr(diffusers, CONFIGS[kind])
    for d in modules:
        if kind == "taylorseer":  # diffusers' default patterns miss names such as Wan's attn1/attn2
            params = {**params, "cache_identifiers": [re.escape(n) for n in block_attention(d)]}
        d.enable_cache(config_cls(**params))
    hooks = sorted({name for d in modules for name in hook_names(d) if is_cache_hook(name)})
    if not hooks or not all(d.is_cache_enabled for d in modules):
        raise ValueError("no cache hook is registered on the transformer")
    for d in modules:
        _count_cache(d)
    return hooks


def hook_names(module) -> set[str]:
    """The diffusers hooks registered on ``module`` and its submodules."""
    names = set()
    for m in module.modules():
        registry = getattr(m, "_diffusers_hook", None)
        if registry is not None:
            names.update(registry.hooks)
    return names


def block_attention(denoiser) -> list[str]:
    """The names of the attention modules inside the denoiser's repeated blocks."""
    ids = {id(b) for b in repeated_blocks(denoiser)}
    blocks = tuple(f"{n}." for n, m in denoiser.named_modules() if id(m) in ids)
    return [n for n, m in denoiser.named_modules() if getattr(m, "processor", None) is not None and n.startswith(blocks)]


def is_cache_hook(name: str) -> bool:
    return any(k in name for k in ("fbc", "taylorseer", "mag_cache"))


def _count_cache(denoiser) -> None:
    """Record, per transformer call, its timestep and whether the cache hooks computed or reused the blocks.

    Read from the hooks' own state after each call (at the transformer's level, outside any compiled
    block, where a probe hook would not fire): first_block and magcache keep ``should_compute`` in the
    leading block's state; a TaylorSeer module computed when its last update is the current step.
    """
    if getattr(denoiser, "_reelforge_cache_calls", None) is not None:
        return
    read = _computed_reader(denoiser)
    if read is None:
        return
    calls: list[list] = []  # [timestep, computed]
    denoiser._reelforge_cache_calls = calls

    def on_call(module, args, kwargs):
        t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        calls.append([float(t.max()) if hasattr(t, "max") else t, False])

    def after_call(module, args, output):
        if calls:
            calls[-1][1] = bool(read())

    denoiser.register_forward_pre_hook(on_call, with_kwargs=True)
    denoiser.register_forward_hook(after_call)


def _computed_reader(denoiser):
    """A function telling whether the last transformer call computed its blocks (None: no cache hook found)."""
    from diffusers.hooks.first_block_cache import _FBC_LEADER_BLOCK_HOOK
    from diffusers.hooks.mag_cache import _MAG_CACHE_LEADER_BLOCK_HOOK
    from diffusers.hooks.taylorseer_cache import _TAYLORSEER_CACHE_HOOK

    found = {}
    for m in denoiser.modules():
        registry = getattr(m, "_diffusers_hook", None)
        for name in (_FBC_LEADER_BLOCK_HOOK, _MAG_CACHE_LEADER_BLOCK_HOOK, _TAYLORSEER_CACHE_HOOK):
            hook = registry.get_hook(name) if registry is not None else None
            if hook is not None:
                found[name] = hook  # the last one for TaylorSeer: a module of the last block
    leader = found.get(_FBC_LEADER_BLOCK_HOOK) or found.get(_MAG_CACHE_LEADER_BLOCK_HOOK)
    if leader is not None:
        return lambda: leader.state_manager.get_state().should_compute
    seer = found.get(_TAYLORSEER_CACHE_HOOK)
    if seer is not None:
        def seer_computed() -> bool:
            state = seer.state_manager.get_state()
            return state.last_update_step == state.current_step

        return seer_computed
    return None


def repeated_blocks(denoiser) -> list:
    names = getattr(denoiser, "_repeated_blocks", None) or ()
    return [m for m in denoiser.modules() if type(m).__name__ in names]


def cache_stats(pipe) -> dict[str, Any] | None:
    """Transformer calls the cache hooks computed vs skipped since the previous read (None without a cache).

    Per step: calls are grouped by their timestep. Reading clears the counts, so the engine reads once
    after each shot.
    """
    counted = [d for d in denoisers(pipe) if getattr(d, "_reelforge_cache_calls", None) is not None]
    if not counted:
        return None
    steps: list[dict[str, Any]] = []
    for d in counted:
        for t, computed in d._reelforge_cache_calls:
            if not steps or steps[-1]["timestep"] != t:
                steps.append({"timestep": t, "computed": 0, "skipped": 0})
            steps[-1]["computed" if computed else "skipped"] += 1
        d._reelforge_cache_calls.clear()
    computed = sum(s["computed"] for s in steps)
    skipped = sum(s["skipped"] for s in steps)
    total = computed + skipped
    return {"calls": total, "computed": computed, "skipped": skipped,
            "skip_rate": round(skipped / total, 4) if total else 0.0, "per_step": steps}

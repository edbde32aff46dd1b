"""Speed and memory profiles for the diffusers engine: the features one can ask for and the three presets.

``SpeedOptions`` names the features (attention backend, regional compile, cache hooks, FP8 storage
or quantization, offloading, VAE tiling/slicing, context parallelism); ``PRESETS`` names three
bundles of them; ``resolve_speed`` is a preset with overrides over it. Applying them is speed.py's.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["PRESETS", "CacheOptions", "SpeedOptions", "resolve_speed"]

AUTO = "auto"
PORTABLE_ATTENTION = ("native", "_native_math", "flex")  # attention backends that run off CUDA
CP_FAMILIES = ("wan", "ltx", "ltx2")  # families whose transformer has a context-parallel plan in diffusers

# The parameters each cache kind takes (diffusers' config fields of the same names).
CACHE_PARAMS: dict[str, tuple[str, ...]] = {
    "first_block": ("threshold",),
    "taylorseer": ("cache_interval", "disable_cache_before_step", "disable_cache_after_step", "max_order",
                   "use_lite_mode"),
    "magcache": ("threshold", "max_skip_steps", "retention_ratio", "mag_ratios", "calibrate", "num_inference_steps"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheOptions(_Strict):
    kind: Literal["first_block", "taylorseer", "magcache"]
    threshold: float | None = Field(None, gt=0)
    cache_interval: int | None = Field(None, ge=1)
    disable_cache_before_step: int | None = Field(None, ge=0)
    disable_cache_after_step: int | None = Field(None, ge=0)
    max_order: int | None = Field(None, ge=0, le=4)
    use_lite_mode: bool | None = None
    max_skip_steps: int | None = Field(None, ge=1)
    retention_ratio: float | None = Field(None, ge=0, le=1)
    mag_ratios: tuple[float, ...] | None = None  # from a calibration run of this model
    calibrate: bool | None = None
    num_inference_steps: int | None = Field(None, ge=1)  # magcache; the engine fills in its step count

    @model_validator(mode="after")
    def _params_fit_kind(self) -> "CacheOptions":
        allowed = CACHE_PARAMS[self.kind]
        foreign = sorted(n for n in self.model_fields_set - {"kind"} if n not in allowed)
        if foreign:
            raise ValueError(f"cache kind {self.kind!r} takes no {', '.join(foreign)}; its parameters: "
                             f"{', '.join(allowed)}")
        if self.kind == "magcache" and not self.mag_ratios and not self.calibrate:
            raise ValueError("cache kind 'magcache' needs mag_ratios (printed by a run with calibrate: true) "
                             "or calibrate: true")
        return self

    def params(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in CACHE_PARAMS[self.kind] if getattr(self, n) is not None}


class GroupOffloadOptions(_Strict):
    offload_type: Literal["block_level", "leaf_level"] = "block_level"
    num_blocks_per_group: int = Field(1, ge=1)  # block_level only
    use_stream: bool = True  # overlap the transfers with compute (CUDA streams); CUDA only


class ContextParallelOptions(_Strict):
    ulysses_degree: int = Field(1, ge=1)
    ring_degree: int = Field(1, ge=1)


class SpeedOptions(_Strict):
    attention: str | None = None  # None: leave as is; "auto": the best installed for the GPU; or a backend name
    compile: bool | Literal["auto"] = False  # regional compile; "auto": on CUDA only
    cache: CacheOptions | None = None
    fp8_storage: bool = False  # layerwise casting: weights stored in float8_e4m3fn, computed in the pipeline dtype
    fp8_quant: bool = False  # torchao FP8 dynamic-activation/weight quantization (CUDA with FP8, torchao)
    group_offload: GroupOffloadOptions | None = None
    offload: Literal["model", "sequential"] | None = None
    vae_tiling: bool = False
    vae_slicing: bool = False
    context_parallel: ContextParallelOptions | None = None  # under torchrun only; untested on multi-GPU

    @field_validator("group_offload", mode="before")
    @classmethod
    def _group_offload_true(cls, v: Any) -> Any:
        return {} if v is True else None if v is False else v

    @field_validator("attention")
    @classmethod
    def _known_backend(cls, v: str | None) -> str | None:
        if v is None or v == AUTO:
            return v
        names = attention_backends()
        if names is not None and v.lower() not in names:
            raise ValueError(f"attention {v!r} is not a diffusers attention backend; allowed: auto, "
                             f"{', '.join(sorted(names))}")
        return v.lower()

    @model_validator(mode="after")
    def _compatible(self) -> "SpeedOptions":
        if self.offload and self.group_offload:
            raise ValueError(f"offload {self.offload!r} and group_offload exclude each other; choose one")
        if self.fp8_storage and self.fp8_quant:
            raise ValueError("fp8_storage and fp8_quant exclude each other; choose one")
        return self

    def requested(self) -> dict[str, Any]:
        """The features asked for: the fields set (by the preset or the overrides) to something other than off."""
        return {name: getattr(self, name) for name in type(self).model_fields
                if name in self.model_fields_set and getattr(self, name) not in (None, False)}


PRESETS: dict[str, dict[str, Any]] = {
    "quality": {},
    "fast": {"attention": AUTO, "compile": AUTO, "cache": {"kind": "first_block", "threshold": 0.05}},
    "low-memory": {"group_offload": {"offload_type": "block_level", "use_stream": True}, "fp8_storage": True,
                   "vae_tiling": True},
}


def attention_backends() -> set[str] | None:
    """The attention backend names in diffusers' registry (None when diffusers is not installed)."""
    if importlib.util.find_spec("diffusers") is None:
        return None
    from diffusers.models.attention_dispatch import AttentionBackendName

    return {b.value for b in AttentionBackendName}


def resolve_speed(profile: str | None, overrides: dict | None) -> SpeedOptions:
    """The preset named ``profile``, then each field of ``overrides`` over it."""
    if profile is not None and profile not in PRESETS:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(PRESETS)}")
    fields = {**PRESETS.get(profile or "quality", {}), **(overrides or {})}
    return SpeedOptions(**fields)

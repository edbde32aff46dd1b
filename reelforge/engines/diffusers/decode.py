"""Decoding denoised latents apart from the denoise: what lets a long render survive its last step.

The diffusers engine runs each known family's pipeline with ``output_type="latent"``, saves what it
returns (``save_latents``, atomically, into the shot's checkpoint folder, which lives in the job's
output storage), then decodes here with one small function per family that repeats what that
pipeline's own decode branch does (diffusers 0.42.1), so the frames equal the pipeline's
``output_type="pt"`` result. A decode that runs out of memory is retried tiled, then on the CPU,
from the same latents (``decode_ladder``); a worker that dies during the decode leaves the latents
for the next attempt, which decodes without denoising again (``load_latents``).

torch is imported inside functions only, as in the engine.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from reelforge import media
from reelforge.engines.diffusers.speed import install_model_offload

log = logging.getLogger("reelforge.engines.diffusers")

LATENTS_PREFIX = "latents-"


# ------------------------------------------------------------------ one decode per family
# Each takes the pipeline, what its latent call returned ({"video": ..., "audio": ...}), the call's
# arguments, the device to decode on and the call's generator; returns (video [B, F, C, H, W] in
# [0, 1] as output_type="pt" gives it, audio [B, channels, samples] or None).


def decode_ltx(pipe, saved: dict, call: dict, device, generator):
    """LTX-Video 0.9 (t2v and i2v): the latents come back packed [B, S, C] and normalised."""
    latents = saved["video"].to(device)
    frames = (call["num_frames"] - 1) // pipe.vae_temporal_compression_ratio + 1
    latents = pipe._unpack_latents(latents, frames, call["height"] // pipe.vae_spatial_compression_ratio,
                                   call["width"] // pipe.vae_spatial_compression_ratio,
                                   pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size)
    latents = pipe._denormalize_latents(latents, pipe.vae.latents_mean, pipe.vae.latents_std,
                                        pipe.vae.config.scaling_factor)
    latents = latents.to(pipe.text_encoder.dtype)  # the pipeline casts to its prompt embeddings' dtype
    latents, timestep = _decode_noise(pipe, latents, call, device, generator)
    if type(pipe).__name__ == "LTXPipeline":  # the image-to-video pipeline decodes without this cast
        latents = latents.to(pipe.vae.dtype)
    video = pipe.vae.decode(latents, timestep, return_dict=False)[0]
    return pipe.video_processor.postprocess_video(video, output_type="pt"), None


def decode_ltx2(pipe, saved: dict, call: dict, device, generator):
    """LTX-2 (t2v, i2v, the two-stage recipe): de-normalised video [B, C, F', H', W'] and audio latents."""
    latents = saved["video"].to(device)
    timestep = None
    if pipe.vae.config.timestep_conditioning:
        # the pipeline mixes the decode noise in before de-normalising; undo, mix, redo (equal to rounding)
        mean, std, scale = pipe.vae.latents_mean, pipe.vae.latents_std, pipe.vae.config.scaling_factor
        latents = pipe._normalize_latents(latents, mean, std, scale).to(pipe.text_encoder.dtype)
        latents, timestep = _decode_noise(pipe, latents, call, device, generator)
        latents = pipe._denormalize_latents(latents, mean, std, scale)
    video = pipe.vae.decode(latents.to(pipe.vae.dtype), timestep, return_dict=False)[0]
    video = pipe.video_processor.postprocess_video(video, output_type="pt")
    audio_latents = saved["audio"].to(device, pipe.audio_vae.dtype)
    mel = pipe.audio_vae.decode(audio_latents, return_dict=False)[0]
    return video, pipe.vocoder(mel)


def decode_wan(pipe, saved: dict, call: dict, device, generator):
    """Wan 2.1 / 2.2 (every layout): normalised [B, z, F', H', W'] (TI2V-5B's image frame already put back)."""
    torch = _torch()
    latents = saved["video"].to(device=device, dtype=pipe.vae.dtype)
    z = pipe.vae.config.z_dim
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(pipe.vae.config.latents_std).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
    video = pipe.vae.decode(latents / inv_std + mean, return_dict=False)[0]  # the pipeline's arithmetic, bit for bit
    return pipe.video_processor.postprocess_video(video, output_type="pt"), None


def decode_hunyuan15(pipe, saved: dict, call: dict, device, generator):
    """HunyuanVideo 1.5: [B, C, F', H', W'] over the VAE's scaling factor, no shift."""
    latents = saved["video"].to(device).to(pipe.vae.dtype) / pipe.vae.config.scaling_factor
    video = pipe.vae.decode(latents, return_dict=False)[0]
    return pipe.video_processor.postprocess_video(video, output_type="pt"), None


def decode_cogvideox(pipe, saved: dict, call: dict, device, generator):
    """CogVideoX (1.0 and 1.5): [B, F', C, H', W'] still holding 1.5's padding frames, which are dropped first."""
    latents = saved["video"].to(device)
    frames = (call["num_frames"] - 1) // pipe.vae_scale_factor_temporal + 1
    p_t = pipe.transformer.config.patch_size_t
    padding = p_t - frames % p_t if p_t is not None and frames % p_t else 0
    video = pipe.decode_latents(latents[:, padding:])
    return pipe.video_processor.postprocess_video(video=video, output_type="pt"), None


DECODERS: dict[str, Callable] = {"ltx": decode_ltx, "ltx2": decode_ltx2, "wan": decode_wan,
                                 "hunyuanvideo15": decode_hunyuan15, "cogvideox": decode_cogvideox}


def _decode_noise(pipe, latents, call: dict, device, generator):
    """LTX's timestep-conditioned VAE: the decode timestep and the noise mixed into the latents (else None)."""
    torch = _torch()
    if not pipe.vae.config.timestep_conditioning:
        return latents, None
    from diffusers.utils.torch_utils import randn_tensor

    t = call.get("decode_timestep", 0.0)
    scale = call.get("decode_noise_scale")
    t = t if isinstance(t, list) else [t]
    scale = t if scale is None else (scale if isinstance(scale, list) else [scale])
    noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    timestep = torch.tensor(t, device=device, dtype=latents.dtype)
    scale = torch.tensor(scale, device=device, dtype=latents.dtype)[:, None, None, None, None]
    return (1 - scale) * latents + scale * noise, timestep


# ------------------------------------------------------------------ saved latents


def latents_key(**parts: Any) -> tuple[str, str]:
    """What produced a shot's latents, as (canonical JSON, short digest): a changed plan has another digest."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return text, hashlib.sha256(text.encode()).hexdigest()[:20]


def latents_file(folder: Path, digest: str) -> Path:
    return folder / f"{LATENTS_PREFIX}{digest}.safetensors"


def save_latents(folder: Path, key: tuple[str, str], tensors: dict[str, Any], keep: Callable[[Path], None]) -> Path:
    """Write ``tensors`` (CPU copies) to the shot's checkpoint atomically, tagged with ``key``; older keys' files go."""
    from safetensors.torch import save

    text, digest = key
    path = latents_file(folder, digest)
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items() if v is not None}
    for stale in folder.glob(f"{LATENTS_PREFIX}*.safetensors"):
        if stale != path:
            stale.unlink(missing_ok=True)
    media.atomic_write_bytes(path, save(data, metadata={"key": text}))
    keep(path)
    return path


def load_latents(folder: Path | None, key: tuple[str, str]) -> dict[str, Any] | None:
    """The latents saved for exactly ``key``, or None (none saved, another plan's, or unreadable)."""
    if folder is None:
        return None
    text, digest = key
    path = latents_file(folder, digest)
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("key") != text:
                return None
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # a damaged file is not a reason to fail: denoise again
        log.warning("saved latents %s cannot be read (%s); denoising again", path, exc)
        return None


# ------------------------------------------------------------------ the out-of-memory ladder


def is_out_of_memory(exc: BaseException) -> bool:
    torch = _torch()
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@dataclass
class DecodeReport:
    """The decode attempts of one shot, for its manifest entry."""

    latents: str  # "saved", "resumed" (found from an earlier attempt) or "not saved: <why>"
    attempts: list[dict[str, Any]] = field(default_factory=list)
    decoded_by: str | None = None
    file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"latents": self.latents, "file": self.file, "attempts": self.attempts, "decoded_by": self.decoded_by}


class DecodeFailed(Exception):
    """Every rung of the ladder ran out of memory."""


def decode_ladder(run: Callable[[str, Any], Any], pipe, device: str, report: DecodeReport, already_tiled: bool,
                  offloaded: bool, cpu_rung: bool = True):
    """``run(how, device)`` as loaded, then tiled, then on the CPU, moving on only after an out-of-memory
    error; each try is recorded in ``report``. Returns the first result; DecodeFailed when all ran out."""
    rungs = [("as loaded", device)]
    if not already_tiled:
        rungs.append(("tiled", device))
    if device != "cpu" and cpu_rung:
        rungs.append(("cpu", "cpu"))
    for how, where in rungs:
        try:
            with _rung(pipe, how, device, offloaded), _torch().no_grad():
                result = run(how, where)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            report.attempts.append({"how": how, "device": where, "ok": False, "error": str(exc).splitlines()[0][:300]})
            log.warning("decode %s on %s ran out of memory; %s", how, where,
                        "trying the next way" if (how, where) != rungs[-1] else "no way left")
            _free(device)
            continue
        report.attempts.append({"how": how, "device": where, "ok": True})
        report.decoded_by = how
        return result
    raise DecodeFailed(", ".join(f"{a['how']} ({a['error']})" for a in report.attempts))


class _rung:
    """Set the pipeline up for one rung (tiling on, decoders on the CPU) and put it back after."""

    PARTS = ("vae", "audio_vae", "vocoder")

    def __init__(self, pipe, how: str, device: str, offloaded: bool):
        self.pipe, self.how, self.device, self.offloaded = pipe, how, device, offloaded

    def _parts(self):
        return [m for m in (getattr(self.pipe, n, None) for n in self.PARTS) if m is not None]

    def __enter__(self):
        if self.how == "tiled":
            self.pipe.vae.enable_tiling()
        elif self.how == "cpu":
            if self.offloaded:  # the offload hooks would move the decoders back to the GPU: take them off
                from accelerate.hooks import remove_hook_from_module

                for m in self._parts():
                    remove_hook_from_module(m, recurse=True)
            for m in self._parts():
                m.to("cpu")
        return self

    def __exit__(self, *exc):
        if self.how == "tiled":
            self.pipe.vae.disable_tiling()
        elif self.how == "cpu":
            _free(self.device)
            if self.offloaded:
                install_model_offload(self.pipe, self.device)
            else:
                for m in self._parts():
                    m.to(self.device)
        return False


def _free(device: str) -> None:
    gc.collect()
    torch = _torch()
    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _torch():
    import torch

    return torch

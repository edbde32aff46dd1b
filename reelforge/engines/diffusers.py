"""The diffusers engine: open-weight video models (LTX-Video, Wan 2.1, CogVideoX) on the user's machine.

torch and diffusers are imported inside methods only, so importing this module (and listing its
models) stays fast and works without the ``reelforge[diffusers]`` extra. One pipeline is loaded
per engine instance on the first shot and reused for every later shot and job; the worker keeps
one instance per (engine, options). How requests are fitted to each model and mapped back is in
``diffusers_adapt``; where weights come from is in ``diffusers_weights``.
"""

from __future__ import annotations

import gc
import importlib.metadata
import importlib.util
import json
import logging
import os
import shlex
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal

import numpy as np
from pydantic import Field, model_validator

from ..errors import EngineError, JobCanceled, RequestError
from ..models import ModelSpec
from .base import Engine, EngineOptions, Progress, ShotPlan
from .diffusers_adapt import (
    ModelRules, adapt_frames, fit_conditioning_image, plan_generation, size_map, time_map,
)
from .diffusers_models import FAMILIES, KNOWN_MODELS
from .diffusers_weights import DIFFUSERS_FILES, WeightsSource, resolve_weights

log = logging.getLogger("reelforge.engines.diffusers")

INSTALL_HINT = "pip install 'reelforge[diffusers]'"
REQUIRED_PACKAGES = ("torch", "diffusers", "transformers")


def source_checkout() -> Path | None:
    """The project folder when reelforge runs from a source checkout (editable install or the tree), else None."""
    try:
        direct = importlib.metadata.distribution("reelforge").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        direct = None
    if direct:
        try:
            info = json.loads(direct)
        except ValueError:
            info = {}
        url = info.get("url", "")
        if info.get("dir_info", {}).get("editable") and url.startswith("file://"):
            from urllib.parse import unquote, urlparse

            return Path(unquote(urlparse(url).path))
        return None  # installed from a wheel or an archive
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "reelforge" / "__init__.py").is_file() else None


def install_hint() -> str:
    """How to install the extra: the PyPI form, plus the editable form in a source checkout."""
    root = source_checkout()
    if root is None:
        return INSTALL_HINT
    return f"{INSTALL_HINT} (in the source checkout {root}: pip install -e {shlex.quote(f'{root}[diffusers]')})"


def missing_packages() -> list[str]:
    """The extra's packages this interpreter cannot import (looked up, not imported)."""
    return [m for m in REQUIRED_PACKAGES if importlib.util.find_spec(m) is None]


class DiffusersOptions(EngineOptions):
    model: str = "ltx-video"  # a key of KNOWN_MODELS, or any name with family and repo given
    family: Literal["ltx", "wan", "cogvideox"] | None = None
    repo: str | None = None  # Hugging Face repo id: the cache lookup and the download hint
    weights: str | None = None  # a diffusers-format folder; else env vars, then the HF cache
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    num_inference_steps: int | None = Field(None, ge=1, le=1000)
    guidance_scale: float | None = Field(None, ge=0)
    negative_prompt: str | None = None
    max_sequence_length: int | None = Field(None, ge=1, le=4096)
    cpu_offload: bool = False  # model CPU offload: one component on the GPU at a time
    vae_tiling: bool = False  # decode in tiles: less peak memory at large sizes
    generation_width: int | None = Field(None, ge=16, le=4096)
    generation_height: int | None = Field(None, ge=16, le=4096)
    generation_frames: int | None = Field(None, ge=1, le=1025)
    generation_fps: int | None = Field(None, ge=1, le=120)
    threads: int | None = Field(None, ge=1)  # torch threads on CPU (default: the CPUs this process may use)
    pipeline_kwargs: dict[str, Any] = Field(default_factory=dict)  # e.g. {"decode_timestep": 0.05}

    @model_validator(mode="after")
    def _resolve_model(self) -> "DiffusersOptions":
        known = KNOWN_MODELS.get(self.model)
        if known is None and not (self.family and self.repo):
            raise ValueError(f"model {self.model!r} is not one of {', '.join(KNOWN_MODELS)}; "
                             "give family and repo for another model")
        self.family = self.family or known.family
        self.repo = self.repo or known.repo
        reserved = set(self.pipeline_kwargs) & _RESERVED_KWARGS
        if reserved:
            raise ValueError(f"pipeline_kwargs may not set {', '.join(sorted(reserved))}: the engine sets them")
        return self


_RESERVED_KWARGS = {"prompt", "image", "height", "width", "num_frames", "frame_rate", "generator", "output_type",
                    "callback_on_step_end", "callback_on_step_end_tensor_inputs", "return_dict"}


class DiffusersEngine(Engine):
    """Open-weight text-to-video through Hugging Face diffusers, from local weights only."""

    engine_id: ClassVar[str] = "diffusers"
    summary: ClassVar[str] = "Open-weight video models (LTX-Video, Wan 2.1, CogVideoX) through diffusers"
    Options: ClassVar[type[EngineOptions]] = DiffusersOptions

    def __init__(self, options: dict[str, Any] | EngineOptions | None = None):
        super().__init__(options)
        missing = missing_packages()
        if missing:
            raise EngineError(f"the diffusers engine needs {', '.join(missing)}: {install_hint()}")
        self.family = FAMILIES[self.options.family]
        self.loads = 0  # how many times weights were loaded: once per instance unless options change
        self._lock = threading.Lock()  # a pipeline is not re-entrant (scheduler state, interrupt flag)
        self._pipes: dict[str, Any] = {}
        self._key: tuple | None = None
        self._info: dict[str, Any] = {}

    @classmethod
    def check_available(cls, options: dict[str, Any]) -> None:
        """Refuse a job before it is recorded when the extra or the weights are missing (nothing is loaded)."""
        opts = cls.parse_options(options)
        missing = missing_packages()
        if missing:
            raise EngineError(f"the diffusers engine needs {', '.join(missing)}: {install_hint()}")
        locate_weights(opts)

    @classmethod
    def models(cls) -> list[ModelSpec]:
        return [
            ModelSpec(f"reelforge.{name}", cls.engine_id, m.summary, m.limits,
                      engine_options={"model": name, "family": m.family})
            for name, m in KNOWN_MODELS.items()
        ]

    # ----------------------------------------------------------------- loading

    def _device_and_dtype(self, torch) -> tuple[str, Any]:
        device = self.options.device
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
        dtype = self.options.dtype
        if dtype == "auto":
            # bf16 on GPUs: the T5/UMT5 text encoders overflow in fp16; CPU kernels are fastest in fp32
            if device == "cuda":
                dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            elif device == "mps":
                dtype = "bfloat16"
            else:
                dtype = "float32"
        return device, getattr(torch, dtype)

    def _ensure_loaded(self) -> tuple[Any, float]:
        """Load the pipeline once; returns it and the seconds spent loading in this call (0 when warm).

        The first load's time includes importing torch and diffusers (seconds), as a worker pays it.
        """
        t0 = time.perf_counter()
        try:
            import diffusers
            import torch
        except ImportError as exc:
            raise EngineError(f"the diffusers engine cannot import {exc.name or exc}: {install_hint()}") from None
        device, dtype = self._device_and_dtype(torch)
        o = self.options
        weights = self.locate_weights()
        key = (str(weights.path), str(dtype), device, o.cpu_offload, o.vae_tiling)
        if key == self._key:
            return self._pipes["t2v"], 0.0
        self._release()
        if device == "cpu":
            torch.set_num_threads(o.threads or _usable_cpus())
        extra: dict[str, Any] = {}
        if self.family.float32_vae and dtype != torch.float32:
            vae_cls = getattr(diffusers, "AutoencoderKLWan")
            extra["vae"] = vae_cls.from_pretrained(weights.path, subfolder="vae", dtype=torch.float32,
                                                   local_files_only=True)
        with _quiet_loading():
            try:
                pipe = diffusers.DiffusionPipeline.from_pretrained(weights.path, dtype=dtype, local_files_only=True,
                                                                   **extra)
            except (OSError, ValueError) as exc:
                raise EngineError(f"cannot load {o.model} from {weights.path}: {str(exc).splitlines()[0]}") from exc
        name = type(pipe).__name__
        if name not in self.family.pipelines:
            raise EngineError(f"{weights.path} holds a {name}, not a {o.family} model "
                              f"(expected {' or '.join(self.family.pipelines)})")
        if name != self.family.t2v:
            pipe = getattr(diffusers, self.family.t2v)(**pipe.components)
        if o.cpu_offload and device != "cpu":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        if o.vae_tiling:
            pipe.vae.enable_tiling()
        pipe.set_progress_bar_config(disable=True)
        self._pipes = {"t2v": pipe}
        if self.family.i2v:  # same modules, no second copy of the weights
            i2v = getattr(diffusers, self.family.i2v)(**pipe.components)
            i2v.set_progress_bar_config(disable=True)
            self._pipes["i2v"] = i2v
        load_s = time.perf_counter() - t0
        self.loads += 1
        self._key = key
        self._info = {
            "engine": self.engine_id,
            "model": {"name": o.model, "family": o.family, "repo": o.repo, "weights": str(weights.path),
                      "weights_source": weights.source, "revision": weights.revision, "pipeline": self.family.t2v},
            "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__},
            "device": device, "dtype": str(dtype).removeprefix("torch."), "cpu_offload": o.cpu_offload,
            "vae_tiling": o.vae_tiling, "threads": torch.get_num_threads() if device == "cpu" else None,
            "num_inference_steps": o.num_inference_steps or self.family.steps,
            "guidance_scale": o.guidance_scale if o.guidance_scale is not None else self.family.guidance,
        }
        log.info("loaded %s from %s on %s/%s in %.2f s", o.model, weights.path, device, dtype, load_s)
        return pipe, load_s

    def locate_weights(self) -> WeightsSource:
        """Where this engine's weights are; EngineError naming the download command when missing."""
        return locate_weights(self.options)

    def _rules(self, pipe) -> ModelRules:
        f = self.family
        if f.name == "ltx":
            side = max(32, pipe.vae_spatial_compression_ratio * pipe.transformer_spatial_patch_size)
            return ModelRules(side, pipe.vae_temporal_compression_ratio * pipe.transformer_temporal_patch_size,
                              f.max_frames, f.max_pixels)
        if f.name == "wan":
            side = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
            return ModelRules(side, pipe.vae_scale_factor_temporal, f.max_frames, f.max_pixels, fixed_fps=f.fixed_fps)
        cfg, sf = pipe.transformer.config, pipe.vae_scale_factor_spatial
        return ModelRules(sf * cfg.patch_size, pipe.vae_scale_factor_temporal, cfg.sample_frames, f.max_pixels,
                          fixed_size=(cfg.sample_width * sf, cfg.sample_height * sf),
                          fixed_frames=cfg.sample_frames, fixed_fps=f.fixed_fps)

    # ----------------------------------------------------------------- rendering

    def render_shot(self, shot: ShotPlan, progress: Progress) -> Iterable[np.ndarray]:
        if shot.image is not None and not self.family.i2v:
            field = "textToVideoParams.images" if shot.count == 1 else f"multiShotManualParams.shots[{shot.index}].image"
            raise RequestError(field, f"{shot.model_id or self.options.model} is text-to-video only; "
                                      "remove the image or use reelforge.ltx-video")
        metadata = getattr(progress, "metadata", None)
        if metadata is None:
            metadata = {}
        o = self.options
        steps = o.num_inference_steps or self.family.steps
        progress(0, steps, "loading model" if self._key is None else "preparing")
        with self._lock:
            pipe, load_s = self._ensure_loaded()
            rules = self._rules(pipe)
            plan = plan_generation(rules, shot.width, shot.height, shot.duration_s, shot.fps,
                                   gen_width=o.generation_width, gen_height=o.generation_height,
                                   gen_frames=o.generation_frames, gen_fps=o.generation_fps)
            smap = size_map(plan.width, plan.height, shot.width, shot.height)
            mode = "image-to-video" if shot.image is not None else "text-to-video"
            run_pipe = self._pipes["i2v" if shot.image is not None else "t2v"]
            kwargs = self._call_kwargs(run_pipe, shot, plan, steps)
            if shot.image is not None:
                kwargs["image"] = fit_conditioning_image(shot.image, smap, plan.width, plan.height)
            t0 = time.perf_counter()
            frames, steps_run = self._generate(run_pipe, kwargs, steps, progress, metadata)
            generate_s = time.perf_counter() - t0
        n_src, gen_h, gen_w = frames.shape[:3]
        if (n_src, gen_w, gen_h) != (plan.frames, plan.width, plan.height):
            log.warning("pipeline returned %dx%dx%d frames, planned %dx%dx%d", gen_w, gen_h, n_src,
                        plan.width, plan.height, plan.frames)
            smap = size_map(gen_w, gen_h, shot.width, shot.height)
        tmap = time_map(shot.frame_count, shot.fps, n_src, plan.fps)
        progress(steps, steps, "adapting frames")
        metadata.update(self._info)
        metadata["load_s"] = round(metadata.get("load_s", 0.0) + load_s, 4)
        shots = [s for s in metadata.get("shots", []) if s.get("index") != shot.index]
        shots.append({
            "index": shot.index, "seed": shot.seed, "mode": mode, "pipeline": type(run_pipe).__name__,
            "requested": {"width": shot.width, "height": shot.height, "frames": shot.frame_count, "fps": shot.fps,
                          "duration_s": shot.duration_s},
            "planned": {"width": plan.width, "height": plan.height, "frames": plan.frames, "fps": plan.fps,
                        "notes": list(plan.notes)},
            "generated": {"width": gen_w, "height": gen_h, "frames": n_src, "fps": plan.fps,
                          "duration_s": round(n_src / plan.fps, 4)},
            "adaptation": {
                "rules": {"side_multiple": rules.side_multiple, "frames": rules.frame_rule(),
                          "max_frames": rules.max_frames},
                "size": smap.describe((gen_w, gen_h), (shot.width, shot.height)),
                "time": f"{tmap.mode}, nearest frame" + (f", speed x{tmap.speed:g}" if tmap.mode != "realtime" else ""),
                "frames_repeated": tmap.repeated, "frames_dropped": tmap.dropped,
                "image": (f"scaled to {smap.crop[2]}x{smap.crop[3]}, edge-padded to {plan.width}x{plan.height}"
                          if shot.image is not None else None),
            },
            "steps": steps, "steps_run": steps_run,
            "timings": {"load_s": round(load_s, 4), "generate_s": round(generate_s, 4)},
        })
        metadata["shots"] = sorted(shots, key=lambda s: s["index"])
        return adapt_frames(frames, tmap, smap, shot.width, shot.height)

    def _call_kwargs(self, pipe, shot: ShotPlan, plan, steps: int) -> dict[str, Any]:
        import torch

        o, f = self.options, self.family
        device = self._info["device"]
        msl = o.max_sequence_length or (pipe.transformer.config.max_text_seq_length if f.name == "cogvideox"
                                        else f.max_sequence_length)
        kwargs: dict[str, Any] = dict(
            prompt=shot.text, height=plan.height, width=plan.width, num_frames=plan.frames,
            num_inference_steps=steps, guidance_scale=o.guidance_scale if o.guidance_scale is not None else f.guidance,
            max_sequence_length=msl, output_type="pt",
            # on mps a CPU generator, as diffusers' reproducibility guide does; elsewhere the device's own
            generator=torch.Generator("cpu" if device == "mps" else device).manual_seed(shot.seed),
        )
        if o.negative_prompt is not None:
            kwargs["negative_prompt"] = o.negative_prompt
        if f.name == "ltx":
            kwargs["frame_rate"] = plan.fps
        kwargs.update(o.pipeline_kwargs)
        return kwargs

    def _generate(self, pipe, kwargs: dict[str, Any], steps: int, progress: Progress, metadata: dict):
        """Run the pipeline with per-step progress; a cancel raised by progress stops it via interrupt."""
        canceled: list[JobCanceled] = []
        done = [0]

        def on_step_end(p, i, t, callback_kwargs):
            done[0] = i + 1
            try:
                progress(i + 1, steps, f"denoising step {i + 1}/{steps}")
            except JobCanceled as exc:
                canceled.append(exc)
                p._interrupt = True  # the loop skips the remaining steps
            return {}

        try:
            out = self._call_pipeline(pipe, callback_on_step_end=on_step_end, **kwargs)
        except (RuntimeError, ValueError) as exc:
            if "out of memory" in str(exc).lower():
                raise EngineError(f"{self.options.model} ran out of memory at {kwargs['width']}x{kwargs['height']}x"
                                  f"{kwargs['num_frames']}: try cpu_offload/vae_tiling or a smaller size") from exc
            raise
        if canceled:
            metadata["canceled_at_step"] = done[0]
            raise canceled[0]
        video = out.frames[0]  # (frames, 3, H, W) float in [0, 1]
        # round, don't truncate; convert on the device so only uint8 crosses to the host
        frames = (video.float() * 255).round_().clamp_(0, 255).to(dtype=_torch().uint8)
        return frames.permute(0, 2, 3, 1).contiguous().cpu().numpy(), done[0]

    def _call_pipeline(self, pipe, **kwargs):
        """The one place the pipeline is called (a seam for tests and benchmarks)."""
        return pipe(**kwargs)

    # ----------------------------------------------------------------- shutdown

    def _release(self) -> None:
        had_cuda = self._info.get("device") == "cuda"
        self._pipes, self._key, self._info = {}, None, {}
        gc.collect()
        if had_cuda:
            _torch().cuda.empty_cache()

    def close(self) -> None:
        with self._lock:
            self._release()


def locate_weights(o: DiffusersOptions) -> WeightsSource:
    """Where the weights for options ``o`` are (paths and the HF cache's refs only; nothing is read)."""
    known = KNOWN_MODELS.get(o.model)
    if known is not None and o.repo == known.repo:  # a known layout: suggest fetching just the diffusers files
        return resolve_weights(o.model, o.repo, o.weights, known.cache_aliases, DIFFUSERS_FILES)
    return resolve_weights(o.model, o.repo, o.weights, known.cache_aliases if known else ())


def _usable_cpus() -> int:
    # the CPUs this process may run on (a container's cpuset), not the host's count
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _torch():
    import torch

    return torch


class _quiet_loading:
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

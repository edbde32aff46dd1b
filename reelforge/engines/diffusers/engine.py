"""The diffusers engine: open-weight video models (LTX-2, Wan 2.1/2.2, HunyuanVideo 1.5, ...) on the user's machine.

torch and diffusers are imported inside methods only, so importing this module (and listing its
models) stays fast and works without the ``reelforge[diffusers]`` extra. One pipeline is loaded
per engine instance on the first shot and reused for every later shot and job; the worker keeps
one instance per (engine, options). How requests are fitted to each model and mapped back is in
``diffusers_adapt``; where weights come from is in ``diffusers_weights``.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import os
import shlex
import threading
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal

import numpy as np
from pydantic import Field, model_validator

from reelforge.errors import EngineError, JobCanceled, RequestError
from reelforge.request.limits import ModelSpec
from reelforge.engines.base import Audio, Engine, EngineOptions, Progress, RenderContext, ShotOutput, ShotPlan
from reelforge.engines.diffusers.decode import (
    DECODERS, DecodeFailed, DecodeReport, decode_ladder, latents_file, latents_key, load_latents,
    save_latents,
)
from reelforge.engines.diffusers.adapt import (
    ModelRules, adapt_frames, fit_conditioning_image, plan_generation, size_map, time_map,
)
from reelforge.engines.diffusers.families import (
    FAMILIES, KNOWN_MODELS, LTX2_STAGE2_SIGMAS, SUMMARIES, Family, Grid, KnownModel, folder_rules, model_limits,
    pipeline_class_name,
)
from reelforge.engines.diffusers.speed import SpeedOptions, apply_speed, cache_stats, install_model_offload, resolve_speed
from reelforge.engines.diffusers.weights import DIFFUSERS_FILES, WEIGHTS_DIR_ENV, WeightsSource, download_command, resolve_weights

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
    root = Path(__file__).resolve().parents[3]
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
    model: str = "ltx-video"  # a key of KNOWN_MODELS, or any name with weights (or family and repo) given
    family: Literal["ltx", "ltx2", "wan", "hunyuanvideo15", "cogvideox", "generic"] | None = None
    repo: str | None = None  # Hugging Face repo id: the cache lookup and the download hint
    weights: str | None = None  # a diffusers-format folder; else env vars, then the HF cache
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    num_inference_steps: int | None = Field(None, ge=1, le=1000)
    guidance_scale: float | None = Field(None, ge=0)
    negative_prompt: str | None = None  # None: the family's default negative prompt
    max_sequence_length: int | None = Field(None, ge=1, le=4096)
    # Speed and memory (diffusers_speed): a preset, then per-feature overrides over it, e.g.
    # {"profile": "fast", "speed": {"cache": {"kind": "taylorseer", "cache_interval": 4}}}
    profile: Literal["quality", "fast", "low-memory"] | None = None
    speed: dict[str, Any] = Field(default_factory=dict)
    cpu_offload: bool = False  # the older spelling of speed.offload = "model" (kept: stored jobs use it)
    vae_tiling: bool = False  # the older spelling of speed.vae_tiling
    generation_width: int | None = Field(None, ge=16, le=4096)
    generation_height: int | None = Field(None, ge=16, le=4096)
    generation_frames: int | None = Field(None, ge=1, le=1025)
    generation_fps: int | None = Field(None, ge=1, le=120)
    threads: int | None = Field(None, ge=1)  # torch threads on CPU (default: the CPUs this process may use)
    pipeline_kwargs: dict[str, Any] = Field(default_factory=dict)  # e.g. {"decode_timestep": 0.05}, checked at submit
    # LTX-2's two-stage recipe: stage 1 at half size, the latent upsampler (latent_upsampler/ in the
    # weights folder), then 3 distilled steps at full size
    two_stage: bool = False
    # Per-model options, merged over the others for that model only, e.g.
    # {"models": {"ltx-video": {"pipeline_kwargs": {"decode_timestep": 0.05}}}}: an LTX-only
    # argument set engine-wide (REELFORGE_DIFFUSERS_OPTIONS) then never reaches a Wan job.
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _per_model(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            return data
        data = dict(data)
        mine = data.pop("models").get(data.get("model", "ltx-video")) or {}
        if not isinstance(mine, dict):
            raise ValueError("models.<name> must be an object of options")
        if "model" in mine or "models" in mine:
            raise ValueError("models.<name> may not set model or models")
        kwargs = {**(data.get("pipeline_kwargs") or {}), **(mine.get("pipeline_kwargs") or {})}
        data.update(mine)
        if kwargs:
            data["pipeline_kwargs"] = kwargs
        return data

    @model_validator(mode="after")
    def _resolve_model(self) -> "DiffusersOptions":
        known = KNOWN_MODELS.get(self.model)
        if known is None and not self.weights and not (self.family and self.repo):
            raise ValueError(f"model {self.model!r} is not one of {', '.join(KNOWN_MODELS)}; "
                             "give weights (a diffusers folder), or family and repo, for another model")
        if known is not None:
            if self.family not in (None, known.family):
                raise ValueError(f"model {self.model!r} is a {known.family} model, not {self.family}")
            self.family = known.family
            self.repo = self.repo or known.repo
        self.speed_options()  # refuse bad speed settings when the options are read
        reserved = set(self.pipeline_kwargs) & _RESERVED_KWARGS
        if reserved:
            raise ValueError(f"pipeline_kwargs may not set {', '.join(sorted(reserved))}: the engine sets them")
        return self

    def speed_options(self) -> SpeedOptions:
        """The profile, the older cpu_offload/vae_tiling switches, then ``speed`` over them; ValueError naming the field."""
        from pydantic import ValidationError

        older = {**({"offload": "model"} if self.cpu_offload else {}), **({"vae_tiling": True} if self.vae_tiling else {})}
        try:
            return resolve_speed(self.profile, {**older, **self.speed})
        except ValidationError as exc:
            problems = []
            for e in exc.errors():
                said = (f"unknown; allowed: {', '.join(SpeedOptions.model_fields)}" if e["type"] == "extra_forbidden"
                        else str(e["msg"]).removeprefix("Value error, "))
                problems.append(f"{'.'.join(('speed', *map(str, e['loc'])))}: {said}")
            raise ValueError("; ".join(problems)) from None


_RESERVED_KWARGS = {"prompt", "image", "height", "width", "num_frames", "frames", "frame_rate", "generator",
                    "output_type", "callback_on_step_end", "callback_on_step_end_tensor_inputs", "return_dict"}

# The generic door: the call arguments every video pipeline it runs must take (under these names or
# the ones GENERIC_CALLS maps them to), and the few pipelines that name them differently.
COMMON_CALL = ("prompt", "negative_prompt", "height", "width", "num_frames", "num_inference_steps", "generator",
               "output_type")
GENERIC_CALLS: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
    # SANA-Video takes `frames`; its resolution binning would change the size asked for
    "SanaVideoPipeline": ({"num_frames": "frames"}, {"use_resolution_binning": False}),
}


def call_parameters(class_name: str) -> dict[str, inspect.Parameter]:
    """The call signature of a diffusers pipeline class (imports diffusers; loads nothing)."""
    return dict(_signature(class_name))


@lru_cache(maxsize=64)
def _signature(class_name: str) -> tuple:
    import diffusers

    cls = getattr(diffusers, class_name, None)
    if cls is None:
        raise EngineError(f"diffusers {diffusers.__version__} has no pipeline class {class_name}")
    return tuple(inspect.signature(cls.__call__).parameters.items())


def generic_fit(class_name: str) -> str | None:
    """Why a pipeline class does not fit the generic door's common call signature, or None when it does."""
    params = call_parameters(class_name)
    names, _ = GENERIC_CALLS.get(class_name, ({}, {}))
    missing = [names.get(n, n) for n in COMMON_CALL if names.get(n, n) not in params]
    if missing:
        return f"its call takes no {', '.join(missing)}"
    required = [n for n, p in params.items() if n != "self" and p.default is inspect.Parameter.empty
                and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in COMMON_CALL]
    if required:
        return f"its call also requires {', '.join(required)}"
    return None


@dataclass(frozen=True)
class Resolved:
    """What a weights folder holds, read from model_index.json and the component configs only."""

    name: str
    family: Family
    known: KnownModel | None
    weights: WeightsSource
    declared: str  # the pipeline class model_index.json names
    tasks: dict[str, str]  # task ("t2v"/"i2v") -> pipeline class that runs it
    rules: ModelRules

    def rules_for(self, width: int, height: int, task: str) -> ModelRules:
        """The grid for one shot: HunyuanVideo 1.5 image-to-video generates its own size bucket."""
        if task == "i2v" and not self.family.i2v_sized:
            from diffusers.pipelines.hunyuan_video1_5.image_processor import HunyuanVideo15ImageProcessor

            proc = HunyuanVideo15ImageProcessor(vae_scale_factor=self.rules.side_multiple)
            h, w = proc.calculate_default_height_width(height=height, width=width, target_size=self.rules.target_size)
            return replace(self.rules, fixed_size=(w, h))
        return self.rules


def resolve(o: DiffusersOptions) -> Resolved:
    """Find and read the weights folder of options ``o``; EngineError when it cannot run them.

    Reads model_index.json and the vae/transformer configs; imports diffusers only to read call
    signatures (the generic door, pipeline_kwargs). No weights are read.
    """
    weights = locate_weights(o)
    folder = weights.path
    declared = pipeline_class_name(folder)
    known = KNOWN_MODELS.get(o.model)
    if known is not None or o.family not in (None, "generic"):
        family = FAMILIES[known.family if known else o.family]
        if declared not in family.pipelines:
            raise EngineError(f"{folder} holds a {declared}, not a {family.name} model "
                              f"(expected {' or '.join(family.pipelines)})")
    else:
        family = next((f for f in FAMILIES.values() if declared in f.pipelines), FAMILIES["generic"])
    if family.name == "generic":
        why = generic_fit(declared)
        if why:
            raise EngineError(f"{folder} holds a {declared}, which the diffusers engine cannot drive: {why} "
                              f"(the generic door needs {', '.join(COMMON_CALL)})")
        tasks = {"t2v": declared}
    else:
        wanted = known.tasks if known else (("i2v",) if declared == family.i2v else ("t2v", "i2v"))
        tasks = {t: getattr(family, t) for t in wanted if getattr(family, t)}
    if family.name == "wan" and "i2v" in tasks and importlib.util.find_spec("ftfy") is None:
        raise EngineError(f"{o.model} image-to-video needs ftfy (diffusers' Wan I2V cleans every prompt with it): "
                          f"{install_hint()}")
    rules = folder_rules(family.name, folder, known.grid if known else None)
    if o.two_stage:
        if family.name != "ltx2":
            raise EngineError(f"two_stage is LTX-2's recipe, not {o.model}'s; set it under models.<name> for an "
                              "LTX-2 model only")
        if not (folder / "latent_upsampler" / "config.json").is_file():
            raise EngineError(f"two_stage needs the latent upsampler in {folder / 'latent_upsampler'}; download it with: "
                              f"{download_command(o.repo or 'Lightricks/LTX-2', folder, ('latent_upsampler/*',))}")
        rules = replace(rules, side_multiple=2 * rules.side_multiple)  # stage 1 at half size keeps the multiple
    if o.pipeline_kwargs:
        accepted = {n for cls in tasks.values() for n in call_parameters(cls)}
        unknown = sorted(set(o.pipeline_kwargs) - accepted)
        if unknown:
            raise EngineError(f"pipeline_kwargs {', '.join(unknown)} not taken by {' or '.join(sorted(set(tasks.values())))} "
                              f"(model {o.model}); put model-specific arguments under models.<name> in the options")
    return Resolved(o.model, family, known, weights, declared, tasks, rules)


def shot_field(index: int, count: int) -> str:
    return "textToVideoParams.images" if count == 1 else f"multiShotManualParams.shots[{index}].image"


class DiffusersEngine(Engine):
    """Open-weight video models through Hugging Face diffusers, from local weights only."""

    engine_id: ClassVar[str] = "diffusers"
    summary: ClassVar[str] = ("Open-weight video models (LTX-2, LTX-Video, Wan 2.1/2.2, HunyuanVideo 1.5, CogVideoX, "
                              "any diffusers video pipeline) through diffusers")
    Options: ClassVar[type[EngineOptions]] = DiffusersOptions

    def __init__(self, options: dict[str, Any] | EngineOptions | None = None):
        super().__init__(options)
        missing = missing_packages()
        if missing:
            raise EngineError(f"the diffusers engine needs {', '.join(missing)}: {install_hint()}")
        self.loads = 0  # how many times weights were loaded: once per instance unless options change
        self._lock = threading.Lock()  # a pipeline is not re-entrant (scheduler state, interrupt flag)
        self._pipes: dict[str, Any] = {}
        self._key: tuple | None = None
        self._info: dict[str, Any] = {}
        self._resolved: Resolved | None = None
        self._offloaded = None  # the pipeline holding the model-offload hooks (speed.offload = "model")

    @classmethod
    def check_available(cls, options: dict[str, Any]) -> None:
        """Refuse a job before it is recorded when the extra or the weights are missing, or the folder does not fit."""
        opts = cls.parse_options(options)
        missing = missing_packages()
        if missing:
            raise EngineError(f"the diffusers engine needs {', '.join(missing)}: {install_hint()}")
        resolve(opts)

    @classmethod
    def check_request(cls, options: dict[str, Any], request, shots) -> None:
        """Refuse, before recording, shots outside the model's grid or its tasks (RequestError naming the field)."""
        o = cls.parse_options(options)
        r = resolve(o)
        model = f"reelforge.{o.model}" if r.known else o.model
        for i, s in enumerate(shots):
            task = "i2v" if s.image is not None else "t2v"
            if task not in r.tasks:
                field = shot_field(i, len(shots)) if request.task_type != "MULTI_SHOT_AUTOMATED" else "taskType"
                if task == "t2v":
                    raise RequestError(field, f"is required: {model} is image-to-video only")
                raise RequestError(field, f"{model} is text-to-video only; remove the image or pick a model that takes one")
            plan_generation(r.rules_for(request.width, request.height, task), request.width, request.height,
                            s.duration_s, request.fps, model=model, gen_width=o.generation_width,
                            gen_height=o.generation_height, gen_frames=o.generation_frames, gen_fps=o.generation_fps)

    @classmethod
    def models(cls) -> list[ModelSpec]:
        specs = [
            ModelSpec(f"reelforge.{name}", cls.engine_id, SUMMARIES[name], m.limits,
                      engine_options={"model": name, "family": m.family})
            for name, m in KNOWN_MODELS.items()
        ]
        return specs + generic_models(cls.engine_id)

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
            known = KNOWN_MODELS.get(self.options.model)
            # bf16 on GPUs: the T5/UMT5 text encoders overflow in fp16; CPU kernels are fastest in fp32
            if device == "cuda":
                dtype = (known.gpu_dtype if known and known.gpu_dtype else
                         "bfloat16" if torch.cuda.is_bf16_supported() else "float16")
            elif device == "mps":
                dtype = "bfloat16"
            else:
                dtype = "float32"
        return device, getattr(torch, dtype)

    def _ensure_loaded(self) -> tuple[Resolved, float]:
        """Load the pipelines once; returns what is loaded and the seconds spent loading in this call (0 when warm).

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
        r = resolve(o)
        speed = o.speed_options()
        if speed.cache is not None and speed.cache.kind == "magcache" and speed.cache.num_inference_steps is None:
            speed = speed.model_copy(update={"cache": speed.cache.model_copy(update={"num_inference_steps": self._steps()})})
        key = (str(r.weights.path), str(dtype), device, speed.model_dump_json())
        if key == self._key:
            return self._resolved, 0.0
        self._release()
        if device == "cpu":
            torch.set_num_threads(o.threads or _usable_cpus())
        extra: dict[str, Any] = {}
        if r.family.float32_vae and dtype != torch.float32:
            extra["vae"] = diffusers.AutoencoderKLWan.from_pretrained(r.weights.path, subfolder="vae",
                                                                      dtype=torch.float32, local_files_only=True)
        with _quiet_loading():
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
            pipes[task] = pipe if type(pipe).__name__ == cls_name else _same_components(pipe, getattr(diffusers, cls_name))
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
        self._pipes = pipes
        load_s = time.perf_counter() - t0
        self.loads += 1
        offloaded = any(e["feature"] == "offload" and e["applied"] for e in speed_report) and speed.offload == "model"
        self._key, self._resolved, self._offloaded = key, r, pipe if offloaded else None
        self._info = {
            "engine": self.engine_id,
            "model": {"name": o.model, "family": r.family.name, "repo": o.repo, "weights": str(r.weights.path),
                      "weights_source": r.weights.source, "revision": r.weights.revision, "pipeline": r.declared,
                      "tasks": dict(r.tasks)},
            "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__},
            "device": device, "dtype": str(dtype).removeprefix("torch."),
            "profile": o.profile, "speed": speed_report, "threads": torch.get_num_threads() if device == "cpu" else None,
            "num_inference_steps": self._steps(),
            "guidance_scale": self._guidance(pipe),
        }
        log.info("loaded %s from %s on %s/%s in %.2f s", o.model, r.weights.path, device, dtype, load_s)
        return r, load_s

    def locate_weights(self) -> WeightsSource:
        """Where this engine's weights are; EngineError naming the download command when missing."""
        return locate_weights(self.options)

    def _known(self) -> KnownModel | None:
        return KNOWN_MODELS.get(self.options.model)

    def _steps(self) -> int:
        known = self._known()
        fam = FAMILIES[self.options.family or "generic"]
        return self.options.num_inference_steps or (known.steps if known and known.steps else fam.steps)

    def _guidance(self, pipe) -> float | None:
        o, known = self.options, self._known()
        if o.guidance_scale is not None:
            return o.guidance_scale
        if known and known.guidance is not None:
            return known.guidance
        fam = FAMILIES[o.family or "generic"]
        if fam.guidance is None:
            return getattr(getattr(pipe, "guider", None), "guidance_scale", None)
        return fam.guidance

    # ----------------------------------------------------------------- rendering

    def render_shot(self, shot: ShotPlan, progress: Progress) -> Iterable[np.ndarray]:
        return self.render(shot, RenderContext(progress)).frames

    def render(self, shot: ShotPlan, ctx: RenderContext) -> ShotOutput:
        progress = ctx.progress
        metadata = getattr(progress, "metadata", None)
        if metadata is None:
            metadata = {}
        o = self.options
        task = "i2v" if shot.image is not None else "t2v"
        known = self._known()
        if known is not None and task not in known.tasks:  # refused before loading anything
            model = shot.model_id or f"reelforge.{o.model}"
            if task == "t2v":
                raise RequestError(shot_field(shot.index, shot.count), f"is required: {model} is image-to-video only")
            raise RequestError(shot_field(shot.index, shot.count),
                               f"{model} is text-to-video only; remove the image or pick a model that takes one")
        steps = self._steps() + (len(LTX2_STAGE2_SIGMAS) if o.two_stage else 0)
        progress(0, steps, "loading model" if self._key is None else "preparing")
        with self._lock:
            r, load_s = self._ensure_loaded()
            if task not in self._pipes:
                raise RequestError(shot_field(shot.index, shot.count), f"{o.model} cannot do {task}")
            rules = r.rules_for(shot.width, shot.height, task)
            plan = plan_generation(rules, shot.width, shot.height, shot.duration_s, shot.fps,
                                   model=shot.model_id or o.model, gen_width=o.generation_width,
                                   gen_height=o.generation_height, gen_frames=o.generation_frames,
                                   gen_fps=o.generation_fps)
            smap = size_map(plan.width, plan.height, shot.width, shot.height)
            run_pipe = self._pipes[task]
            kwargs = self._call_kwargs(run_pipe, shot, plan, self._steps())
            if shot.image is not None:
                kwargs["image"] = fit_conditioning_image(shot.image, smap, plan.width, plan.height)
            t0 = time.perf_counter()
            cache_stats(run_pipe)  # drop what a canceled call left uncounted
            key = self._latents_key(run_pipe, shot, plan, kwargs)
            frames, audio, steps_run, decode = self._generate(run_pipe, kwargs, steps, progress, metadata,
                                                              ctx.checkpoint, ctx.keep, key)
            generate_s = time.perf_counter() - t0
            cache = cache_stats(run_pipe)
        n_src, gen_h, gen_w = frames.shape[:3]
        if (n_src, gen_w, gen_h) != (plan.frames, plan.width, plan.height):
            log.warning("pipeline returned %dx%dx%d frames, planned %dx%dx%d", gen_w, gen_h, n_src,
                        plan.width, plan.height, plan.frames)
            smap = size_map(gen_w, gen_h, shot.width, shot.height)
        tmap = time_map(shot.frame_count, shot.fps, n_src, plan.fps)
        progress(steps, steps, "adapting frames")
        audio_meta = None
        if audio is not None:
            audio, audio_meta = _fit_audio(audio, shot.duration_s)
        metadata.update(self._info)
        metadata["load_s"] = round(metadata.get("load_s", 0.0) + load_s, 4)
        shots = [s for s in metadata.get("shots", []) if s.get("index") != shot.index]
        shots.append({
            "index": shot.index, "seed": shot.seed, "mode": {"t2v": "text-to-video", "i2v": "image-to-video"}[task],
            "pipeline": type(run_pipe).__name__,
            "requested": {"width": shot.width, "height": shot.height, "frames": shot.frame_count, "fps": shot.fps,
                          "duration_s": shot.duration_s},
            "planned": {"width": plan.width, "height": plan.height, "frames": plan.frames, "fps": plan.fps,
                        "notes": list(plan.notes)},
            "generated": {"width": gen_w, "height": gen_h, "frames": n_src, "fps": plan.fps,
                          "duration_s": round(n_src / plan.fps, 4)},
            "adaptation": {
                "rules": {"side_multiple": rules.side_multiple, "frames": rules.frame_rule(),
                          "max_frames": rules.max_frames, "native_fps": rules.native_fps},
                "size": smap.describe((gen_w, gen_h), (shot.width, shot.height)),
                "time": f"{tmap.mode}, nearest frame" + (f", speed x{tmap.speed:g}" if tmap.mode != "realtime" else ""),
                "frames_repeated": tmap.repeated, "frames_dropped": tmap.dropped,
                "image": (f"scaled to {smap.crop[2]}x{smap.crop[3]}, edge-padded to {plan.width}x{plan.height}"
                          if shot.image is not None else None),
            },
            "audio": audio_meta,
            "steps": steps, "steps_run": steps_run, "decode": decode,
            "timings": {"load_s": round(load_s, 4), "generate_s": round(generate_s, 4)},
            **({"cache": cache} if cache else {}),
        })
        metadata["shots"] = sorted(shots, key=lambda s: s["index"])
        return ShotOutput(frames=adapt_frames(frames, tmap, smap, shot.width, shot.height), audio=audio)

    def _latents_key(self, pipe, shot: ShotPlan, plan, kwargs: dict[str, Any]) -> tuple[str, str]:
        """What the latents of this shot depend on: a changed plan, prompt, seed or option never reuses them."""
        import diffusers

        image = kwargs.get("image")
        image_digest = hashlib.sha256(image.tobytes() + repr(image.size).encode()).hexdigest() if image is not None else None
        return latents_key(
            model=self.options.model, revision=self._resolved.weights.revision,
            pipeline=type(pipe).__name__, seed=shot.seed, prompt=shot.text, image=image_digest,
            planned=[plan.width, plan.height, plan.frames, plan.fps], steps=kwargs.get("num_inference_steps"),
            options=hashlib.sha256(self.options.model_dump_json().encode()).hexdigest(),
            diffusers=diffusers.__version__,
        )

    def _call_kwargs(self, pipe, shot: ShotPlan, plan, steps: int) -> dict[str, Any]:
        import torch

        o, r = self.options, self._resolved
        f, known = r.family, r.known
        device = self._info["device"]
        params = call_parameters(type(pipe).__name__)
        names, fixed = GENERIC_CALLS.get(type(pipe).__name__, ({}, {}))
        msl = o.max_sequence_length or f.max_sequence_length
        if f.name == "cogvideox" and not o.max_sequence_length:
            msl = pipe.transformer.config.max_text_seq_length
        wanted: dict[str, Any] = dict(
            prompt=shot.text, height=plan.height, width=plan.width, num_frames=plan.frames,
            num_inference_steps=steps, guidance_scale=self._guidance(pipe), max_sequence_length=msl,
            negative_prompt=o.negative_prompt if o.negative_prompt is not None else f.negative_prompt,
            frame_rate=plan.fps if f.takes_fps else None, output_type="pt",
            # on mps a CPU generator, as diffusers' reproducibility guide does; elsewhere the device's own
            generator=torch.Generator("cpu" if device == "mps" else device).manual_seed(shot.seed),
        )
        if known:
            wanted.update(dict(known.recipe))
            if "sigmas" in wanted:  # a sigma schedule fixes the step count
                wanted["sigmas"] = list(wanted["sigmas"])[:steps] if o.num_inference_steps is None else None
        wanted.update(fixed)
        kwargs = {names.get(k, k): v for k, v in wanted.items() if v is not None and names.get(k, k) in params}
        kwargs.update({k: v for k, v in o.pipeline_kwargs.items() if k in params})
        return kwargs

    def _generate(self, pipe, kwargs: dict[str, Any], steps: int, progress: Progress, metadata: dict,
                  checkpoint: Path | None, keep, key: tuple[str, str]):
        """Denoise (or find the latents an earlier attempt saved for ``key``), save the latents to
        ``checkpoint`` (``keep`` persists the file), then decode them. The generic door keeps the
        pipeline's own decode: its latents are not saved."""
        decoder = DECODERS.get(self._resolved.family.name)
        if decoder is None:
            out, steps_run = self._denoise(pipe, kwargs, steps, progress, metadata)
            report = DecodeReport("not saved: the generic door keeps the pipeline's own decode")
            video, audio = out.frames, getattr(out, "audio", None)
        else:
            saved = load_latents(checkpoint, key)
            if saved is not None:
                report, steps_run = DecodeReport("resumed", file=latents_file(checkpoint, key[1]).name), 0
                progress(steps, steps, "decoding saved latents")
            else:
                out, steps_run = self._denoise(pipe, {**kwargs, "output_type": "latent"}, steps, progress, metadata)
                saved = {"video": out.frames, "generator": kwargs["generator"].get_state(),
                         "audio": getattr(out, "audio", None) if self._resolved.family.audio else None}
                if checkpoint is not None:
                    path = save_latents(checkpoint, key, saved, keep)
                    report = DecodeReport("saved", file=path.name)
                else:
                    report = DecodeReport("not saved: no checkpoint folder (the engine was called outside a job)")
                progress(steps, steps, "decoding")
            video, audio = self._decode(pipe, decoder, saved, kwargs, report)
        frames = _uint8_frames(video[0])
        if self._resolved.family.audio and audio is not None:
            audio = Audio(audio[0].float().cpu().numpy(), int(pipe.vocoder.config.output_sampling_rate))
        else:
            audio = None
        return frames, audio, steps_run, report.as_dict()

    def _denoise(self, pipe, kwargs: dict[str, Any], steps: int, progress: Progress, metadata: dict):
        """Run the pipeline with per-step progress; a cancel raised by progress stops it before any decode."""
        done = [0]

        def step_done(i: int) -> None:
            done[0] = i
            progress(i, steps, f"denoising step {i}/{steps}")  # JobCanceled propagates out of the pipeline

        if "callback_on_step_end" in call_parameters(type(pipe).__name__):
            def on_step_end(p, i, t, callback_kwargs):
                step_done(done[0] + 1)  # counts on across the calls of a two-stage recipe
                return {}

            kwargs["callback_on_step_end"] = on_step_end
            restore = None
        else:  # no step callback (HunyuanVideo 1.5 in diffusers 0.42.1): the scheduler's step is the step's end
            scheduler = pipe.scheduler
            real_step = scheduler.step

            def stepped(*a, **kw):
                out = real_step(*a, **kw)
                step_done(done[0] + 1)
                return out

            scheduler.step = stepped
            restore = scheduler

        try:
            out = self._two_stage(pipe, kwargs) if self.options.two_stage else self._call_pipeline(pipe, **kwargs)
        except JobCanceled:
            metadata["canceled_at_step"] = done[0]
            raise
        except (RuntimeError, ValueError) as exc:
            if "out of memory" in str(exc).lower():
                raise EngineError(f"{self.options.model} ran out of memory at {kwargs.get('width')}x{kwargs.get('height')}x"
                                  f"{kwargs.get('num_frames')}: try profile 'low-memory' (or speed.offload, speed.vae_tiling) or a smaller size") from exc
            raise
        finally:
            if restore is not None:
                del restore.step  # back to the class's method
        return out, done[0]

    def _decode(self, pipe, decoder, saved: dict, kwargs: dict[str, Any], report: DecodeReport):
        """The saved latents through ``decoder``, down the out-of-memory ladder (as loaded, tiled, on the CPU)."""
        device = self._info["device"]
        generator = kwargs["generator"]

        def run(how: str, where: str):
            generator.set_state(saved["generator"])  # the decode noise (LTX) as right after the denoise
            return self._decode_latents(decoder, pipe, saved, kwargs, where)

        try:
            speed = self.options.speed_options()
            # read back, not from the options: the profile or a rung may have set it
            tiled = bool(getattr(pipe.vae, "use_tiling", False))
            # sequential and group offload place every submodule by their own hooks: no CPU rung under them
            own_hooks = speed.offload == "sequential" or bool(speed.group_offload)
            return decode_ladder(run, pipe, device, report, already_tiled=tiled,
                                 offloaded=speed.offload == "model" and device != "cpu", cpu_rung=not own_hooks)
        except DecodeFailed as exc:
            kept = (f"stay in the shot's checkpoint in the job's storage ({report.file}) until the job is deleted"
                    if report.file else "were not saved")
            raise EngineError(f"{self.options.model} ran out of memory decoding {kwargs.get('width')}x{kwargs.get('height')}x"
                              f"{kwargs.get('num_frames')} on every try ({exc}); the denoised latents {kept}") from exc

    def _decode_latents(self, decoder, pipe, saved: dict, kwargs: dict[str, Any], device: str):
        """One decode of saved latents (a seam for tests, as ``_call_pipeline`` is for the denoise)."""
        return decoder(pipe, saved, kwargs, device, kwargs["generator"])

    def _two_stage(self, pipe, kwargs: dict[str, Any]):
        """LTX-2's two-stage recipe: half size, the latent upsampler (x2), then 3 distilled steps at full size."""
        height, width = kwargs["height"], kwargs["width"]
        first = self._call_pipeline(pipe, **{**kwargs, "height": height // 2, "width": width // 2,
                                             "output_type": "latent"})
        latents = self._pipes["upsample"](latents=first.frames, height=height // 2, width=width // 2,
                                          num_frames=kwargs["num_frames"], output_type="latent").frames
        params = call_parameters(type(pipe).__name__)
        off = dict(guidance_scale=1.0, audio_guidance_scale=1.0, stg_scale=0.0, audio_stg_scale=0.0,
                   modality_scale=1.0, audio_modality_scale=1.0)  # the distilled stage 2 runs without guidance
        second = {**kwargs, **{k: v for k, v in off.items() if k in params}, "latents": latents,
                  "audio_latents": first.audio, "sigmas": list(LTX2_STAGE2_SIGMAS),
                  "num_inference_steps": len(LTX2_STAGE2_SIGMAS), "noise_scale": LTX2_STAGE2_SIGMAS[0]}
        return self._call_pipeline(pipe, **second)

    def _call_pipeline(self, pipe, **kwargs):
        """The one place the pipeline is called (a seam for tests and benchmarks)."""
        if self._offloaded is not None and self._offloaded is not pipe:
            # pipelines share modules but not offload hooks: hook the one about to run, in its own order
            install_model_offload(pipe, self._info["device"])
            self._offloaded = pipe
        return pipe(**kwargs)

    # ----------------------------------------------------------------- shutdown

    def _release(self) -> None:
        had_cuda = self._info.get("device") == "cuda"
        self._pipes, self._key, self._info, self._resolved, self._offloaded = {}, None, {}, None, None
        gc.collect()
        if had_cuda:
            _torch().cuda.empty_cache()

    def close(self) -> None:
        with self._lock:
            self._release()


def _same_components(pipe, cls):
    """A pipeline of class ``cls`` over ``pipe``'s loaded modules (and its registered config such as boundary_ratio)."""
    params = inspect.signature(cls.__init__).parameters
    parts = {k: v for k, v in pipe.components.items() if k in params}
    parts.update({k: v for k, v in pipe.config.items() if k in params and k not in parts and not k.startswith("_")
                  and not isinstance(v, (list, tuple))})
    return cls(**parts)


def _uint8_frames(video) -> np.ndarray:
    """One video from a pipeline's output as (frames, H, W, 3) uint8: torch (F, 3, H, W), numpy (F, H, W, 3) or PIL."""
    torch = _torch()
    if isinstance(video, torch.Tensor):
        # round, don't truncate; convert on the device so only uint8 crosses to the host
        frames = (video.float() * 255).round_().clamp_(0, 255).to(dtype=torch.uint8)
        if frames.shape[-1] != 3:
            frames = frames.permute(0, 2, 3, 1)
        return frames.contiguous().cpu().numpy()
    if isinstance(video, np.ndarray):
        return np.clip(np.rint(video.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    return np.stack([np.asarray(frame.convert("RGB")) for frame in video])


def _fit_audio(audio: Audio, duration_s: float) -> tuple[Audio, dict[str, Any]]:
    """The generated track cut (or padded with silence) to the shot's length, as the frames are."""
    want = int(round(duration_s * audio.sample_rate))
    samples = np.clip(audio.samples.astype(np.float32), -1.0, 1.0)
    generated = samples.shape[-1]
    if generated >= want:
        samples = samples[:, :want]
    else:
        samples = np.pad(samples, ((0, 0), (0, want - generated)))
    meta = {"sample_rate": audio.sample_rate, "channels": int(samples.shape[0]),
            "generated_s": round(generated / audio.sample_rate, 4), "duration_s": round(want / audio.sample_rate, 4)}
    return Audio(np.ascontiguousarray(samples), audio.sample_rate), meta


def generic_models(engine_id: str) -> list[ModelSpec]:
    """Ids for the folders under $REELFORGE_WEIGHTS_DIR that hold a diffusers pipeline no known model names.

    ``reelforge.diffusers.<folder>``: read from model_index.json only; whether the pipeline fits the
    generic door is checked when a job is submitted.
    """
    root = os.environ.get(WEIGHTS_DIR_ENV)
    if not root or not Path(root).expanduser().is_dir():
        return []
    known_folders = {m.repo.rsplit("/", 1)[-1] for m in KNOWN_MODELS.values()}
    specs = []
    for folder in sorted(Path(root).expanduser().iterdir()):
        if folder.name in known_folders or not (folder / "model_index.json").is_file():
            continue
        try:
            declared = pipeline_class_name(folder)
        except EngineError:
            continue
        if any(declared in f.pipelines for f in FAMILIES.values()):
            continue
        grid = Grid(24, 129, 1280 * 720, "read from its configs")
        limits = replace(model_limits(KnownModel("generic", "", "", grid)), image_input=False)
        specs.append(ModelSpec(f"reelforge.diffusers.{folder.name}", engine_id,
                               f"{declared} from {folder} (diffusers, generic door): text-to-video; grid from its configs",
                               limits, engine_options={"model": folder.name, "weights": str(folder)}))
    return specs


def locate_weights(o: DiffusersOptions) -> WeightsSource:
    """Where the weights for options ``o`` are (paths and the HF cache's refs only; nothing is read)."""
    known = KNOWN_MODELS.get(o.model)
    if known is not None and o.repo == known.repo == "Lightricks/LTX-Video":
        # its root also holds GB-sized single-file checkpoints: suggest fetching just the diffusers folders
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

"""The diffusers engine: open-weight video models (LTX-2, Wan 2.1/2.2, HunyuanVideo 1.5, ...) on the user's machine.

torch and diffusers are imported inside methods only, so importing this module (and listing its
models) stays fast and works without the ``reelforge[diffusers]`` extra. One pipeline is loaded
per engine instance on the first shot and reused for every later shot and job; the worker keeps
one instance per (engine, options). The options and how they resolve to a weights folder are in
``options``, loading in ``loading``; how requests are fitted to each model and mapped back is in
``adapt``; where weights come from is in ``weights``.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, Iterable, cast

import numpy as np

from reelforge.errors import EngineError, JobCanceled, RequestError
from reelforge.request.limits import ModelSpec
from reelforge.engines.base import Audio, Engine, EngineOptions, Progress, RenderContext, ShotOutput, ShotPlan
from reelforge.engines.diffusers.decode import (
    DECODERS, DecodeFailed, DecodeReport, decode_ladder, latents_file, latents_key, load_latents,
    save_latents,
)
from reelforge.engines.diffusers.adapt import adapt_frames, fit_conditioning_image, plan_generation, size_map, time_map
from reelforge.engines.diffusers.families import FAMILIES, KNOWN_MODELS, LTX2_STAGE2_SIGMAS, SUMMARIES, KnownModel
from reelforge.engines.diffusers.loading import device_and_dtype, load_pipelines
from reelforge.engines.diffusers.options import (
    GENERIC_CALLS, DiffusersOptions, Resolved, call_parameters, generic_models, install_hint, locate_weights,
    missing_packages, resolve, shot_field,
)
from reelforge.engines.diffusers.output import fit_audio, shot_record, uint8_frames
from reelforge.engines.diffusers.speed import cache_stats, install_model_offload
from reelforge.engines.diffusers.weights import WeightsSource

__all__ = ["DiffusersEngine", "DiffusersOptions"]

log = logging.getLogger("reelforge.engines.diffusers")


class DiffusersEngine(Engine):
    """Open-weight video models through Hugging Face diffusers, from local weights only."""

    engine_id: ClassVar[str] = "diffusers"
    summary: ClassVar[str] = ("Open-weight video models (LTX-2, LTX-Video, Wan 2.1/2.2, HunyuanVideo 1.5, CogVideoX, "
                              "any diffusers video pipeline) through diffusers")
    Options: ClassVar[type[EngineOptions]] = DiffusersOptions
    options: DiffusersOptions  # what Engine.__init__ parses with Options

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
        opts = cast(DiffusersOptions, cls.parse_options(options))
        missing = missing_packages()
        if missing:
            raise EngineError(f"the diffusers engine needs {', '.join(missing)}: {install_hint()}")
        resolve(opts)

    @classmethod
    def check_request(cls, options: dict[str, Any], request, shots) -> None:
        """Refuse, before recording, shots outside the model's grid or its tasks (RequestError naming the field)."""
        o = cast(DiffusersOptions, cls.parse_options(options))
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
        """The device and dtype to load on (a seam for tests)."""
        return device_and_dtype(self.options, torch)

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
            return cast(Resolved, self._resolved), 0.0
        self._release()
        pipes, speed_report, pipe = load_pipelines(o, r, speed, device, dtype)
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
        return cast(Iterable[np.ndarray], self.render(shot, RenderContext(progress)).frames)

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
            audio, audio_meta = fit_audio(audio, shot.duration_s)
        metadata.update(self._info)
        metadata["load_s"] = round(metadata.get("load_s", 0.0) + load_s, 4)
        shots = [s for s in metadata.get("shots", []) if s.get("index") != shot.index]
        shots.append(shot_record(shot, task, type(run_pipe).__name__, plan, rules, smap, tmap, (gen_w, gen_h, n_src),
                                 audio=audio_meta, steps=steps, steps_run=steps_run, decode=decode,
                                 timings={"load_s": round(load_s, 4), "generate_s": round(generate_s, 4)}, cache=cache))
        metadata["shots"] = sorted(shots, key=lambda s: s["index"])
        return ShotOutput(frames=adapt_frames(frames, tmap, smap, shot.width, shot.height), audio=audio)

    def _latents_key(self, pipe, shot: ShotPlan, plan, kwargs: dict[str, Any]) -> tuple[str, str]:
        """What the latents of this shot depend on: a changed plan, prompt, seed or option never reuses them."""
        import diffusers

        image = kwargs.get("image")
        image_digest = hashlib.sha256(image.tobytes() + repr(image.size).encode()).hexdigest() if image is not None else None
        return latents_key(
            model=self.options.model, revision=cast(Resolved, self._resolved).weights.revision,
            pipeline=type(pipe).__name__, seed=shot.seed, prompt=shot.text, image=image_digest,
            planned=[plan.width, plan.height, plan.frames, plan.fps], steps=kwargs.get("num_inference_steps"),
            options=hashlib.sha256(self.options.model_dump_json().encode()).hexdigest(),
            diffusers=diffusers.__version__,
        )

    def _call_kwargs(self, pipe, shot: ShotPlan, plan, steps: int) -> dict[str, Any]:
        import torch

        o, r = self.options, cast(Resolved, self._resolved)
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
        decoder = DECODERS.get(cast(Resolved, self._resolved).family.name)
        if decoder is None:
            out, steps_run = self._denoise(pipe, kwargs, steps, progress, metadata)
            report = DecodeReport("not saved: the generic door keeps the pipeline's own decode")
            video, audio = out.frames, getattr(out, "audio", None)
        else:
            saved = load_latents(checkpoint, key)
            if saved is not None:
                report, steps_run = DecodeReport("resumed", file=latents_file(cast(Path, checkpoint), key[1]).name), 0
                progress(steps, steps, "decoding saved latents")
            else:
                out, steps_run = self._denoise(pipe, {**kwargs, "output_type": "latent"}, steps, progress, metadata)
                saved = {"video": out.frames, "generator": kwargs["generator"].get_state(),
                         "audio": getattr(out, "audio", None) if cast(Resolved, self._resolved).family.audio else None}
                if checkpoint is not None:
                    path = save_latents(checkpoint, key, saved, keep)
                    report = DecodeReport("saved", file=path.name)
                else:
                    report = DecodeReport("not saved: no checkpoint folder (the engine was called outside a job)")
                progress(steps, steps, "decoding")
            video, audio = self._decode(pipe, decoder, saved, kwargs, report)
        frames = uint8_frames(video[0])
        if cast(Resolved, self._resolved).family.audio and audio is not None:
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
            # what was applied at load (the speed report), not what the options asked for
            applied = {e["feature"]: e["requested"] for e in self._info["speed"] if e["applied"]}
            tiled = bool(getattr(pipe.vae, "use_tiling", False))  # the profile or a rung may have set it
            # sequential and group offload place every submodule by their own hooks: no CPU rung under them
            own_hooks = applied.get("offload") == "sequential" or "group_offload" in applied
            return decode_ladder(run, pipe, device, report, already_tiled=tiled,
                                 offloaded=self._offloaded is not None, cpu_rung=not own_hooks)
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
            import torch

            torch.cuda.empty_cache()

    def close(self) -> None:
        with self._lock:
            self._release()

"""The diffusers engine's options, its install checks, and resolving options to a weights folder, a family and the
pipeline class per task (model_index.json and configs only: no weights are read, torch is not imported)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import json
import os
import shlex
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import Field, model_validator

from reelforge.errors import EngineError
from reelforge.request.limits import ModelSpec
from reelforge.engines.base import EngineOptions
from reelforge.engines.diffusers.adapt import ModelRules
from reelforge.engines.diffusers.families import (
    FAMILIES, KNOWN_MODELS, Family, Grid, KnownModel, folder_rules, model_limits, pipeline_class_name,
)
from reelforge.engines.diffusers.profiles import SpeedOptions, resolve_speed
from reelforge.engines.diffusers.weights import DIFFUSERS_FILES, WEIGHTS_DIR_ENV, WeightsSource, download_command, resolve_weights

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
            self.family = cast(Any, known.family)
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
        family = FAMILIES[known.family if known else cast(str, o.family)]
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
    return resolve_weights(o.model, cast(str, o.repo), o.weights, known.cache_aliases if known else ())

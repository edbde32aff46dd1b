"""The model families the diffusers engine drives, the model ids it serves, and each model's grid.

A *family* says how to call one kind of pipeline (its classes, argument names, defaults, what it
returns); a *known model* is one checkpoint of a family with its native grid (the sizes, fps and
frame counts it was trained for) and what it takes. The numbers are the models' documented
operating points (model cards, diffusers docs; ``../shared/reference/video-models-2026.md``).
Side and frame multiples are read from the weights folder's configs (``folder_rules``), so a
tiny test model and the real one go through the same code.

Pure Python: nothing here imports torch or diffusers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reelforge.errors import EngineError
from reelforge.request.limits import LOCAL, Limits
from reelforge.engines.diffusers.adapt import ModelRules

# Per-family default negative prompts: the ones the model cards and diffusers docs use.
LTX_NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"
WAN_NEGATIVE = ("bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, "
                "static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, "
                "extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, "
                "fused fingers, still picture, messy background, three legs, many people in the background, "
                "walking backwards")
HUNYUAN_NEGATIVE = "low quality, blurry, distorted, static, deformed, watermark, subtitles"
COGVIDEOX_NEGATIVE = "low quality, blurry, distorted, static, watermark"


@dataclass(frozen=True)
class Family:
    """How to call one kind of pipeline."""

    name: str
    pipelines: tuple[str, ...]  # pipeline classes a weights folder of this family may declare
    t2v: str | None  # pipeline class for text-to-video
    i2v: str | None  # pipeline class for image-to-video (shares the loaded components when the checkpoint has both)
    steps: int
    guidance: float | None  # None: the pipeline's guider component holds it (HunyuanVideo 1.5)
    max_sequence_length: int | None
    negative_prompt: str
    takes_fps: bool = False  # the pipeline takes frame_rate: generate at the requested fps
    audio: bool = False  # the pipeline returns an audio track beside the video
    last_frame: bool = False  # the image-to-video pipeline can also take a last frame
    float32_vae: bool = False
    i2v_sized: bool = True  # False: the image-to-video call takes no height/width (it picks its own bucket)


FAMILIES = {
    "ltx": Family("ltx", ("LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline"), "LTXPipeline",
                  "LTXImageToVideoPipeline", steps=50, guidance=3.0, max_sequence_length=128,
                  negative_prompt=LTX_NEGATIVE, takes_fps=True),
    "ltx2": Family("ltx2", ("LTX2Pipeline", "LTX2ImageToVideoPipeline", "LTX2ConditionPipeline"), "LTX2Pipeline",
                   "LTX2ImageToVideoPipeline", steps=40, guidance=4.0, max_sequence_length=1024,
                   negative_prompt=LTX_NEGATIVE, takes_fps=True, audio=True),
    # the diffusers docs load Wan's VAE in float32 and the rest in bfloat16
    "wan": Family("wan", ("WanPipeline", "WanImageToVideoPipeline"), "WanPipeline", "WanImageToVideoPipeline",
                  steps=50, guidance=5.0, max_sequence_length=512, negative_prompt=WAN_NEGATIVE, last_frame=True,
                  float32_vae=True),
    "hunyuanvideo15": Family("hunyuanvideo15", ("HunyuanVideo15Pipeline", "HunyuanVideo15ImageToVideoPipeline"),
                             "HunyuanVideo15Pipeline", "HunyuanVideo15ImageToVideoPipeline", steps=50, guidance=None,
                             max_sequence_length=None, negative_prompt=HUNYUAN_NEGATIVE, i2v_sized=False),
    "cogvideox": Family("cogvideox", ("CogVideoXPipeline", "CogVideoXImageToVideoPipeline"), "CogVideoXPipeline",
                        "CogVideoXImageToVideoPipeline", steps=50, guidance=6.0, max_sequence_length=226,
                        negative_prompt=COGVIDEOX_NEGATIVE),
    # any other diffusers video pipeline with the common call signature (see diffusers_generic)
    "generic": Family("generic", (), None, None, steps=50, guidance=5.0, max_sequence_length=None, negative_prompt=""),
}


@dataclass(frozen=True)
class Grid:
    """A checkpoint's native grid: fps, frame budget and pixel budget (side multiples come from its configs)."""

    fps: int  # the fps it was trained at (generated at the requested fps when the family takes fps)
    max_frames: int
    max_pixels: int
    native: str  # the native sizes, in words, for `reelforge models`


@dataclass(frozen=True)
class KnownModel:
    family: str
    repo: str
    summary: str
    grid: Grid
    tasks: tuple[str, ...] = ("t2v",)  # "t2v", "i2v": what this checkpoint does
    cache_aliases: tuple[str, ...] = ()
    steps: int | None = None  # the checkpoint's recipe, when it differs from its family's
    guidance: float | None = None
    recipe: tuple[tuple[str, Any], ...] = ()  # further call arguments of the recipe (e.g. distilled sigmas)
    gpu_dtype: str | None = None  # the card's dtype on GPUs when it is not bfloat16

    @property
    def image_only(self) -> bool:
        return self.tasks == ("i2v",)

    @property
    def limits(self) -> Limits:
        return model_limits(self)

    def takes(self) -> dict[str, bool]:
        f = FAMILIES[self.family]
        return {"text": "t2v" in self.tasks, "image": "i2v" in self.tasks,
                "last_frame": "i2v" in self.tasks and f.last_frame, "audio_out": f.audio}


def model_limits(m: KnownModel) -> Limits:
    """LOCAL, with what one generation can honestly cover (a shot lasts at most what the frame budget holds).

    A whole video may still last up to 120 s (one generation per shot); automated multi-shot
    durations are whole multiples of the shot length.
    """
    f = FAMILIES[m.family]
    # a family that takes fps can generate fewer frames per second (resampled): up to 10 s a shot
    shot_max = 10 if f.takes_fps else max(1, (m.grid.max_frames - 1) // m.grid.fps)
    shot_seconds = min(shot_max, 6 if f.takes_fps else shot_max)
    return replace(
        LOCAL,
        text_video_durations=tuple(range(1, shot_max + 1)),
        shot_durations=tuple(range(1, shot_max + 1)),
        shot_seconds=shot_seconds,
        automated_durations=tuple(range(shot_seconds, 121, shot_seconds)),
        max_side=1920,
        image_input="i2v" in m.tasks,
        grid=m.grid.native,
    )


def _summary(name: str, m: KnownModel) -> str:
    f = FAMILIES[m.family]
    tasks = " and ".join({"t2v": "text", "i2v": "image"}[t] for t in m.tasks) + "-to-video"
    takes = [k.replace("_", " ") for k, v in m.takes().items() if v and k != "text"]
    fps = f"{m.grid.fps} fps native" + (", any fps asked" if f.takes_fps else ", resampled to the fps asked")
    return (f"{m.summary} (diffusers, local weights): {tasks}; grid {m.grid.native}, up to {m.grid.max_frames} frames, "
            f"{fps}; takes {', '.join(takes) or 'text only'}")


K = KnownModel
_LTX_GRID = Grid(30, 257, 1280 * 720, "sides multiple of 32 up to ~1280x720 (1216x704 native)")
_LTX2_GRID = Grid(24, 257, 1920 * 1088, "sides multiple of 32 up to ~1920x1088 (768x512 and 1280x704 typical)")
_WAN21_GRID = Grid(16, 81, 832 * 480, "sides multiple of 16 up to ~832x480 (480p)")
_WAN22_5B_GRID = Grid(24, 121, 1280 * 704, "sides multiple of 32 up to 1280x704 / 704x1280")
_WAN22_A14B_GRID = Grid(16, 81, 1280 * 720, "sides multiple of 16 up to 1280x720 (480p and 720p)")
_HY15_GRID = Grid(24, 121, 848 * 480, "sides multiple of 16 up to ~848x480 (480p)")
_COG_GRID = Grid(8, 49, 720 * 480, "720x480 only")

# LTX-2's distilled recipe: 8 sigmas at guidance 1 (diffusers.pipelines.ltx2.utils.DISTILLED_SIGMA_VALUES)
LTX2_DISTILLED_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875)
# the two-stage recipe's stage 2 at full size, after the latent upsampler (STAGE_2_DISTILLED_SIGMA_VALUES)
LTX2_STAGE2_SIGMAS = (0.909375, 0.725, 0.421875)

KNOWN_MODELS = {
    "ltx-video": K("ltx", "Lightricks/LTX-Video", "LTX-Video 0.9 2B", _LTX_GRID, ("t2v", "i2v")),
    "ltx-2": K("ltx2", "Lightricks/LTX-2", "LTX-2 19B with its audio track", _LTX2_GRID, ("t2v", "i2v")),
    "ltx-2-distilled": K("ltx2", "blanchon/LTX-2-Distilled-diffusers", "LTX-2 19B distilled (8 steps, no CFG) with audio",
                         _LTX2_GRID, ("t2v", "i2v"), steps=8, guidance=1.0,
                         recipe=(("sigmas", LTX2_DISTILLED_SIGMAS),)),
    "wan2.1-t2v-1.3b": K("wan", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "Wan 2.1 T2V 1.3B", _WAN21_GRID),
    "wan2.1-i2v-14b-480p": K("wan", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "Wan 2.1 I2V 14B 480p", _WAN21_GRID,
                             ("i2v",)),
    "wan2.2-ti2v-5b": K("wan", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "Wan 2.2 TI2V 5B", _WAN22_5B_GRID, ("t2v", "i2v")),
    "wan2.2-t2v-a14b": K("wan", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "Wan 2.2 T2V A14B (two experts)", _WAN22_A14B_GRID),
    "wan2.2-i2v-a14b": K("wan", "Wan-AI/Wan2.2-I2V-A14B-Diffusers", "Wan 2.2 I2V A14B (two experts)", _WAN22_A14B_GRID,
                         ("i2v",)),
    "hunyuanvideo-1.5": K("hunyuanvideo15", "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_t2v",
                          "HunyuanVideo 1.5 8.3B 480p", _HY15_GRID),
    "hunyuanvideo-1.5-i2v": K("hunyuanvideo15", "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v",
                              "HunyuanVideo 1.5 8.3B 480p image-to-video", _HY15_GRID, ("i2v",)),
    "cogvideox-2b": K("cogvideox", "zai-org/CogVideoX-2b", "CogVideoX 2B", _COG_GRID,
                      cache_aliases=("THUDM/CogVideoX-2b",), gpu_dtype="float16"),
    "cogvideox-5b-i2v": K("cogvideox", "zai-org/CogVideoX-5b-I2V", "CogVideoX 5B image-to-video", _COG_GRID, ("i2v",),
                          cache_aliases=("THUDM/CogVideoX-5b-I2V",)),
}
SUMMARIES = {name: _summary(name, m) for name, m in KNOWN_MODELS.items()}


# ------------------------------------------------------------------ what a weights folder says (configs only)

def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise EngineError(f"{path} is not valid JSON: {exc}") from None


def pipeline_class_name(folder: Path) -> str:
    """The pipeline class a diffusers folder declares in its model_index.json."""
    name = read_json(folder / "model_index.json").get("_class_name")
    if not isinstance(name, str):
        raise EngineError(f"{folder / 'model_index.json'} names no pipeline (_class_name)")
    return name


def _patch(value, default: int = 1) -> tuple[int, int]:
    """(temporal, spatial) patch sizes from a config's patch_size: an int or a (t, h, w) list."""
    if value is None:
        return 1, default
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return 1, int(value)


def folder_rules(family: str, folder: Path, grid: Grid | None) -> ModelRules:
    """What the pipeline in ``folder`` accepts, from its vae/transformer configs (no weights are read).

    The formulas are the ones each pipeline's ``__init__`` uses to derive its scale factors.
    """
    vae = read_json(folder / "vae" / "config.json")
    tr = read_json(folder / "transformer" / "config.json")
    fps, max_frames, max_pixels = (grid.fps, grid.max_frames, grid.max_pixels) if grid else (24, 129, 1280 * 720)
    if family in ("ltx", "ltx2"):
        ps, pt = int(tr.get("patch_size", 1)), int(tr.get("patch_size_t", 1))
        scaling = sum(bool(x) for x in vae.get("spatio_temporal_scaling", ()))
        s = vae.get("spatial_compression_ratio") or vae.get("patch_size", 1) * 2 ** scaling
        t = vae.get("temporal_compression_ratio") or vae.get("patch_size_t", 1) * 2 ** scaling
        # LTX-2 checks heights and widths against 32 whatever the VAE
        return ModelRules(max(32, s * ps), t * pt, max_frames, max_pixels, native_fps=fps, takes_fps=True)
    if family == "wan":
        _, ps = _patch(tr.get("patch_size"), 2)
        side = vae.get("scale_factor_spatial", 8) * ps
        return ModelRules(side, vae.get("scale_factor_temporal", 4), max_frames, max_pixels, native_fps=fps)
    if family == "hunyuanvideo15":
        _, ps = _patch(tr.get("patch_size"), 1)
        return ModelRules(vae.get("spatial_compression_ratio", 16) * ps, vae.get("temporal_compression_ratio", 4),
                          max_frames, max_pixels, native_fps=fps, target_size=tr.get("target_size", 640))
    if family == "cogvideox":
        sf = 2 ** (len(vae.get("block_out_channels", (128, 256, 256, 512))) - 1)
        ps = int(tr.get("patch_size", 2))
        frames = int(tr.get("sample_frames", 49))
        return ModelRules(sf * ps, vae.get("temporal_compression_ratio", 4), frames, max_pixels,
                          fixed_size=(tr.get("sample_width", 90) * sf, tr.get("sample_height", 60) * sf),
                          fixed_frames=frames, native_fps=fps)
    # generic: the usual config names, else the common defaults
    s = vae.get("scale_factor_spatial") or vae.get("spatial_compression_ratio")
    if not s:
        s = 2 ** (len(vae["block_out_channels"]) - 1) if vae.get("block_out_channels") else 8
    t = vae.get("scale_factor_temporal") or vae.get("temporal_compression_ratio") or 4
    _, ps = _patch(tr.get("patch_size"), 1)
    return ModelRules(int(s) * ps, int(t), max_frames, max_pixels, native_fps=fps)

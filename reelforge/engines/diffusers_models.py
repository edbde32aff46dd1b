"""The model families the diffusers engine drives and the model ids it serves, with their limits.

Per-family numbers are the models' documented operating points (LTX-Video README: under 257
frames, ~720x1280; Wan 2.1 1.3B: 81 frames at 16 fps, 480p; CogVideoX: 720x480, 49 frames at
8 fps). Side and frame multiples are not listed here: the engine reads them from the loaded model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..models import LOCAL, Limits


@dataclass(frozen=True)
class Family:
    """What differs between model families; sizes and frame multiples are read from the loaded model."""

    name: str
    pipelines: tuple[str, ...]  # pipeline classes a weights folder may declare
    t2v: str  # pipeline class for text-to-video, built from the loaded components
    i2v: str | None  # pipeline class for image-to-video, sharing those components
    max_frames: int
    max_pixels: int
    fixed_fps: int | None  # the fps it was trained at when it takes no fps input
    steps: int
    guidance: float
    max_sequence_length: int
    float32_vae: bool = False


FAMILIES = {
    "ltx": Family("ltx", ("LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline"), "LTXPipeline",
                  "LTXImageToVideoPipeline", max_frames=257, max_pixels=1280 * 720, fixed_fps=None, steps=50, guidance=3.0, max_sequence_length=128),
    # the diffusers docs load Wan's VAE in float32 and the rest in bfloat16
    "wan": Family("wan", ("WanPipeline",), "WanPipeline", None, max_frames=81, max_pixels=832 * 480, fixed_fps=16,
                  steps=50, guidance=5.0, max_sequence_length=512, float32_vae=True),
    "cogvideox": Family("cogvideox", ("CogVideoXPipeline",), "CogVideoXPipeline", None, max_frames=49,
                        max_pixels=720 * 480, fixed_fps=8, steps=50, guidance=6.0,
                        max_sequence_length=226),
}


@dataclass(frozen=True)
class KnownModel:
    family: str
    repo: str
    summary: str
    limits: Limits
    cache_aliases: tuple[str, ...] = ()


def _limits(shot_max_s: int, shot_seconds: int, image_input: bool = True) -> Limits:
    """LOCAL, with what one generation can honestly cover: a shot lasts at most ``shot_max_s``.

    A whole video may still last up to 120 s (one generation per shot); automated multi-shot
    durations are whole multiples of ``shot_seconds`` so that no shot runs past ``shot_max_s``.
    """
    return replace(
        LOCAL,
        text_video_durations=tuple(range(1, shot_max_s + 1)),
        shot_durations=tuple(range(1, shot_max_s + 1)),
        shot_seconds=shot_seconds,
        automated_durations=tuple(range(shot_seconds, 121, shot_seconds)),
        max_side=1280,  # sides above are generated at the model's size and upscaled: not worth offering
        image_input=image_input,
    )


KNOWN_MODELS = {
    "ltx-video": KnownModel("ltx", "Lightricks/LTX-Video",
                            "LTX-Video 2B (diffusers, local weights): text- and image-to-video, up to 10 s a shot",
                            _limits(10, 6)),
    "wan2.1-t2v-1.3b": KnownModel("wan", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
                                  "Wan 2.1 T2V 1.3B (diffusers, local weights): text-to-video at 16 fps, 5 s a shot",
                                  _limits(5, 5, image_input=False)),
    "cogvideox-2b": KnownModel("cogvideox", "zai-org/CogVideoX-2b",
                               "CogVideoX 2B (diffusers, local weights): text-to-video, fixed 720x480, 49 frames at 8 fps",
                               _limits(6, 6, image_input=False), cache_aliases=("THUDM/CogVideoX-2b",)),
}

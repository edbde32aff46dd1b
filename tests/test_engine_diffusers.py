"""The diffusers engine on tiny random LTX-Video, Wan 2.1 and CogVideoX pipelines, loaded the real way.

tests/tiny_pipelines.py builds each pipeline in code and ``save_pretrained``s it to a temp
folder; the engine then loads it with ``from_pretrained(folder, local_files_only=True)``, the
path real weights take. Nothing is downloaded (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub reads its constants

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch", reason="needs the extra: pip install 'reelforge[diffusers]'")
pytest.importorskip("diffusers", reason="needs the extra: pip install 'reelforge[diffusers]'")

from reelforge.engines.base import NullProgress, ShotPlan
from reelforge.engines.diffusers.adapt import (
    ModelRules, fit_conditioning_image, plan_generation, size_map, time_map,
)
from reelforge.errors import EngineError, JobCanceled, RequestError



# --------------------------------------------------------------- planning and mapping (numpy only)

REAL_LTX = ModelRules(32, 8, 257, 1280 * 720, native_fps=30, takes_fps=True)
REAL_WAN = ModelRules(16, 4, 81, 832 * 480, native_fps=16)
REAL_WAN5B = ModelRules(32, 4, 121, 1280 * 704, native_fps=24)
REAL_COG = ModelRules(16, 4, 49, 720 * 480, fixed_size=(720, 480), fixed_frames=49, native_fps=8)


@pytest.mark.parametrize(
    "rules, request_, expected",
    [
        (REAL_LTX, (1280, 720, 6, 24), (1280, 736, 145, 24)),  # 8k+1 >= 144; sides up to /32 (a 16 px crop)
        (REAL_LTX, (1280, 720, 10, 30), (1280, 736, 257, 25)),  # 300 frames > 257: generated at 25 fps, resampled
        (REAL_WAN, (832, 480, 5, 24), (832, 480, 81, 16)),  # Wan runs at its 16 fps, resampled to 24
        (REAL_WAN, (640, 360, 2, 24), (640, 368, 33, 16)),
        (REAL_WAN5B, (1280, 704, 5, 24), (1280, 704, 121, 24)),  # TI2V-5B's native grid
        (REAL_COG, (720, 480, 6, 8), (720, 480, 49, 8)),  # fixed size and length
        (REAL_COG, (710, 470, 3, 24), (720, 480, 49, 8)),  # a crop of less than 16 px a side
    ],
)
def test_plan_fits_real_model_grids(rules, request_, expected):
    w, h, d, fps = request_
    plan = plan_generation(rules, w, h, d, fps)
    assert (plan.width, plan.height, plan.frames, plan.fps) == expected
    assert plan.width % rules.side_multiple == 0 and plan.height % rules.side_multiple == 0
    assert (plan.frames - 1) % rules.frame_multiple == 0 and plan.frames <= rules.max_frames
    assert 0 <= plan.width - w < rules.side_multiple and 0 <= plan.height - h < rules.side_multiple


@pytest.mark.parametrize(
    "rules, request_, field, said",
    [
        (REAL_LTX, (1920, 1080, 2, 24), "dimension", "above this model's grid of 921600 pixels"),  # would need a scale
        (REAL_WAN5B, (1280, 720, 2, 24), "dimension", "above this model's grid"),  # 720 > 704: no upscaling
        (REAL_COG, (1280, 720, 2, 8), "dimension", "it generates 720x480; allowed: 720x480, or less than 16 px"),
        (REAL_COG, (640, 480, 2, 8), "dimension", "outside"),  # an 80 px crop is more than one multiple
        (REAL_COG, (720, 480, 7, 8), "durationSeconds", "allowed: 1 to 6"),  # 49 frames at 8 fps: no slow motion
        (REAL_WAN, (832, 480, 6, 16), "durationSeconds", "allowed: 1 to 5"),  # 97 frames > 81 at its fixed 16 fps
    ],
)
def test_plan_refuses_what_is_outside_the_grid_naming_the_field(rules, request_, field, said):
    w, h, d, fps = request_
    with pytest.raises(RequestError) as err:
        plan_generation(rules, w, h, d, fps)
    assert err.value.field == f"videoGenerationConfig.{field}" and said in err.value.message


def test_plan_rejects_invalid_overrides_instead_of_rounding():
    with pytest.raises(EngineError, match="generation_frames=24 is not 8k\\+1"):
        plan_generation(REAL_LTX, 1280, 720, 1, 24, gen_frames=24)
    with pytest.raises(EngineError, match="generation_width=720 is not a multiple of 32"):
        plan_generation(REAL_LTX, 1280, 720, 1, 24, gen_width=720)


def test_time_map_realtime_and_stretched():
    same = time_map(16, 8, 17, 8)  # LTX made one frame more than asked: drop it
    assert same.indices == tuple(range(16)) and same.mode == "realtime" and same.dropped == 1
    down = time_map(48, 24, 33, 16)  # Wan's 16 fps shown at 24 fps: every other source frame twice
    assert down.mode == "realtime" and down.indices[:6] == (0, 1, 1, 2, 3, 3) and down.indices[-1] == 31
    slow = time_map(48, 8, 49, 8)  # CogVideoX's 6.1 s clip is long enough for 6 s
    assert slow.mode == "realtime"
    stretched = time_map(16, 8, 9, 8)  # 1.125 s of video over 2 s
    assert stretched.mode == "stretched" and stretched.speed == pytest.approx(0.5625)
    assert stretched.indices[0] == 0 and stretched.indices[-1] == 8 and stretched.dropped == 0
    assert list(stretched.indices) == sorted(stretched.indices)


def test_size_map_crops_then_scales_and_image_goes_where_the_crop_takes_it():
    assert size_map(64, 64, 64, 48).crop == (0, 8, 64, 48) and not size_map(64, 64, 64, 48).scaled
    cog = size_map(720, 480, 1280, 720)  # 16:9 out of 3:2, then scaled up
    assert cog.crop == (0, 37, 720, 405) and cog.scaled
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    fitted = fit_conditioning_image(img, size_map(64, 64, 64, 48), 64, 64)
    arr = np.asarray(fitted)
    assert fitted.size == (64, 64) and np.array_equal(arr[8:56], np.asarray(img))
    assert np.array_equal(arr[0], arr[8]) and np.array_equal(arr[63], arr[55])  # edge padding


def test_import_stays_light_and_lists_models():
    code = ("import sys, reelforge.engines.diffusers.engine as d; specs = d.DiffusersEngine.models(); "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'heavy import'; "
            "print(sorted(s.model_id for s in specs))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert out.returncode == 0, out.stderr
    assert "reelforge.cogvideox-2b" in out.stdout and "reelforge.ltx-video" in out.stdout
    assert "reelforge.wan2.1-t2v-1.3b" in out.stdout and "reelforge.wan2.2-ti2v-5b" in out.stdout


def test_model_specs():
    from reelforge.engines.diffusers.engine import DiffusersEngine

    specs = {s.model_id: s for s in DiffusersEngine.models()}
    assert {"reelforge.ltx-video", "reelforge.ltx-2", "reelforge.ltx-2-distilled", "reelforge.wan2.1-t2v-1.3b",
            "reelforge.wan2.1-i2v-14b-480p", "reelforge.wan2.2-ti2v-5b", "reelforge.wan2.2-t2v-a14b",
            "reelforge.wan2.2-i2v-a14b", "reelforge.hunyuanvideo-1.5", "reelforge.hunyuanvideo-1.5-i2v",
            "reelforge.cogvideox-2b", "reelforge.cogvideox-5b-i2v"} == set(specs)
    assert {s.engine for s in specs.values()} == {"diffusers"}
    assert specs["reelforge.ltx-video"].engine_options == {"model": "ltx-video", "family": "ltx"}
    assert specs["reelforge.wan2.1-t2v-1.3b"].limits.text_video_durations == (1, 2, 3, 4, 5)  # 81 frames at 16 fps
    assert specs["reelforge.wan2.2-ti2v-5b"].limits.text_video_durations == (1, 2, 3, 4, 5)  # 121 frames at 24 fps
    assert specs["reelforge.cogvideox-2b"].limits.duration_range == (1, 120)  # many shots, each <= 6 s
    assert not specs["reelforge.wan2.2-t2v-a14b"].limits.image_input and specs["reelforge.wan2.2-i2v-a14b"].limits.image_input
    ltx2 = specs["reelforge.ltx-2"].summary
    assert "audio out" in ltx2 and "sides multiple of 32" in ltx2 and "24 fps native" in ltx2
    assert "1280x704" in specs["reelforge.wan2.2-ti2v-5b"].summary
    assert "last frame" in specs["reelforge.wan2.2-i2v-a14b"].summary


def test_missing_extra_gives_install_hint(monkeypatch):
    import importlib.util

    from reelforge.engines.diffusers import engine as mod

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(EngineError, match=r"pip install 'reelforge\[diffusers\]'"):
        mod.DiffusersEngine({})
    with pytest.raises(EngineError, match=r"^the diffusers engine needs torch: pip install 'reelforge\[diffusers\]'"):
        mod.DiffusersEngine.check_available({"model": "ltx-video"})  # before any job is recorded


def test_install_hint_for_a_wheel_and_for_a_source_checkout(monkeypatch, tmp_path):
    from reelforge.engines.diffusers import options as mod

    monkeypatch.setattr(mod, "source_checkout", lambda: None)
    assert mod.install_hint() == "pip install 'reelforge[diffusers]'"
    monkeypatch.setattr(mod, "source_checkout", lambda: tmp_path / "my checkout")
    hint = mod.install_hint()
    assert hint.startswith("pip install 'reelforge[diffusers]' (in the source checkout ")
    assert hint.endswith(f"pip install -e '{tmp_path}/my checkout[diffusers]')")


def test_download_hint_fetches_only_the_diffusers_folders():
    """Lightricks/LTX-Video keeps single-file checkpoints (GBs each) at its root beside the diffusers folders."""
    from huggingface_hub.utils import filter_repo_objects

    from reelforge.engines.diffusers.weights import DIFFUSERS_FILES, download_command

    repo_files = [
        "model_index.json", "README.md", "ltx-video-2b-v0.9.safetensors", "ltx-video-2b-v0.9.1.safetensors",
        "ltx-video-2b-v0.9.5.safetensors", "ltxv-13b-0.9.7-dev.safetensors", "ltx-video-2b-v0.9.5.license.txt",
        "scheduler/scheduler_config.json", "text_encoder/config.json", "text_encoder/model-00001-of-00004.safetensors",
        "tokenizer/spiece.model", "tokenizer/tokenizer_config.json", "transformer/config.json",
        "transformer/diffusion_pytorch_model.safetensors", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    ]
    kept = list(filter_repo_objects(repo_files, allow_patterns=list(DIFFUSERS_FILES)))  # what snapshot_download keeps
    assert kept == [f for f in repo_files if "/" in f or f == "model_index.json"]
    assert download_command("Lightricks/LTX-Video", None, ("model_index.json", "vae/*")) == (
        "hf download Lightricks/LTX-Video --include model_index.json --include 'vae/*'")


# --------------------------------------------------------------- the engine on tiny pipelines

# tiny layout (tests/tiny_pipelines.BUILDERS) -> the model id it stands in for
LAYOUT_MODEL = {
    "ltx": "ltx-video", "wan": "wan2.1-t2v-1.3b", "cogvideox": "cogvideox-2b",
    "ltx2": "ltx-2", "wan2.1-i2v": "wan2.1-i2v-14b-480p", "wan2.2-5b": "wan2.2-ti2v-5b",
    "wan2.2-a14b-t2v": "wan2.2-t2v-a14b", "wan2.2-a14b-i2v": "wan2.2-i2v-a14b", "hunyuan15": "hunyuanvideo-1.5",
    "hunyuan15-i2v": "hunyuanvideo-1.5-i2v", "cogvideox-i2v": "cogvideox-5b-i2v",
}
# every family and every task it has: (layout, task)
FAMILY_TASKS = [
    ("ltx", "t2v"), ("ltx", "i2v"), ("ltx2", "t2v"), ("ltx2", "i2v"), ("wan", "t2v"), ("wan2.1-i2v", "i2v"),
    ("wan2.2-5b", "t2v"), ("wan2.2-5b", "i2v"), ("wan2.2-a14b-t2v", "t2v"), ("wan2.2-a14b-i2v", "i2v"),
    ("hunyuan15", "t2v"), ("hunyuan15-i2v", "i2v"), ("cogvideox", "t2v"), ("cogvideox-i2v", "i2v"),
]


class _TinyWeights(dict):
    """{layout: folder}, each tiny pipeline built and saved the first time a test asks for it."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, layout):
        sys.path.insert(0, os.path.dirname(__file__))
        from tiny_pipelines import save_tiny

        self[layout] = save_tiny(layout, self.root / layout)
        return self[layout]


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """Tiny random pipelines saved in diffusers format, built once per session: {layout: folder}."""
    return _TinyWeights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(autouse=True)
def no_weights_config(monkeypatch, tmp_path):
    """No real configuration or HF cache leaks in; each test sets what it uses."""
    for var in list(os.environ):
        if var.startswith("REELFORGE_") and var.endswith("_WEIGHTS") or var in ("REELFORGE_WEIGHTS_DIR",
                                                                                "REELFORGE_DIFFUSERS_OPTIONS"):
            monkeypatch.delenv(var)
    try:
        import huggingface_hub.constants as hf_constants
    except ImportError:
        return
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def engine(layout, folder, **options):
    from reelforge.engines.diffusers.engine import DiffusersEngine

    # short text sequences keep LTX-2's Gemma and HunyuanVideo's Qwen fast (1024 / 1000 tokens by default)
    options = {"num_inference_steps": 3, "max_sequence_length": 16, **options}
    return DiffusersEngine({"model": LAYOUT_MODEL[layout], "weights": str(folder), **options})


def shot(seed=3, duration_s=2, fps=8, width=64, height=48, image=None, family="ltx", text="a cat walks on the sea"):
    return ShotPlan(0, 1, text, seed, duration_s, fps, width, height, image, f"reelforge.{LAYOUT_MODEL[family]}")


def render(eng, plan, progress=None):
    progress = progress if progress is not None else NullProgress()
    return np.stack(list(eng.render_shot(plan, progress))), progress


def noise_image(w=64, h=64, colour=None, seed=1):
    rng = np.random.default_rng(seed)
    if colour is None:
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return Image.fromarray(np.clip(rng.normal(colour, 10, (h, w, 3)), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("family", ["ltx", "wan", "cogvideox"])
@pytest.mark.parametrize("size", [(64, 48), (100, 60)])
def test_exact_frames_size_and_adaptation_recorded(weights, family, size):
    w, h = size
    if family == "cogvideox":  # a fixed 64x64, 9-frame clip at 8 fps here (720x480x49 for the real one)
        w, h = (64, 64) if size == (64, 48) else (50, 56)
    duration = 1 if family == "cogvideox" else 2
    frames, progress = render(engine(family, weights[family]), shot(width=w, height=h, family=family, duration_s=duration))
    assert frames.shape == (8 * duration, h, w, 3) and frames.dtype == np.uint8
    assert frames.std() > 0  # real output, not a blank fill
    meta = progress.metadata
    s = meta["shots"][0]
    assert meta["engine"] == "diffusers" and meta["device"] == "cpu" and meta["dtype"] == "float32"
    assert meta["model"]["weights"] == str(weights[family]) and meta["model"]["weights_source"] == "option"
    assert s["requested"] == {"width": w, "height": h, "frames": 8 * duration, "fps": 8, "duration_s": duration}
    g = s["generated"]
    assert "center crop" in s["adaptation"]["size"] and "scaled" not in s["adaptation"]["size"] and s["steps_run"] == 3
    assert s["adaptation"]["time"].startswith("realtime")
    assert 0 <= g["width"] - w < s["adaptation"]["rules"]["side_multiple"]
    if family == "ltx":  # /32 sides, 4k+1 frames for the tiny VAE (8k+1 for the real one), at the asked fps
        assert (g["width"] % 32, g["height"] % 32, (g["frames"] - 1) % 4, g["fps"]) == (0, 0, 0, 8)
    if family == "wan":  # 16 fps, resampled to 8
        assert (g["width"] % 16, g["height"] % 16, g["frames"], g["fps"]) == (0, 0, 33, 16)
        assert "generated at 16 fps, resampled to 8" in s["planned"]["notes"]
    if family == "cogvideox":
        assert (g["width"], g["height"], g["frames"], g["fps"]) == (64, 64, 9, 8)


@pytest.mark.parametrize("family", ["ltx", "wan"])
def test_same_seed_same_frames_other_seed_different(weights, family):
    eng = engine(family, weights[family])
    a, _ = render(eng, shot(seed=5, family=family))
    b, _ = render(eng, shot(seed=5, family=family))
    c, _ = render(eng, shot(seed=6, family=family))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_progress_rises_once_per_denoising_step(weights):
    frames, progress = render(engine("ltx", weights["ltx"], num_inference_steps=4), shot())
    steps = [(d, t) for d, t, stage in progress.calls if stage.startswith("denoising")]
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    fractions = [d / t for d, t, _ in progress.calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


class CancelAt(NullProgress):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def __call__(self, done, total, stage=""):
        super().__call__(done, total, stage)
        if stage.startswith("denoising") and done >= self.step:
            raise JobCanceled("job-1")


def _count_decodes(monkeypatch, vae):
    calls = []
    real = vae.decode
    monkeypatch.setattr(vae, "decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.parametrize("family", ["ltx", "wan", "hunyuan15"])
def test_cancel_stops_the_pipeline_early_and_skips_the_decode(weights, family, monkeypatch):
    """HunyuanVideo 1.5 has no step callback in diffusers 0.42.1: progress and cancel follow its scheduler's steps."""
    eng = engine(family, weights[family], num_inference_steps=4)
    plan = shot(family=family, width=64, height=64, duration_s=1)
    eng._ensure_loaded()
    pipe = eng._pipes["t2v"]
    calls = []
    hook = pipe.transformer.register_forward_hook(lambda *a: calls.append(1))
    _, progress = render(eng, plan)
    assert [d for d, _, s in progress.calls if s.startswith("denoising")] == [1, 2, 3, 4]
    per_step = len(calls) / 4  # LTX batches CFG's two passes into one forward, Wan and HunyuanVideo run two
    calls.clear()
    decodes = _count_decodes(monkeypatch, pipe.vae)
    progress = CancelAt(1)
    with pytest.raises(JobCanceled):
        list(eng.render_shot(plan, progress))
    assert len(calls) == per_step  # the 3 steps after the cancel never ran
    assert decodes == []  # nor did the VAE decode
    assert progress.metadata["canceled_at_step"] == 1
    assert [d for d, _, s in progress.calls if s.startswith("denoising")] == [1]
    hook.remove()
    frames, _ = render(eng, plan)  # the cancel does not stick to the next job
    assert len(frames) == 8 and decodes == [1]


def test_second_render_reuses_the_loaded_pipeline(weights):
    eng = engine("ltx", weights["ltx"])
    _, first = render(eng, shot())
    _, second = render(eng, shot(seed=9))
    assert eng.loads == 1
    assert first.metadata["shots"][0]["timings"]["load_s"] > 0
    assert second.metadata["shots"][0]["timings"]["load_s"] == 0
    eng.close()
    render(eng, shot())
    assert eng.loads == 2  # close() releases; the next shot loads again


def test_image_to_video_conditions_on_the_image(weights, monkeypatch):
    from reelforge.engines.diffusers.engine import DiffusersEngine

    eng = engine("ltx", weights["ltx"])
    seen = []
    real_call = DiffusersEngine._call_pipeline

    def spy(self, pipe, **kwargs):
        seen.append((type(pipe).__name__, kwargs.get("image")))
        return real_call(self, pipe, **kwargs)

    monkeypatch.setattr(DiffusersEngine, "_call_pipeline", spy)
    red, blue = noise_image(64, 48, (230, 20, 20)), noise_image(64, 48, (20, 20, 230))
    plain, _ = render(eng, shot())
    with_red, progress = render(eng, shot(image=red))
    with_blue, _ = render(eng, shot(image=blue))

    assert [name for name, _ in seen] == ["LTXPipeline", "LTXImageToVideoPipeline", "LTXImageToVideoPipeline"]
    given = np.asarray(seen[1][1])  # the image the pipeline got: 64x64, the input where the crop reads back
    assert given.shape == (64, 64, 3) and np.array_equal(given[8:56], np.asarray(red))
    assert with_red.shape == with_blue.shape == (16, 48, 64, 3)
    # same seed and prompt: only the image differs, and the video follows it
    assert not np.array_equal(with_red[0], plain[0]) and not np.array_equal(with_red[0], with_blue[0])
    assert eng.loads == 1  # image-to-video shares the loaded components
    s = progress.metadata["shots"][0]
    assert s["mode"] == "image-to-video" and "edge-padded to 64x64" in s["adaptation"]["image"]


@pytest.mark.parametrize("layout", ["ltx2", "wan2.1-i2v", "wan2.2-5b", "wan2.2-a14b-i2v", "hunyuan15-i2v", "cogvideox-i2v"])
def test_each_image_to_video_family_follows_its_image(weights, layout):
    eng = engine(layout, weights[layout], num_inference_steps=2)
    plan = dict(family=layout, width=64, height=64, duration_s=1)
    red, progress = render(eng, shot(image=noise_image(colour=(230, 20, 20)), **plan))
    blue, _ = render(eng, shot(image=noise_image(colour=(20, 20, 230)), **plan))
    assert red.shape == blue.shape == (8, 64, 64, 3)
    assert not np.array_equal(red[0], blue[0])
    s = progress.metadata["shots"][0]
    family = progress.metadata["model"]["family"]
    from reelforge.engines.diffusers.families import FAMILIES

    assert s["mode"] == "image-to-video" and s["pipeline"] == FAMILIES[family].i2v
    if layout == "wan2.2-5b":  # one checkpoint for both tasks: one load, shared modules
        render(eng, shot(**plan))
        assert eng.loads == 1 and eng._pipes["t2v"].transformer is eng._pipes["i2v"].transformer


@pytest.mark.parametrize("image", [False, True])
def test_ltx2_returns_its_audio_track_as_long_as_the_video(weights, image):
    from reelforge.engines.base import RenderContext

    eng = engine("ltx2", weights["ltx2"], num_inference_steps=2)
    plan = shot(family="ltx2", width=64, height=64, duration_s=1, fps=8,
                image=noise_image() if image else None)
    progress = NullProgress()
    out = eng.render(plan, RenderContext(progress))
    frames = list(out.frames)
    assert len(frames) == plan.frame_count
    audio = out.audio
    assert audio is not None and audio.samples.dtype == np.float32 and audio.samples.shape[0] == 2
    assert audio.sample_rate == 16000  # the tiny vocoder's output rate (24 kHz for the real LTX-2)
    assert abs(audio.duration_s - len(frames) / plan.fps) <= 1 / plan.fps
    assert np.abs(audio.samples).max() > 0 and np.abs(audio.samples).max() <= 1.0
    meta = progress.metadata["shots"][0]["audio"]
    assert meta["sample_rate"] == 16000 and meta["channels"] == 2 and meta["generated_s"] >= meta["duration_s"] == 1.0


def test_ltx2_distilled_runs_its_few_step_recipe(weights, monkeypatch):
    from reelforge.engines.diffusers.engine import DiffusersEngine
    from reelforge.engines.diffusers.families import LTX2_DISTILLED_SIGMAS

    seen = []
    real_call = DiffusersEngine._call_pipeline
    monkeypatch.setattr(DiffusersEngine, "_call_pipeline",
                        lambda self, pipe, **kw: seen.append(kw) or real_call(self, pipe, **kw))
    eng = DiffusersEngine({"model": "ltx-2-distilled", "weights": str(weights["ltx2"]), "max_sequence_length": 16})
    frames, progress = render(eng, shot(family="ltx2", width=64, height=64, duration_s=1))
    assert frames.shape == (8, 64, 64, 3)
    assert seen[0]["sigmas"] == list(LTX2_DISTILLED_SIGMAS) and seen[0]["guidance_scale"] == 1.0
    assert [d for d, _, s in progress.calls if s.startswith("denoising")] == list(range(1, 9))
    assert progress.metadata["num_inference_steps"] == 8 and progress.metadata["guidance_scale"] == 1.0


def test_ltx2_two_stage_half_size_upsampled_then_refined(weights, monkeypatch):
    from reelforge.engines.diffusers.engine import DiffusersEngine

    seen = []
    real_call = DiffusersEngine._call_pipeline
    monkeypatch.setattr(DiffusersEngine, "_call_pipeline",
                        lambda self, pipe, **kw: seen.append(kw) or real_call(self, pipe, **kw))
    with pytest.raises(EngineError, match=r"two_stage needs the latent upsampler .*hf download Lightricks/LTX-2"):
        DiffusersEngine.check_available({"model": "ltx-2", "weights": str(weights["ltx2"]), "two_stage": True})
    with pytest.raises(EngineError, match="two_stage is LTX-2's recipe"):
        DiffusersEngine.check_available({"model": "wan2.1-t2v-1.3b", "weights": str(weights["wan"]), "two_stage": True})
    eng = engine("ltx2", weights["ltx2-two-stage"], num_inference_steps=2, two_stage=True)
    progress = NullProgress()
    from reelforge.engines.base import RenderContext

    out = eng.render(shot(family="ltx2", width=64, height=64, duration_s=1), RenderContext(progress))
    assert np.stack(list(out.frames)).shape == (8, 64, 64, 3) and out.audio is not None
    # both stages stop at the latents; the engine decodes the second one's apart (diffusers_decode)
    assert [(k["width"], k["height"], k["output_type"]) for k in seen] == [(32, 32, "latent"), (64, 64, "latent")]
    assert seen[1]["latents"].shape[-2:] == (2, 2) and len(seen[1]["sigmas"]) == 3  # upsampled x2, 3 steps
    assert [d for d, t, s in progress.calls if s.startswith("denoising")] == [1, 2, 3, 4, 5]
    assert progress.metadata["shots"][0]["adaptation"]["rules"]["side_multiple"] == 64


@pytest.mark.parametrize("layout", ["wan2.2-a14b-t2v", "wan2.2-a14b-i2v"])
def test_wan22_a14b_runs_both_experts(weights, layout):
    eng = engine(layout, weights[layout], num_inference_steps=2)
    eng._ensure_loaded()
    task = "i2v" if layout.endswith("i2v") else "t2v"
    pipe = eng._pipes[task]
    assert pipe.transformer is not pipe.transformer_2 and pipe.config.boundary_ratio in (0.875, 0.9)
    ran = {"transformer": 0, "transformer_2": 0}
    hooks = [getattr(pipe, name).register_forward_hook(lambda *a, name=name: ran.__setitem__(name, ran[name] + 1))
             for name in ran]
    frames, _ = render(eng, shot(family=layout, width=64, height=64, duration_s=1,
                                 image=noise_image() if task == "i2v" else None))
    for h in hooks:
        h.remove()
    assert frames.shape == (8, 64, 64, 3)
    assert ran["transformer"] > 0 and ran["transformer_2"] > 0, ran  # high-noise step 0, low-noise step 1


def test_text_or_image_only_models_refuse_the_other_naming_the_field(weights):
    eng = engine("wan", weights["wan"])
    with pytest.raises(RequestError) as err:
        list(eng.render_shot(shot(family="wan", image=Image.new("RGB", (64, 48))), NullProgress()))
    assert err.value.field == "textToVideoParams.images" and "text-to-video only" in str(err.value)
    eng = engine("wan2.2-a14b-i2v", weights["wan2.2-a14b-i2v"])
    with pytest.raises(RequestError) as err:
        list(eng.render_shot(shot(family="wan2.2-a14b-i2v"), NullProgress()))
    assert err.value.field == "textToVideoParams.images" and "is required" in str(err.value)
    assert eng.loads == 0  # refused before loading anything


def test_missing_weights_say_where_and_how(monkeypatch, tmp_path):
    from reelforge.engines.diffusers.engine import DiffusersEngine

    eng = DiffusersEngine({"model": "ltx-video"})
    with pytest.raises(EngineError) as err:
        list(eng.render_shot(shot(), NullProgress()))
    msg = str(err.value)
    assert "\n" not in msg and "REELFORGE_LTX_VIDEO_WEIGHTS" in msg and "Hugging Face cache" in msg
    only_diffusers = ("--include model_index.json --include 'scheduler/*' --include 'text_encoder/*' "
                      "--include 'tokenizer/*' --include 'transformer/*' --include 'vae/*'")
    assert msg.endswith(f"download them with: hf download Lightricks/LTX-Video {only_diffusers}")
    monkeypatch.setenv("REELFORGE_WEIGHTS_DIR", str(tmp_path / "models"))
    with pytest.raises(EngineError, match=r"hf download Lightricks/LTX-Video --local-dir \S*models/LTX-Video --include "):
        list(eng.render_shot(shot(), NullProgress()))
    with pytest.raises(EngineError, match="does not exist"):
        list(DiffusersEngine({"weights": str(tmp_path / "nope")}).render_shot(shot(), NullProgress()))


def test_weights_found_by_env_weights_dir_and_hf_cache(weights, monkeypatch, tmp_path):
    from reelforge.engines.diffusers.engine import DiffusersEngine

    def source():
        progress = NullProgress()
        list(DiffusersEngine({"model": "cogvideox-2b", "num_inference_steps": 1}).render_shot(
            shot(family="cogvideox", width=64, height=64, duration_s=1), progress))
        return progress.metadata["model"]["weights_source"], progress.metadata["model"]["weights"]

    # the HF cache, under the repo's old name too (THUDM/ -> zai-org/)
    snap = tmp_path / "hf-cache" / "models--THUDM--CogVideoX-2b"
    shutil.copytree(weights["cogvideox"], snap / "snapshots" / "abc123")
    (snap / "refs").mkdir()
    (snap / "refs" / "main").write_text("abc123")
    assert source() == ("hf-cache", str(snap / "snapshots" / "abc123"))
    shutil.copytree(weights["cogvideox"], tmp_path / "models" / "CogVideoX-2b")
    monkeypatch.setenv("REELFORGE_WEIGHTS_DIR", str(tmp_path / "models"))
    assert source() == ("weights-dir", str(tmp_path / "models" / "CogVideoX-2b"))
    monkeypatch.setenv("REELFORGE_COGVIDEOX_2B_WEIGHTS", str(weights["cogvideox"]))
    assert source() == ("env:REELFORGE_COGVIDEOX_2B_WEIGHTS", str(weights["cogvideox"]))


def test_wrong_family_folder_and_bad_options(weights):
    from reelforge.engines.diffusers.engine import DiffusersEngine

    eng = engine("ltx", weights["wan"])
    with pytest.raises(EngineError, match="holds a WanPipeline, not a ltx model"):
        list(eng.render_shot(shot(), NullProgress()))
    with pytest.raises(EngineError, match="holds a WanPipeline, not a ltx model"):  # and before any job is recorded
        DiffusersEngine.check_available({"model": "ltx-video", "weights": str(weights["wan"])})
    with pytest.raises(EngineError, match="bad options"):
        engine("ltx", weights["ltx"], colour="red")
    with pytest.raises(EngineError, match="pipeline_kwargs may not set num_frames"):
        engine("ltx", weights["ltx"], pipeline_kwargs={"num_frames": 9})


# --------------------------------------------------------------- per-model options


def test_pipeline_kwargs_are_checked_against_the_call_signature(weights):
    from reelforge.engines.diffusers.engine import DiffusersEngine

    ltx = {"model": "ltx-video", "weights": str(weights["ltx"])}
    DiffusersEngine.check_available({**ltx, "pipeline_kwargs": {"decode_timestep": 0.05}})  # LTXPipeline takes it
    with pytest.raises(EngineError) as err:
        DiffusersEngine.check_available({"model": "wan2.1-t2v-1.3b", "weights": str(weights["wan"]),
                                         "pipeline_kwargs": {"decode_timestep": 0.05}})
    msg = str(err.value)
    assert "pipeline_kwargs decode_timestep not taken by WanPipeline" in msg and "models.<name>" in msg
    with pytest.raises(EngineError, match="pipeline_kwargs colour not taken by LTXImageToVideoPipeline or LTXPipeline"):
        DiffusersEngine.check_available({**ltx, "pipeline_kwargs": {"colour": "red"}})


def test_per_model_options_reach_only_their_model(weights, monkeypatch, tmp_path):
    """An LTX-only argument set engine-wide, under models.ltx-video, never reaches a Wan job."""
    from reelforge import VideoRequest
    from reelforge.engines.diffusers.engine import DiffusersEngine
    from reelforge.jobs.open import open_store
    from reelforge.engines.catalog import engine_for, get_model
    from reelforge.jobs.runtime import Runtime

    monkeypatch.setenv("REELFORGE_DIFFUSERS_OPTIONS", json.dumps({
        "num_inference_steps": 2, "models": {"ltx-video": {"pipeline_kwargs": {"decode_timestep": 0.05},
                                                           "num_inference_steps": 4}}}))
    monkeypatch.setenv("REELFORGE_LTX_VIDEO_WEIGHTS", str(weights["ltx"]))
    monkeypatch.setenv("REELFORGE_WAN2_1_T2V_1_3B_WEIGHTS", str(weights["wan"]))
    ltx = DiffusersEngine.parse_options(engine_for(get_model("reelforge.ltx-video"))[1])
    wan = DiffusersEngine.parse_options(engine_for(get_model("reelforge.wan2.1-t2v-1.3b"))[1])
    assert ltx.pipeline_kwargs == {"decode_timestep": 0.05} and ltx.num_inference_steps == 4
    assert wan.pipeline_kwargs == {} and wan.num_inference_steps == 2 and wan.models == {}
    runtime = Runtime(open_store(str(tmp_path / "jobs.sqlite3")))
    request = VideoRequest(text="a cat", duration_s=1, fps=8, width=64, height=64, seed=3)
    for model in ("reelforge.ltx-video", "reelforge.wan2.1-t2v-1.3b"):
        record, created = runtime.submit(model, request, str(tmp_path / "out"))
        assert created


# --------------------------------------------------------------- the generic door


def test_generic_door_fits_common_signatures_and_names_what_does_not():
    from reelforge.engines.diffusers.options import generic_fit

    for fits in ("SkyReelsV2Pipeline", "MochiPipeline", "SanaVideoPipeline"):  # SANA-Video: `frames`, mapped
        assert generic_fit(fits) is None, fits
    assert generic_fit("LTX2LatentUpsamplePipeline") == (
        "its call takes no prompt, negative_prompt, num_inference_steps")


def test_generic_door_refuses_a_folder_whose_pipeline_does_not_fit(tmp_path):
    from reelforge.engines.diffusers.engine import DiffusersEngine

    folder = tmp_path / "upsampler"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "LTX2LatentUpsamplePipeline",
                                                         "vae": ["diffusers", "AutoencoderKLLTX2Video"]}))
    with pytest.raises(EngineError) as err:
        DiffusersEngine.check_available({"model": "upsampler", "weights": str(folder)})
    assert "holds a LTX2LatentUpsamplePipeline, which the diffusers engine cannot drive: its call takes no prompt" in str(err.value)


# --------------------------------------------------------------- whole jobs through the public API

@pytest.fixture
def client(weights, monkeypatch, tmp_path, register_engines):
    reelforge = pytest.importorskip("reelforge")
    if not hasattr(reelforge, "Client"):
        pytest.skip("reelforge.Client is not there yet")
    from reelforge.engines.diffusers.engine import DiffusersEngine

    register_engines(DiffusersEngine)  # what the entry point does once the package is installed
    monkeypatch.setenv("REELFORGE_LTX_VIDEO_WEIGHTS", str(weights["ltx"]))
    return reelforge.Client(data_dir=tmp_path / "data")


def test_job_completes_with_the_requested_video(client, tmp_path):
    from reelforge import VideoRequest
    from reelforge.media.video import probe

    request = VideoRequest(text="a cat walks on the sea", duration_s=2, fps=8, width=80, height=64, seed=3)
    job = client.start(request, model="reelforge.ltx-video", output=str(tmp_path / "out"))
    job.wait(timeout=120)
    assert job.status == "COMPLETED", job.failure_message
    info = probe(job.local_dir / "output.mp4")
    assert (info.frames, info.fps, info.width, info.height) == (16, 8, 80, 64)
    meta = json.loads((job.local_dir / "manifest.json").read_text())["metadata"]
    shot_meta = meta["shots"][0]
    assert shot_meta["generated"] == {"width": 96, "height": 64, "frames": 17, "fps": 8, "duration_s": 2.125}
    assert shot_meta["adaptation"]["size"] == "center crop 80x64 at (8,0) of 96x64"
    assert meta["model"]["weights_source"] == "env:REELFORGE_LTX_VIDEO_WEIGHTS"


@pytest.mark.parametrize("layout, task", FAMILY_TASKS + [("skyreels-v2", "t2v")])
def test_every_family_and_task_through_the_whole_job_path(client, weights, monkeypatch, tmp_path, layout, task):
    """request -> job -> engine -> output.mp4, decoded with PyAV: frame count, size and fps as asked."""
    import av

    from reelforge import VideoRequest
    from reelforge.request.model import ImageInput

    monkeypatch.setenv("REELFORGE_DIFFUSERS_OPTIONS", json.dumps({"num_inference_steps": 2, "max_sequence_length": 16}))
    if layout == "skyreels-v2":  # no family table: a folder in the weights dir, served through the generic door
        (tmp_path / "models").mkdir()
        shutil.copytree(weights[layout], tmp_path / "models" / "skyreels")
        monkeypatch.setenv("REELFORGE_WEIGHTS_DIR", str(tmp_path / "models"))
        model = "reelforge.diffusers.skyreels"
    else:
        from reelforge.engines.diffusers.weights import model_env_var

        monkeypatch.setenv(model_env_var(LAYOUT_MODEL[layout]), str(weights[layout]))
        model = f"reelforge.{LAYOUT_MODEL[layout]}"
    image = None
    if task == "i2v":
        noise_image(colour=(200, 40, 40)).save(tmp_path / "start.png")
        image = ImageInput.from_source(tmp_path / "start.png")
    request = VideoRequest(text='a cat says "hello"', duration_s=1, fps=8, width=64, height=64, seed=3, image=image)
    job = client.start(request, model=model, output=str(tmp_path / "out"))
    job.wait(timeout=120)
    assert job.status == "COMPLETED", job.failure_message
    with av.open(str(job.local_dir / "output.mp4")) as container:
        video = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
        assert (video.average_rate, video.width, video.height) == (8, 64, 64)
        if layout == "ltx2":  # the model's sound is the file's AAC track, as long as the video within a frame
            container.seek(0)
            (sound,) = container.streams.audio
            heard = sum(f.samples for f in container.decode(sound)) / sound.rate
            assert sound.codec_context.name == "aac" and abs(heard - len(frames) / 8) <= 1 / 8
        else:
            assert not container.streams.audio
    assert len(frames) == 8 and np.std(frames) > 0
    meta = json.loads((job.local_dir / "manifest.json").read_text())["metadata"]
    s = meta["shots"][0]
    assert s["mode"] == {"t2v": "text-to-video", "i2v": "image-to-video"}[task]
    assert s["pipeline"] == meta["model"]["tasks"][task]
    assert (s["audio"] is not None) == (layout == "ltx2")


def test_grid_and_tasks_are_checked_before_the_job_is_recorded(weights, monkeypatch, tmp_path):
    """The tiny CogVideoX makes a fixed 64x64, 9-frame clip at 8 fps: its folder's configs say so."""
    from reelforge import VideoRequest
    from reelforge.jobs.open import open_store
    from reelforge.jobs.runtime import Runtime

    monkeypatch.setenv("REELFORGE_COGVIDEOX_2B_WEIGHTS", str(weights["cogvideox"]))
    monkeypatch.setenv("REELFORGE_WAN2_2_I2V_A14B_WEIGHTS", str(weights["wan2.2-a14b-i2v"]))
    runtime = Runtime(open_store(str(tmp_path / "jobs.sqlite3")))
    ok = VideoRequest(text="a cat", duration_s=1, fps=8, width=64, height=64, seed=3)
    for model, change, field, said in [
        ("reelforge.cogvideox-2b", {"width": 96}, "videoGenerationConfig.dimension", "it generates 64x64"),
        ("reelforge.cogvideox-2b", {"duration_s": 2}, "videoGenerationConfig.durationSeconds", "allowed: 1 to 1"),
        ("reelforge.wan2.2-i2v-a14b", {}, "textToVideoParams.images", "is required"),
    ]:
        with pytest.raises(RequestError) as err:
            runtime.submit(model, ok.model_copy(update=change), str(tmp_path / "out"))
        assert err.value.field == field and said in err.value.message, err.value
    assert runtime.store.list(limit=10) == []
    record, created = runtime.submit("reelforge.cogvideox-2b", ok, str(tmp_path / "out"))
    assert created


def test_cli_generate_without_weights_says_how_to_download_in_one_line(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from reelforge.cli.main import cli

    noise_image(1280, 720).save(tmp_path / "start.png")
    monkeypatch.setenv("REELFORGE_WEIGHTS_DIR", str(tmp_path / "models"))
    result = CliRunner().invoke(cli, ["generate", "a cat", "--model", "reelforge.wan2.2-ti2v-5b", "--image",
                                      str(tmp_path / "start.png"), "--duration", "2"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "no weights for wan2.2-ti2v-5b" in lines[0]
    # the whole repo: a diffusers-only repo whose components (LTX-2's audio_vae, vocoder, ...) differ per family
    assert lines[0].endswith(
        f"hf download Wan-AI/Wan2.2-TI2V-5B-Diffusers --local-dir {tmp_path / 'models' / 'Wan2.2-TI2V-5B-Diffusers'}")


def test_job_canceled_mid_generation_ends_canceled(client, monkeypatch, tmp_path):
    import threading

    from reelforge import JobCanceledError, VideoRequest
    from reelforge.engines.diffusers.engine import DiffusersEngine

    import dataclasses

    runtime = client._backend.runtime
    runtime.timings = dataclasses.replace(runtime.timings, heartbeat_s=0.0)  # every progress call reaches the job log
    at_step, canceled = threading.Event(), threading.Event()
    real_call = DiffusersEngine._call_pipeline

    def call_and_pause_at_first_step(self, pipe, callback_on_step_end, **kwargs):
        def on_step(p, i, t, kw):
            if i == 1:  # hold the job at step 1 until the test has canceled it
                at_step.set()
                canceled.wait(30)
            return callback_on_step_end(p, i, t, kw)

        return real_call(self, pipe, callback_on_step_end=on_step, **kwargs)

    monkeypatch.setattr(DiffusersEngine, "_call_pipeline", call_and_pause_at_first_step)
    request = VideoRequest(text="a cat", duration_s=2, fps=8, width=64, height=64, seed=3)
    job = client.start(request, model="reelforge.ltx-video", output=str(tmp_path / "out"))
    assert at_step.wait(60)
    job.cancel()
    canceled.set()
    with pytest.raises(JobCanceledError):
        job.wait(timeout=60)
    assert job.status == "CANCELED"
    assert job.record.metadata["canceled_at_step"] == 2  # of the default 50


# --------------------------------------------------------------- refused before the job is recorded


def test_missing_weights_refuse_the_start_and_record_no_job(monkeypatch, tmp_path):
    from reelforge import VideoRequest
    from reelforge.errors import EngineError
    from reelforge.jobs.open import open_store
    from reelforge.jobs.runtime import Runtime

    monkeypatch.setenv("REELFORGE_WEIGHTS_DIR", str(tmp_path / "empty-models"))
    runtime = Runtime(open_store(str(tmp_path / "jobs.sqlite3")))
    request = VideoRequest(text="a cat walks on the sea", duration_s=2, fps=8, width=64, height=64, seed=3)
    for _ in range(2):  # every try is refused the same way; none leaves a FAILED job behind
        with pytest.raises(EngineError, match=r"^no weights for ltx-video .*download them with: hf download"):
            runtime.submit("reelforge.ltx-video", request, str(tmp_path / "out"))
    assert runtime.store.list(limit=10) == []
    with pytest.raises(RequestError, match="durationSeconds"):  # a bad request still names its field first
        runtime.submit("reelforge.ltx-video", request.model_copy(update={"duration_s": 11}), str(tmp_path / "out"))


def test_server_start_without_weights_is_a_validation_exception(monkeypatch, tmp_path):
    sys.path.insert(0, os.path.dirname(__file__))
    from botocore.exceptions import ClientError
    from server_fixtures import TINY, ServerThread, bedrock

    from reelforge.server.app import ServerSettings

    (tmp_path / "models").mkdir()
    (tmp_path / "hf-home").mkdir()
    monkeypatch.setenv("REELFORGE_WEIGHTS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # (the autouse fixture points the cache there too)
    settings = ServerSettings(workers=1, bucket_dir=tmp_path / "buckets", data_dir=tmp_path / "server-home")
    with ServerThread(settings) as server:
        client = bedrock(server.url)
        with pytest.raises(ClientError) as err:
            client.start_async_invoke(modelId="reelforge.ltx-video", modelInput=TINY,
                                      outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://test-bucket/p"}})
        e = err.value.response
        assert e["ResponseMetadata"]["HTTPStatusCode"] == 400 and e["Error"]["Code"] == "ValidationException"
        message = e["Error"]["Message"]
        assert message.startswith("no weights for ltx-video (Lightricks/LTX-Video)") and "\n" not in message
        assert f"hf download Lightricks/LTX-Video --local-dir {tmp_path / 'models' / 'LTX-Video'} --include" in message
        assert client.list_async_invokes()["asyncInvokeSummaries"] == []
        assert server.runtime.store.list(limit=10) == []

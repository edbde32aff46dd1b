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
from reelforge.engines.diffusers_adapt import (
    ModelRules, fit_conditioning_image, plan_generation, size_map, time_map,
)
from reelforge.errors import EngineError, JobCanceled, RequestError

MODEL = {"ltx": "ltx-video", "wan": "wan2.1-t2v-1.3b", "cogvideox": "cogvideox-2b"}


# --------------------------------------------------------------- planning and mapping (numpy only)

REAL_LTX = ModelRules(32, 8, 257, 1280 * 720)
REAL_WAN = ModelRules(16, 4, 81, 832 * 480, fixed_fps=16)
REAL_COG = ModelRules(16, 4, 49, 720 * 480, fixed_size=(720, 480), fixed_frames=49, fixed_fps=8)


@pytest.mark.parametrize(
    "rules, request_, expected",
    [
        (REAL_LTX, (1280, 720, 6, 24), (1280, 736, 145, 24)),  # 8k+1 >= 144; sides up to /32
        (REAL_LTX, (1280, 720, 10, 30), (1280, 736, 257, 25)),  # 300 frames > 257: fps lowered
        (REAL_LTX, (1920, 1080, 2, 24), (1280, 736, 49, 24)),  # above the pixel budget
        (REAL_WAN, (832, 480, 5, 24), (832, 480, 81, 16)),  # Wan runs at its 16 fps
        (REAL_WAN, (1280, 720, 2, 24), (848, 480, 33, 16)),  # 16:9 at ~480p
        (REAL_COG, (1280, 720, 6, 24), (720, 480, 49, 8)),  # fixed size and length
    ],
)
def test_plan_fits_real_model_rules(rules, request_, expected):
    w, h, d, fps = request_
    plan = plan_generation(rules, w, h, d, fps)
    assert (plan.width, plan.height, plan.frames, plan.fps) == expected
    assert plan.width % rules.side_multiple == 0 and plan.height % rules.side_multiple == 0
    assert (plan.frames - 1) % rules.frame_multiple == 0 and plan.frames <= rules.max_frames


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
    code = ("import sys, reelforge.engines.diffusers as d; specs = d.DiffusersEngine.models(); "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'heavy import'; "
            "print(sorted(s.model_id for s in specs))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert out.returncode == 0, out.stderr
    assert "reelforge.cogvideox-2b" in out.stdout and "reelforge.ltx-video" in out.stdout
    assert "reelforge.wan2.1-t2v-1.3b" in out.stdout


def test_model_specs():
    from reelforge.engines.diffusers import DiffusersEngine

    specs = {s.model_id: s for s in DiffusersEngine.models()}
    assert set(specs) == {"reelforge.ltx-video", "reelforge.wan2.1-t2v-1.3b", "reelforge.cogvideox-2b"}
    assert {s.engine for s in specs.values()} == {"diffusers"}
    assert specs["reelforge.ltx-video"].engine_options == {"model": "ltx-video", "family": "ltx"}
    assert specs["reelforge.wan2.1-t2v-1.3b"].limits.text_video_durations == (1, 2, 3, 4, 5)
    assert specs["reelforge.cogvideox-2b"].limits.duration_range == (1, 120)  # many shots, each <= 6 s


def test_missing_extra_gives_install_hint(monkeypatch):
    import importlib.util

    from reelforge.engines import diffusers as mod

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(EngineError, match=r"pip install 'reelforge\[diffusers\]'"):
        mod.DiffusersEngine({})
    with pytest.raises(EngineError, match=r"^the diffusers engine needs torch: pip install 'reelforge\[diffusers\]'"):
        mod.DiffusersEngine.check_available({"model": "ltx-video"})  # before any job is recorded


def test_install_hint_for_a_wheel_and_for_a_source_checkout(monkeypatch, tmp_path):
    from reelforge.engines import diffusers as mod

    monkeypatch.setattr(mod, "source_checkout", lambda: None)
    assert mod.install_hint() == "pip install 'reelforge[diffusers]'"
    monkeypatch.setattr(mod, "source_checkout", lambda: tmp_path / "my checkout")
    hint = mod.install_hint()
    assert hint.startswith("pip install 'reelforge[diffusers]' (in the source checkout ")
    assert hint.endswith(f"pip install -e '{tmp_path}/my checkout[diffusers]')")


def test_download_hint_fetches_only_the_diffusers_folders():
    """Lightricks/LTX-Video keeps single-file checkpoints (GBs each) at its root beside the diffusers folders."""
    from huggingface_hub.utils import filter_repo_objects

    from reelforge.engines.diffusers_weights import DIFFUSERS_FILES, download_command

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


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Tiny random pipelines saved in diffusers format: {family: folder}."""
    sys.path.insert(0, os.path.dirname(__file__))
    from tiny_pipelines import FAMILIES, save_tiny

    root = tmp_path_factory.mktemp("weights")
    return {f: save_tiny(f, root / f) for f in FAMILIES}


@pytest.fixture(autouse=True)
def no_weights_config(monkeypatch, tmp_path):
    """No real configuration or HF cache leaks in; each test sets what it uses."""
    for var in list(os.environ):
        if var.startswith("REELFORGE_") and var.endswith("_WEIGHTS") or var == "REELFORGE_WEIGHTS_DIR":
            monkeypatch.delenv(var)
    try:
        import huggingface_hub.constants as hf_constants
    except ImportError:
        return
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def engine(family, folder, **options):
    from reelforge.engines.diffusers import DiffusersEngine

    return DiffusersEngine({"model": MODEL[family], "weights": str(folder), "num_inference_steps": 3, **options})


def shot(seed=3, duration_s=2, fps=8, width=64, height=48, image=None, family="ltx"):
    return ShotPlan(0, 1, "a cat walks on the sea", seed, duration_s, fps, width, height, image,
                    f"reelforge.{MODEL[family]}")


def render(eng, plan, progress=None):
    progress = progress if progress is not None else NullProgress()
    return np.stack(list(eng.render_shot(plan, progress))), progress


@pytest.mark.parametrize("family", ["ltx", "wan", "cogvideox"])
@pytest.mark.parametrize("size", [(64, 48), (100, 60)])
def test_exact_frames_size_and_adaptation_recorded(weights, family, size):
    w, h = size
    frames, progress = render(engine(family, weights[family]), shot(width=w, height=h, family=family))
    assert frames.shape == (16, h, w, 3) and frames.dtype == np.uint8
    assert frames.std() > 0  # real output, not a blank fill
    meta = progress.metadata
    s = meta["shots"][0]
    assert meta["engine"] == "diffusers" and meta["device"] == "cpu" and meta["dtype"] == "float32"
    assert meta["model"]["weights"] == str(weights[family]) and meta["model"]["weights_source"] == "option"
    assert s["requested"] == {"width": w, "height": h, "frames": 16, "fps": 8, "duration_s": 2}
    g = s["generated"]
    assert "center crop" in s["adaptation"]["size"] and s["steps_run"] == 3
    if family == "ltx":  # /32 sides, 4k+1 frames for the tiny VAE (8k+1 for the real one), at the asked fps
        assert (g["width"] % 32, g["height"] % 32, (g["frames"] - 1) % 4, g["fps"]) == (0, 0, 0, 8)
        assert s["adaptation"]["time"].startswith("realtime")
    if family == "wan":  # 16 fps, resampled to 8
        assert (g["width"] % 16, g["height"] % 16, g["frames"], g["fps"]) == (0, 0, 33, 16)
    if family == "cogvideox":  # fixed native clip (16x16x9 here; 720x480x49 for the real one) stretched
        assert (g["width"], g["height"], g["frames"], g["fps"]) == (16, 16, 9, 8)
        assert s["adaptation"]["time"].startswith("stretched") and "scaled to" in s["adaptation"]["size"]


@pytest.mark.parametrize("family", ["ltx", "wan", "cogvideox"])
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


@pytest.mark.parametrize("family", ["ltx", "wan"])
def test_cancel_stops_the_pipeline_early(weights, family):
    eng = engine(family, weights[family], num_inference_steps=6)
    eng._ensure_loaded()
    calls = []
    hook = eng._pipes["t2v"].transformer.register_forward_hook(lambda *a: calls.append(1))
    render(eng, shot(family=family))
    per_step = len(calls) / 6  # LTX batches CFG's two passes into one forward, Wan runs two
    calls.clear()
    progress = CancelAt(2)
    with pytest.raises(JobCanceled):
        list(eng.render_shot(shot(family=family), progress))
    assert len(calls) == 2 * per_step  # the 4 steps after the cancel never ran
    assert progress.metadata["canceled_at_step"] == 2
    assert [d for d, _, s in progress.calls if s.startswith("denoising")] == [1, 2]
    hook.remove()
    frames, _ = render(eng, shot(family=family))  # the interrupt flag does not stick to the next job
    assert len(frames) == 16


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
    from reelforge.engines.diffusers import DiffusersEngine

    eng = engine("ltx", weights["ltx"])
    seen = []
    real_call = DiffusersEngine._call_pipeline

    def spy(self, pipe, **kwargs):
        seen.append((type(pipe).__name__, kwargs.get("image")))
        return real_call(self, pipe, **kwargs)

    monkeypatch.setattr(DiffusersEngine, "_call_pipeline", spy)
    rng = np.random.default_rng(1)
    red = Image.fromarray(np.clip(rng.normal((230, 20, 20), 10, (48, 64, 3)), 0, 255).astype(np.uint8))
    blue = Image.fromarray(np.clip(rng.normal((20, 20, 230), 10, (48, 64, 3)), 0, 255).astype(np.uint8))
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


def test_wan_refuses_an_image_naming_the_field(weights):
    eng = engine("wan", weights["wan"])
    with pytest.raises(RequestError) as err:
        list(eng.render_shot(shot(family="wan", image=Image.new("RGB", (64, 48))), NullProgress()))
    assert err.value.field == "textToVideoParams.images" and "text-to-video only" in str(err.value)
    assert eng.loads == 0  # refused before loading anything


def test_missing_weights_say_where_and_how(monkeypatch, tmp_path):
    from reelforge.engines.diffusers import DiffusersEngine

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
    from reelforge.engines.diffusers import DiffusersEngine

    def source():
        progress = NullProgress()
        list(DiffusersEngine({"model": "cogvideox-2b", "num_inference_steps": 1}).render_shot(
            shot(family="cogvideox"), progress))
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
    eng = engine("ltx", weights["wan"])
    with pytest.raises(EngineError, match="holds a WanPipeline, not a ltx model"):
        list(eng.render_shot(shot(), NullProgress()))
    with pytest.raises(EngineError, match="bad options"):
        engine("ltx", weights["ltx"], colour="red")
    with pytest.raises(EngineError, match="pipeline_kwargs may not set num_frames"):
        engine("ltx", weights["ltx"], pipeline_kwargs={"num_frames": 9})


# --------------------------------------------------------------- whole jobs through the public API

@pytest.fixture
def client(weights, monkeypatch, tmp_path):
    reelforge = pytest.importorskip("reelforge")
    if not hasattr(reelforge, "Client"):
        pytest.skip("reelforge.Client is not there yet")
    from reelforge.engines.diffusers import DiffusersEngine

    reelforge.register_engine(DiffusersEngine)  # what the entry point does once the package is installed
    monkeypatch.setenv("REELFORGE_LTX_VIDEO_WEIGHTS", str(weights["ltx"]))
    return reelforge.Client(data_dir=tmp_path / "data")


def test_job_completes_with_the_requested_video(client, tmp_path):
    from reelforge import VideoRequest
    from reelforge.media import probe

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


def test_job_canceled_mid_generation_ends_canceled(client, monkeypatch, tmp_path):
    import threading

    from reelforge import JobCanceledError, VideoRequest
    from reelforge.engines.diffusers import DiffusersEngine

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
    from reelforge.jobs import open_store
    from reelforge.runtime import Runtime

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

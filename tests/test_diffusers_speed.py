"""Speed and memory profiles (reelforge/engines/diffusers_speed.py) on tiny random pipelines on CPU.

Each feature is either applied, as read back from the pipeline (hooks, flags, dtypes, compiled
blocks), or skipped with the reason this CPU machine gives (no CUDA, no kernel package, no torchrun).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the extra: pip install 'reelforge[diffusers]'")
pytest.importorskip("diffusers", reason="needs the extra: pip install 'reelforge[diffusers]'")

import torch

from reelforge.engines.diffusers import speed as ds
from reelforge.engines.base import NullProgress, ShotPlan
from reelforge.engines.diffusers.profiles import PRESETS, resolve_speed
from reelforge.engines.diffusers.speed import apply_speed, cache_stats
from reelforge.errors import EngineError

sys.path.insert(0, os.path.dirname(__file__))
from tiny_pipelines import build_tiny, save_tiny  # noqa: E402

CALL = dict(prompt="a cat", negative_prompt="", height=32, width=32, num_frames=5, max_sequence_length=16,
            output_type="np", guidance_scale=5.0)


def tiny(family="wan"):
    torch.manual_seed(0)
    return build_tiny(family)


def by_feature(report):
    assert len({e["feature"] for e in report}) == len(report)
    return {e["feature"]: e for e in report}


def run(pipe, steps=4):
    return pipe(**CALL, num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(1)).frames[0]


# ------------------------------------------------------------------ options and presets


def test_presets_resolve_and_fields_override_them():
    assert resolve_speed(None, None).requested() == {} == resolve_speed("quality", None).requested()
    fast = resolve_speed("fast", None)
    assert (fast.attention, fast.compile, fast.cache.kind) == ("auto", "auto", "first_block")
    low = resolve_speed("low-memory", None)
    assert set(low.requested()) == {"group_offload", "fp8_storage", "vae_tiling"}
    assert low.group_offload.offload_type == "block_level" and low.group_offload.use_stream
    over = resolve_speed("fast", {"cache": {"kind": "taylorseer", "cache_interval": 3}, "compile": False})
    assert over.cache.kind == "taylorseer" and over.cache.cache_interval == 3 and "compile" not in over.requested()
    assert over.attention == "auto"
    assert set(PRESETS) == {"quality", "fast", "low-memory"}
    with pytest.raises(ValueError, match="profile 'turbo' is not one of quality, fast, low-memory"):
        resolve_speed("turbo", None)


@pytest.mark.parametrize("options, said", [
    ({"speed": {"attention": "flashy"}}, "speed.attention: attention 'flashy' is not a diffusers attention backend; "
                                         "allowed: auto, "),
    ({"speed": {"cache": {"kind": "teacache"}}}, "speed.cache.kind: Input should be 'first_block', 'taylorseer' or "
                                                 "'magcache'"),
    ({"speed": {"cache": {"kind": "first_block", "cache_interval": 3}}},
     "cache kind 'first_block' takes no cache_interval; its parameters: threshold"),
    ({"speed": {"cache": {"kind": "magcache"}}}, "needs mag_ratios"),
    ({"speed": {"offload": "disk"}}, "speed.offload: Input should be 'model' or 'sequential'"),
    ({"speed": {"turbo": True}}, "speed.turbo: unknown; allowed: attention, compile, cache, fp8_storage"),
    ({"speed": {"group_offload": {"offload_type": "disk"}}}, "speed.group_offload.offload_type: Input should be "
                                                             "'block_level' or 'leaf_level'"),
    ({"profile": "turbo"}, "option 'profile': Input should be 'quality', 'fast' or 'low-memory'"),
    ({"cpu_offload": True, "profile": "low-memory"}, "speed: offload 'model' and group_offload exclude each other"),
])
def test_bad_speed_options_name_the_field_and_the_allowed_values(options, said):
    from reelforge.engines.diffusers.engine import DiffusersEngine

    with pytest.raises(EngineError) as err:
        DiffusersEngine.parse_options(options)
    assert said in str(err.value)
    if "flashy" in said:
        assert "native" in str(err.value) and "_flash_3_hub" in str(err.value)


def test_older_cpu_offload_and_vae_tiling_options_still_parse_onto_the_speed_fields():
    from reelforge.engines.diffusers.engine import DiffusersEngine

    speed = DiffusersEngine.parse_options({"cpu_offload": True, "vae_tiling": True}).speed_options()
    assert speed.requested() == {"offload": "model", "vae_tiling": True}
    # an explicit speed field wins over the older switch
    assert DiffusersEngine.parse_options({"vae_tiling": True, "speed": {"vae_tiling": False}}
                                         ).speed_options().requested() == {}


# ------------------------------------------------------------------ each feature, read back


def test_cache_hooks_are_registered_and_their_skips_counted_per_step():
    pipe = tiny()
    entry = by_feature(apply_speed(pipe, resolve_speed(None, {"cache": {"kind": "first_block", "threshold": 100}}),
                                   "cpu", "wan"))["cache"]
    assert entry["applied"] and "fbc_leader_block_hook" in entry["detail"]
    assert pipe.transformer.is_cache_enabled
    run(pipe, steps=4)
    stats = cache_stats(pipe)
    # CFG: two calls a step; the first call in each context computes, the huge threshold skips the rest
    assert stats["calls"] == 8 and len(stats["per_step"]) == 4
    assert [s["computed"] + s["skipped"] for s in stats["per_step"]] == [2, 2, 2, 2]
    assert stats["per_step"][0] == {**stats["per_step"][0], "computed": 2, "skipped": 0}
    assert stats["skipped"] == 6 and stats["skip_rate"] == 0.75
    assert cache_stats(pipe)["calls"] == 0  # read once: the next shot counts afresh


def test_taylorseer_skips_on_its_interval_and_an_uncached_pipe_has_no_stats():
    pipe = tiny()
    cache = {"kind": "taylorseer", "cache_interval": 2, "disable_cache_before_step": 1}
    assert by_feature(apply_speed(pipe, resolve_speed(None, {"cache": cache}), "cpu", "wan"))["cache"]["applied"]
    run(pipe, steps=5)
    per_step = [(s["computed"], s["skipped"]) for s in cache_stats(pipe)["per_step"]]
    # full compute at step 0 (disable_cache_before_step=1), then every second step (cache_interval=2)
    assert per_step == [(2, 0), (0, 2), (2, 0), (0, 2), (2, 0)]
    plain = tiny()
    apply_speed(plain, resolve_speed(None, None), "cpu", "wan")
    run(plain, steps=2)
    assert cache_stats(plain) is None


def test_first_block_cache_on_a_one_block_transformer_is_skipped_with_the_reason():
    entry = by_feature(apply_speed(tiny("ltx"), resolve_speed(None, {"cache": {"kind": "first_block"}}), "cpu",
                                   "ltx"))["cache"]
    assert not entry["applied"] and "LTXVideoTransformer3DModel has 1" in entry["reason"]


def test_fp8_storage_keeps_weights_in_float8_and_still_runs():
    pipe = tiny()
    entry = by_feature(apply_speed(pipe, resolve_speed(None, {"fp8_storage": True}), "cpu", "wan"))["fp8_storage"]
    fp8 = [p for p in pipe.transformer.parameters() if p.dtype == torch.float8_e4m3fn]
    assert entry["applied"] and fp8 and f"{len(fp8)} of" in entry["detail"] and "computed in float32" in entry["detail"]
    assert np.isfinite(run(pipe, steps=2)).all()


def test_vae_flags_are_read_back_not_copied_from_the_request(monkeypatch):
    pipe = tiny()
    report = by_feature(apply_speed(pipe, resolve_speed(None, {"vae_tiling": True, "vae_slicing": True}), "cpu", "wan"))
    assert report["vae_tiling"]["applied"] and pipe.vae.use_tiling
    assert report["vae_slicing"]["applied"] and pipe.vae.use_slicing
    broken = tiny()
    monkeypatch.setattr(broken.vae, "enable_tiling", lambda: None)  # a VAE that ignores the call
    entry = by_feature(apply_speed(broken, resolve_speed(None, {"vae_tiling": True}), "cpu", "wan"))["vae_tiling"]
    assert not entry["applied"] and "use_tiling is not set" in entry["reason"]


def test_attention_native_is_applied_and_missing_kernels_are_skipped_with_the_package():
    pipe = tiny()
    entry = by_feature(apply_speed(pipe, resolve_speed(None, {"attention": "native"}), "cpu", "wan"))["attention"]
    backends = {p._attention_backend.value for p in ds._processors(pipe.transformer)}
    assert entry["applied"] and backends == {"native"}
    for name, package in (("flash", "flash_attn"), ("sage", "sageattention")):
        if importlib.util.find_spec(package) is not None:
            continue
        entry = by_feature(apply_speed(tiny(), resolve_speed(None, {"attention": name}), "cpu", "wan"))["attention"]
        assert not entry["applied"] and package.replace("_", "-") in entry["reason"]
    entry = by_feature(apply_speed(tiny(), resolve_speed(None, {"attention": "_native_cudnn"}), "cpu", "wan"))
    assert "CUDA only" in entry["attention"]["reason"]


def test_what_needs_a_gpu_or_torchrun_is_skipped_with_the_reason_and_the_pipe_still_runs(monkeypatch, caplog):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    pipe = tiny()
    speed = {"fp8_quant": True, "offload": "sequential", "context_parallel": {"ulysses_degree": 2}}
    report = by_feature(apply_speed(pipe, resolve_speed(None, speed), "cpu", "wan"))
    assert "CUDA GPU" in report["fp8_quant"]["reason"]
    assert "needs an accelerator" in report["offload"]["reason"] and not hasattr(pipe.transformer, "_hf_hook")
    assert "not running under torchrun" in report["context_parallel"]["reason"]
    assert not any(e["applied"] for e in report.values())
    assert {r.message.split("=")[0] for r in caplog.records if r.levelname == "WARNING"} >= {
        "speed: fp8_quant", "speed: offload", "speed: context_parallel"}
    group = by_feature(apply_speed(tiny(), resolve_speed(None, {"group_offload": True}), "cpu", "wan"))
    assert "needs an accelerator" in group["group_offload"]["reason"]
    assert run(pipe, steps=2).shape == (5, 32, 32, 3)
    monkeypatch.setenv("WORLD_SIZE", "3")
    cp = by_feature(apply_speed(tiny(), resolve_speed(None, speed), "cpu", "wan"))["context_parallel"]
    assert "ulysses_degree x ring_degree = 2, but torchrun started 3" in cp["reason"]
    cp = by_feature(apply_speed(tiny("cogvideox"), resolve_speed(None, speed), "cpu", "cogvideox"))
    assert "no context-parallel plan for cogvideox" in cp["context_parallel"]["reason"]


def test_offload_hooks_are_read_back_where_an_accelerator_is_seen(monkeypatch):
    """CPU plays the accelerator ("cpu:0"): the hooks are accelerate's own, whatever the device."""
    monkeypatch.setattr(ds, "_has_accelerator", lambda device: True)
    pipe = tiny()
    model = by_feature(apply_speed(pipe, resolve_speed(None, {"offload": "model"}), "cpu:0", "wan"))["offload"]
    assert model["applied"] and "text_encoder -> transformer -> vae" in model["detail"]
    assert len(pipe._all_hooks) == 3 and pipe.vae in pipe.transformer._reelforge_idle
    pipe = tiny()
    seq = by_feature(apply_speed(pipe, resolve_speed(None, {"offload": "sequential"}), "cpu:0", "wan"))["offload"]
    assert seq["applied"] and any(hasattr(m, "_hf_hook") for m in pipe.transformer.modules())


def test_compile_registers_compiled_blocks_and_auto_skips_on_cpu():
    pipe = tiny()
    entry = by_feature(apply_speed(pipe, resolve_speed(None, {"compile": True}), "cpu", "wan"))["compile"]
    compiled = [m for m in pipe.transformer.modules() if getattr(m, "_compiled_call_impl", None) is not None]
    assert entry["applied"] and len(compiled) == 2 and "2 WanTransformerBlock blocks" in entry["detail"]
    auto = by_feature(apply_speed(tiny(), resolve_speed(None, {"compile": "auto"}), "cpu", "wan"))["compile"]
    assert not auto["applied"] and "CUDA only" in auto["reason"]


def test_compiled_blocks_with_a_cache_run_and_count_their_skips(monkeypatch):
    """Dynamo traces the hooked blocks (fullgraph is impossible there); inductor is swapped for the eager
    backend only to keep the test fast: the tracing and its graph breaks are the same."""
    real_compile = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **kw: real_compile(self, *a, backend="eager", **kw))
    cache = {"kind": "first_block", "threshold": 100}
    plain, compiled = tiny(), tiny()
    apply_speed(plain, resolve_speed(None, {"cache": cache}), "cpu", "wan")
    report = by_feature(apply_speed(compiled, resolve_speed(None, {"cache": cache, "compile": True}), "cpu", "wan"))
    assert report["compile"]["applied"] and "graph breaks at the cache hooks" in report["compile"]["detail"]
    expected = run(plain, steps=3)
    np.testing.assert_allclose(run(compiled, steps=3), expected, atol=1e-5)
    assert cache_stats(compiled) == cache_stats(plain)


def test_fast_and_low_memory_presets_on_cpu_report_what_they_fell_back_to():
    pipe = tiny()
    fast = by_feature(apply_speed(pipe, resolve_speed("fast", None), "cpu", "wan"))
    assert set(fast) == {"attention", "compile", "cache"}
    assert fast["attention"]["applied"] and "auto on cpu" in fast["attention"]["detail"]
    assert not fast["compile"]["applied"] and fast["cache"]["applied"]
    low = by_feature(apply_speed(tiny(), resolve_speed("low-memory", None), "cpu", "wan"))
    assert not low["group_offload"]["applied"] and low["fp8_storage"]["applied"] and low["vae_tiling"]["applied"]
    assert run(pipe, steps=2).shape == (5, 32, 32, 3)


# ------------------------------------------------------------------ through the engine


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("speed-weights")
    return {layout: save_tiny(layout, root / layout) for layout in ("ltx", "wan")}


def test_model_offload_leaves_no_vae_on_the_device_while_image_to_video_denoises(folders, monkeypatch):
    """The I2V pipeline encodes the image with the VAE first: it must leave the device before the denoise.

    On CPU, accelerate's hooks run with the execution device "cpu:0": a move there is an onload, a
    move to "cpu" an offload; the moves of each module are recorded.
    """
    from reelforge.engines.diffusers.engine import DiffusersEngine
    from PIL import Image

    monkeypatch.setattr(ds, "_has_accelerator", lambda device: True)
    monkeypatch.setattr(DiffusersEngine, "_device_and_dtype", lambda self, torch: ("cpu:0", torch.float32))
    eng = DiffusersEngine({"model": "ltx-video", "weights": str(folders["ltx"]), "num_inference_steps": 2,
                           "max_sequence_length": 16, "cpu_offload": True})
    eng._ensure_loaded()
    at: dict[str, str] = {}
    seen: list[dict[str, str]] = []
    i2v = eng._pipes["i2v"]
    for name in ("vae", "text_encoder", "transformer"):  # on the class: accelerate drops instance attributes
        cls = type(getattr(i2v, name))
        real_to = cls.to

        def to(self, *args, _name=name, _real=real_to, **kwargs):
            at[_name] = str(args[0] if args else kwargs.get("device"))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "to", to)
    # registered after the engine's own pre-hook, so it sees the state the transformer runs in
    i2v.transformer.register_forward_pre_hook(lambda m, a: seen.append(dict(at)))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    for img in (image, None, image):  # i2v, then t2v (the other pipeline takes the hooks), then i2v again
        plan = ShotPlan(0, 1, "a cat", 3, 1, 8, 64, 64, img, "reelforge.ltx-video")
        list(eng.render_shot(plan, NullProgress()))
    assert seen and all(s.get("vae") == s.get("text_encoder") == "cpu" for s in seen), seen
    assert by_feature(eng._info["speed"])["offload"]["applied"]
    assert i2v._all_hooks and eng._offloaded is i2v


def test_other_speed_settings_reload_the_pipeline_the_same_ones_keep_it(folders):
    from reelforge.engines.diffusers.engine import DiffusersEngine

    eng = DiffusersEngine({"model": "wan2.1-t2v-1.3b", "weights": str(folders["wan"]), "speed": {"vae_slicing": True}})
    eng._ensure_loaded()
    assert eng._ensure_loaded()[1] == 0.0 and eng.loads == 1
    eng.options = DiffusersEngine.parse_options({**eng.options.model_dump(), "speed": {"vae_tiling": True}})
    eng._ensure_loaded()
    assert eng.loads == 2 and [e["feature"] for e in eng._info["speed"]] == ["vae_tiling"]
    assert eng._pipes["t2v"].vae.use_tiling and not eng._pipes["t2v"].vae.use_slicing


def test_a_job_manifest_records_the_speed_report_and_the_shot_cache_stats(folders, monkeypatch, tmp_path, register_engines):
    import reelforge
    from reelforge import VideoRequest
    from reelforge.engines.diffusers.engine import DiffusersEngine
    from reelforge.engines.diffusers.weights import model_env_var

    register_engines(DiffusersEngine)
    monkeypatch.setenv(model_env_var("wan2.1-t2v-1.3b"), str(folders["wan"]))
    monkeypatch.setenv("REELFORGE_DIFFUSERS_OPTIONS", json.dumps({
        "num_inference_steps": 3, "max_sequence_length": 16, "profile": "fast", "vae_tiling": True,
        "speed": {"cache": {"kind": "first_block", "threshold": 100}}}))
    client = reelforge.Client(data_dir=tmp_path / "data")
    request = VideoRequest(text="a cat walks on the sea", duration_s=1, fps=8, width=64, height=64, seed=3)
    job = client.start(request, model="reelforge.wan2.1-t2v-1.3b", output=str(tmp_path / "out"))
    job.wait(timeout=120)
    assert job.status == "COMPLETED", job.failure_message
    meta = json.loads((job.local_dir / "manifest.json").read_text())["metadata"]
    assert meta["profile"] == "fast"
    speed = by_feature(meta["speed"])
    assert set(speed) == {"attention", "compile", "cache", "vae_tiling"}
    assert speed["cache"]["applied"] and speed["cache"]["requested"] == {"kind": "first_block", "threshold": 100}
    assert not speed["compile"]["applied"] and speed["compile"]["reason"]
    cache = meta["shots"][0]["cache"]
    assert len(cache["per_step"]) == 3 and cache["calls"] == 6 and cache["skipped"] == 4

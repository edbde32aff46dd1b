"""Renders that survive the decode: latents saved before the VAE decode, in the job's output storage.

The split decode (diffusers_decode) equals each pipeline's own output_type="pt" result; a decode
that runs out of memory is retried from the saved latents with no second denoise; a worker killed
(kill -9) during the decode is resumed by a new process that runs the transformer zero times; a
cancel mid-denoise ends CANCELED with no decode. Tiny random pipelines (tests/tiny_pipelines.py).
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import sys

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the extra: pip install 'reelforge[diffusers]'")
pytest.importorskip("diffusers", reason="needs the extra: pip install 'reelforge[diffusers]'")

sys.path.insert(0, os.path.dirname(__file__))

from reelforge.engines.base import NullProgress, RenderContext, ShotPlan  # noqa: E402
from reelforge.engines.diffusers.decode import DECODERS  # noqa: E402
from reelforge.errors import EngineError  # noqa: E402

OOM = "CUDA out of memory. Tried to allocate 20.00 GiB"


@pytest.fixture(scope="module")
def ltx_weights(tmp_path_factory):
    from tiny_pipelines import save_tiny

    return save_tiny("ltx", tmp_path_factory.mktemp("weights") / "ltx")


# --------------------------------------------------------------- the split decode equals the pipeline's


def _ltx_timestep_conditioned():
    """The tiny LTX-Video with a timestep-conditioned VAE (as LTX-Video 0.9.1+): the decode mixes in noise."""
    from diffusers import AutoencoderKLLTXVideo, LTXPipeline
    from tiny_pipelines import tiny_ltx

    pipe = tiny_ltx()
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8,) * 4,
        decoder_block_out_channels=(8,) * 4, layers_per_block=(1,) * 5, decoder_layers_per_block=(1,) * 5,
        spatio_temporal_scaling=(True, True, False, False), decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4, upsample_factor=(1,) * 4,
        timestep_conditioning=True, patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False)
    return LTXPipeline(**{**pipe.components, "vae": vae})


def _ltx_i2v():
    from diffusers import LTXImageToVideoPipeline
    from tiny_pipelines import build_tiny

    return LTXImageToVideoPipeline(**build_tiny("ltx").components)


CASES = {  # layout: (family, how to build it, extra call arguments)
    "ltx": ("ltx", None, {}),
    "ltx-i2v": ("ltx", _ltx_i2v, {"image": True}),
    "ltx-timestep": ("ltx", _ltx_timestep_conditioned, {"decode_timestep": 0.05, "decode_noise_scale": 0.025}),
    "ltx2": ("ltx2", None, dict(frame_rate=25, guidance_scale=1.0, audio_guidance_scale=1.0, stg_scale=0.0,
                                audio_stg_scale=0.0, modality_scale=1.0, audio_modality_scale=1.0)),
    "wan": ("wan", None, {}),
    "wan2.2-5b": ("wan", None, {}),
    "hunyuan15": ("hunyuanvideo15", None, {}),
    "cogvideox": ("cogvideox", None, {}),
}


@pytest.mark.parametrize("layout", list(CASES))
def test_split_decode_equals_the_pipelines_own(layout):
    from PIL import Image
    from tiny_pipelines import build_tiny

    family, build, extra = CASES[layout]
    pipe = build() if build else build_tiny(layout)
    pipe.set_progress_bar_config(disable=True)
    size = 64 if family in ("cogvideox", "ltx2") else 32
    call = dict(prompt="a cat walks", negative_prompt="", height=size, width=size, num_frames=9,
                num_inference_steps=2, max_sequence_length=16, **extra)
    if call.get("image"):
        call["image"] = Image.fromarray(np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8))
    takes = inspect.signature(pipe.__call__).parameters
    call = {k: v for k, v in call.items() if k in takes}
    with torch.no_grad():
        whole = pipe(**call, output_type="pt", generator=torch.Generator().manual_seed(7))
        generator = torch.Generator().manual_seed(7)
        latent = pipe(**call, output_type="latent", generator=generator)
        saved = {"video": latent.frames, "audio": getattr(latent, "audio", None)}
        video, audio = DECODERS[family](pipe, saved, call, "cpu", generator)
    assert video.shape == whole.frames.shape and torch.equal(video, whole.frames)
    if family == "ltx2":
        assert audio is not None and torch.equal(audio, whole.audio)
    if layout == "ltx-timestep":  # the decode noise is really mixed in: another generator state differs
        with torch.no_grad():
            other, _ = DECODERS[family](pipe, saved, call, "cpu", torch.Generator().manual_seed(8))
        assert not torch.equal(other, whole.frames)


# --------------------------------------------------------------- out of memory in the decode


def _engine(weights, **options):
    from reelforge.engines.diffusers.engine import DiffusersEngine

    return DiffusersEngine({"model": "ltx-video", "weights": str(weights), "num_inference_steps": 3,
                            "max_sequence_length": 16, **options})


def _plan(seed=3):
    return ShotPlan(0, 1, "a cat walks on the sea", seed, 1, 8, 64, 64, None, "reelforge.ltx-video")


class _Counts:
    """Transformer forwards and VAE decode calls of the tiny LTX-Video (class-wide), the first ``ooms`` decodes failing."""

    def __init__(self, monkeypatch, ooms=0):
        from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel

        self.forwards, self.decodes, self.ooms = 0, 0, ooms
        forward, decode = LTXVideoTransformer3DModel.forward, AutoencoderKLLTXVideo.decode

        def counted_forward(module, *a, **k):
            self.forwards += 1
            return forward(module, *a, **k)

        def failing_decode(module, *a, **k):
            self.decodes += 1
            if self.decodes <= self.ooms:
                raise torch.OutOfMemoryError(OOM)
            return decode(module, *a, **k)

        monkeypatch.setattr(LTXVideoTransformer3DModel, "forward", counted_forward)
        monkeypatch.setattr(AutoencoderKLLTXVideo, "decode", failing_decode)


def _render(eng, checkpoint, seed=3):
    progress = NullProgress()
    out = eng.render(_plan(seed), RenderContext(progress, checkpoint=checkpoint))
    return np.stack(list(out.frames)), progress.metadata["shots"][0]


def test_a_decode_out_of_memory_is_retried_tiled_from_the_saved_latents(ltx_weights, tmp_path, monkeypatch):
    eng = _engine(ltx_weights)
    clean, _ = _render(eng, None)
    counts = _Counts(monkeypatch, ooms=1)
    frames, shot = _render(eng, tmp_path)
    assert np.array_equal(frames, clean)  # the retried decode gives the frames an unbroken run gives
    assert counts.forwards == 3 and counts.decodes == 2  # one denoise (3 steps), two decodes
    d = shot["decode"]
    assert d["latents"] == "saved" and d["decoded_by"] == "tiled"
    assert [(a["how"], a["ok"]) for a in d["attempts"]] == [("as loaded", False), ("tiled", True)]
    assert "out of memory" in d["attempts"][0]["error"]
    assert [p.name for p in tmp_path.iterdir()] == [d["file"]]  # written whole: no temp file beside it


def test_when_every_decode_runs_out_the_job_fails_clearly_and_the_latents_stay(ltx_weights, tmp_path, monkeypatch):
    eng = _engine(ltx_weights)
    counts = _Counts(monkeypatch, ooms=99)
    with pytest.raises(EngineError, match=r"ran out of memory decoding 64x64x9 on every try \(as loaded .*tiled .*\); "
                                          r"the denoised latents stay in the shot's checkpoint"):
        _render(eng, tmp_path)
    assert counts.forwards == 3 and counts.decodes == 2  # on a CPU there is no CPU rung to fall back to
    (saved,) = tmp_path.glob("latents-*.safetensors")
    counts.ooms, counts.forwards = 0, 0  # memory is back: the next attempt decodes what was saved
    frames, shot = _render(eng, tmp_path)
    assert counts.forwards == 0 and shot["decode"]["latents"] == "resumed" and shot["steps_run"] == 0
    assert frames.shape == (8, 64, 64, 3) and frames.std() > 0
    # another plan (here a seed) never reuses them: it denoises, and its latents replace the old ones
    _render(eng, tmp_path, seed=4)
    assert counts.forwards == 3 and not saved.exists() and len(list(tmp_path.glob("latents-*"))) == 1


class _Part:
    """A pipeline component that records what the ladder does to it (the ladder's logic, no GPU needed)."""

    def __init__(self, log, name):
        self.log, self.name = log, name

    def to(self, device):
        self.log.append(f"{self.name} to {device}")
        return self

    def enable_tiling(self):
        self.log.append("tiling on")

    def disable_tiling(self):
        self.log.append("tiling off")


def test_the_ladder_on_a_gpu_goes_tiled_then_cpu_and_puts_the_pipeline_back():
    from types import SimpleNamespace

    from reelforge.engines.diffusers.decode import DecodeReport, decode_ladder

    log = []
    pipe = SimpleNamespace(vae=_Part(log, "vae"), audio_vae=_Part(log, "audio_vae"), vocoder=None)

    def run(how, where):
        log.append(f"decode {how} on {where}")
        if where != "cpu":
            raise torch.OutOfMemoryError(OOM)
        return "frames"

    report = DecodeReport("saved")
    assert decode_ladder(run, pipe, "cuda", report, already_tiled=False, offloaded=False) == "frames"
    assert log == ["decode as loaded on cuda", "tiling on", "decode tiled on cuda", "tiling off",
                   "vae to cpu", "audio_vae to cpu", "decode cpu on cpu", "vae to cuda", "audio_vae to cuda"]
    assert [(a["how"], a["ok"]) for a in report.attempts] == [("as loaded", False), ("tiled", False), ("cpu", True)]
    log.clear()
    with pytest.raises(ValueError):  # only running out of memory moves down the ladder
        decode_ladder(lambda how, where: (_ for _ in ()).throw(ValueError("a bug")), pipe, "cuda",
                      DecodeReport("saved"), already_tiled=True, offloaded=False)
    assert log == []


def _client(weights, tmp_path, monkeypatch, steps):
    import reelforge
    from reelforge.engines.diffusers.engine import DiffusersEngine

    reelforge.register_engine(DiffusersEngine)  # what the entry point does once the package is installed
    monkeypatch.setenv("REELFORGE_LTX_VIDEO_WEIGHTS", str(weights))
    monkeypatch.setenv("REELFORGE_DIFFUSERS_OPTIONS", json.dumps({"num_inference_steps": steps, "max_sequence_length": 16}))
    return reelforge.Client(data_dir=tmp_path / "data")


def test_a_job_whose_decode_never_fits_fails_keeping_its_latents_out_of_its_outputs(ltx_weights, tmp_path, monkeypatch):
    from reelforge import JobFailedError, VideoRequest
    from reelforge.storage.base import LocalStorage

    client = _client(ltx_weights, tmp_path, monkeypatch, steps=2)
    _Counts(monkeypatch, ooms=99)
    job = client.start(VideoRequest(text="a cat", duration_s=1, fps=8, width=64, height=64, seed=3),
                       model="reelforge.ltx-video", output=str(tmp_path / "out"))
    with pytest.raises(JobFailedError):
        job.wait(timeout=60)
    assert "ran out of memory decoding 64x64x9 on every try" in job.failure_message
    folder = tmp_path / "out" / job.id
    assert len(list((folder / ".checkpoints" / "shot_0001").glob("latents-*.safetensors"))) == 1
    listed = LocalStorage().list(job.record.storage_uri)
    assert listed == ["manifest.json", "video-generation-status.json"]  # the latents are no output


# --------------------------------------------------------------- kill -9 during the decode, in new processes


def test_a_worker_killed_during_the_decode_is_resumed_without_denoising(ltx_weights, tmp_path, monkeypatch):
    from faults import Worker

    import fault_engines  # noqa: F401 - the test engines, registered here as in the workers
    from reelforge.jobs.open import open_store
    from reelforge.jobs.record import JobStatus
    from reelforge.request.model import VideoRequest
    from reelforge.jobs.runtime import Runtime

    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    deaths, forwards = tmp_path / "deaths", tmp_path / "forwards"
    deaths.write_text("1")
    forwards.touch()
    settings = dict(REELFORGE_HOME=home, REELFORGE_LEASE_S=2, REELFORGE_RECOVER_S=0.2, REELFORGE_BACKGROUND_WORKER="never",
                    REELFORGE_LTX_VIDEO_WEIGHTS=ltx_weights, REELFORGE_TEST_DEATHS=deaths, REELFORGE_TEST_FORWARDS=forwards)
    for k, v in settings.items():
        monkeypatch.setenv(k, str(v))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELFORGE_") or k in settings}
    runtime = Runtime(open_store(home / "jobs.sqlite3"))
    job = runtime.submit("test.dies-at-decode", VideoRequest(text="a cat", duration_s=1, fps=8, width=64, height=64), out)[0]
    first = Worker(env, "--until-idle", preload="fault_engines", log=home / "workers.out").start()
    assert first.wait(120) == -signal.SIGKILL  # denoised, saved its latents, died as the decode began
    checkpoint = out / job.id / ".checkpoints" / "shot_0001"
    assert len(list(checkpoint.glob("latents-*.safetensors"))) == 1
    assert forwards.read_text().split() == [str(first.pid)] * 2  # its 2 denoising steps
    second = Worker(env, "--until-idle", preload="fault_engines", log=home / "workers.out").start()
    second.wait(120)  # recovers the dead worker's job, finds the latents, decodes
    done = runtime.store.get(job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2, done.failure_message
    assert str(second.pid) not in forwards.read_text().split()  # zero transformer calls in the new process
    shot = json.loads((out / job.id / "manifest.json").read_text())["metadata"]["shots"][0]
    assert shot["decode"]["latents"] == "resumed" and shot["decode"]["decoded_by"] == "as loaded"
    assert not (out / job.id / ".checkpoints").exists()  # removed once the shot completed


# --------------------------------------------------------------- cancel mid-denoise


def test_cancel_mid_denoise_ends_canceled_with_no_decode(ltx_weights, tmp_path, monkeypatch):
    import dataclasses
    import threading

    from reelforge import JobCanceledError, VideoRequest
    from reelforge.engines.diffusers.engine import DiffusersEngine

    client = _client(ltx_weights, tmp_path, monkeypatch, steps=4)
    runtime = client._backend.runtime
    runtime.timings = dataclasses.replace(runtime.timings, heartbeat_s=0.0)  # every progress call reaches the job log
    counts = _Counts(monkeypatch)
    at_step, canceled = threading.Event(), threading.Event()
    real_call = DiffusersEngine._call_pipeline

    def pause_at_step_1(self, pipe, callback_on_step_end, **kwargs):
        def on_step(p, i, t, kw):
            if i == 1:
                at_step.set()
                canceled.wait(30)
            return callback_on_step_end(p, i, t, kw)

        return real_call(self, pipe, callback_on_step_end=on_step, **kwargs)

    monkeypatch.setattr(DiffusersEngine, "_call_pipeline", pause_at_step_1)
    job = client.start(VideoRequest(text="a cat", duration_s=1, fps=8, width=64, height=64, seed=3),
                       model="reelforge.ltx-video", output=str(tmp_path / "out"))
    assert at_step.wait(60)
    job.cancel()
    canceled.set()
    with pytest.raises(JobCanceledError):
        job.wait(timeout=60)
    assert job.status == "CANCELED" and job.record.metadata["canceled_at_step"] == 2
    assert counts.decodes == 0 and counts.forwards == 2  # steps 3 and 4 never ran, nor did the VAE
    assert not (tmp_path / "out" / job.id / ".checkpoints").exists()


# --------------------------------------------------------------- checkpoints in S3


def test_s3_checkpoints_are_kept_in_the_bucket_and_found_by_another_staging_folder(tmp_path, monkeypatch):
    import threading

    import boto3
    from server_fixtures import moto_s3

    from reelforge.storage import base as storage
    from reelforge.jobs.folder import Folder as _Folder, drop_checkpoints

    with moto_s3():
        monkeypatch.setattr(storage, "_s3_clients", threading.local())
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="renders")
        uri = "s3://renders/out/job1"
        with _Folder(uri) as first:
            folder, keep = first.checkpoint(0)
            (folder / "latents-abc.safetensors").write_bytes(b"denoised")
            keep(folder / "latents-abc.safetensors")
            first.put_json("manifest.json", {})
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="renders")["Contents"]]
        assert sorted(keys) == ["out/job1/.checkpoints/shot_0001/latents-abc.safetensors", "out/job1/manifest.json"]
        assert storage.S3Storage().list(uri) == ["manifest.json"]  # never listed as an output
        with _Folder(uri) as second:  # a worker elsewhere: a fresh staging folder
            folder, _ = second.checkpoint(0)
            assert (folder / "latents-abc.safetensors").read_bytes() == b"denoised"
        drop_checkpoints(uri, 0)
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="renders")["Contents"]] == ["out/job1/manifest.json"]

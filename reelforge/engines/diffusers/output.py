"""A pipeline's output as a shot's frames and sound (uint8 RGB frames, the track cut to the shot's length), and the shot's metadata record."""

from __future__ import annotations

from typing import Any

import numpy as np

from reelforge.engines.base import Audio, ShotPlan


def uint8_frames(video) -> np.ndarray:
    """One video from a pipeline's output as (frames, H, W, 3) uint8: torch (F, 3, H, W), numpy (F, H, W, 3) or PIL."""
    import torch

    if isinstance(video, torch.Tensor):
        # round, don't truncate; convert on the device so only uint8 crosses to the host
        frames = (video.float() * 255).round_().clamp_(0, 255).to(dtype=torch.uint8)
        if frames.shape[-1] != 3:
            frames = frames.permute(0, 2, 3, 1)
        return frames.contiguous().cpu().numpy()
    if isinstance(video, np.ndarray):
        return np.clip(np.rint(video.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    return np.stack([np.asarray(frame.convert("RGB")) for frame in video])


def fit_audio(audio: Audio, duration_s: float) -> tuple[Audio, dict[str, Any]]:
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


def shot_record(shot: ShotPlan, task: str, pipeline: str, plan, rules, smap, tmap, generated: tuple[int, int, int], *,
                audio: dict | None, steps: int, steps_run: int, decode: dict, timings: dict, cache: dict | None) -> dict:
    """What a job's metadata keeps of one shot: asked for, planned, generated, and how it was adapted back."""
    gen_w, gen_h, n_src = generated
    return {
        "index": shot.index, "seed": shot.seed, "mode": {"t2v": "text-to-video", "i2v": "image-to-video"}[task],
        "pipeline": pipeline,
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
        "audio": audio,
        "steps": steps, "steps_run": steps_run, "decode": decode,
        "timings": timings,
        **({"cache": cache} if cache else {}),
    }

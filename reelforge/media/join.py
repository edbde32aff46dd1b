"""Joining MP4s end to end by stream copy (one re-encoded AAC track when any clip has sound), and the check that they can be."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import numpy as np

from reelforge.media.audio import aac_packets, add_aac_stream, fit_samples, mux_in_time_order, read_audio
from reelforge.media.files import PathLike, publish, temp_path, unlink_quietly
from reelforge.media.video import video_duration

__all__ = ["concat_mp4", "streams_match"]

log = logging.getLogger("reelforge.media")


def _signature(path: PathLike) -> dict:
    with av.open(str(path)) as c:
        if not c.streams.video:
            raise ValueError(f"{path} has no video stream")
        s = c.streams.video[0]
        cc = s.codec_context
        return {
            "codec": cc.name,
            "profile": s.profile,
            "size": f"{cc.width}x{cc.height}",
            "pix_fmt": cc.pix_fmt,
            "fps": s.average_rate,
            # avcC holds SPS/PPS out of band; a join can only carry one, so all clips must share it.
            "parameter sets": bytes(cc.extradata or b""),
        }


def _mismatch(paths: list) -> str | None:
    sigs = [_signature(p) for p in paths]
    for i, sig in enumerate(sigs[1:], start=1):
        for key, value in sig.items():
            if value != sigs[0][key]:
                if key == "parameter sets":
                    detail = "different H.264 parameter sets (encoded with other settings)"
                else:
                    detail = f"{key} {value} vs {sigs[0][key]}"
                return f"clip {i + 1} ({paths[i]}) differs from clip 1 ({paths[0]}): {detail}"
    return None


def streams_match(paths: list) -> bool:
    """True when the MP4s can be joined by stream copy (same codec, profile, size, pix_fmt, fps, SPS/PPS)."""
    return _mismatch(list(paths)) is None


def concat_mp4(paths: list, out_path: PathLike) -> Path:
    """Join MP4s end to end; the video by stream copy, timestamps running on continuously.

    When any clip has sound, the result has one AAC track: each clip's audio (silence for a clip
    without) cut or padded to that clip's video, then encoded once. Copying AAC packets instead
    would put each clip's encoder priming (1024 samples) at every join and let the sound drift
    late by that much per shot; re-encoding the audio costs a small fraction of the video's encode.
    """
    paths = list(paths)
    if not paths:
        raise ValueError("concat_mp4 needs at least one input file")
    problem = _mismatch(paths)
    if problem:
        raise ValueError(f"cannot join without re-encoding: {problem}")
    sounds = [read_audio(p) for p in paths]
    durations = []
    for p in paths:
        with av.open(str(p)) as c:
            durations.append(video_duration(c, c.streams.video[0]))
    out_path = Path(out_path)
    tmp = temp_path(out_path)
    try:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out, av.open(str(paths[0])) as first:
            ostream = out.add_stream_from_template(first.streams.video[0])
            audio = _joined_audio(out, sounds, durations)
            mux_in_time_order(out, _video_run(paths, ostream), audio)
    except BaseException:
        unlink_quietly(tmp)
        raise
    publish(tmp, out_path)
    return out_path


def _joined_audio(out, sounds: list, durations: list[Fraction]) -> list:
    """The encoded packets of one AAC track for the joined clips (empty when none has sound)."""
    heard = [s for s in sounds if s is not None]
    if not heard:
        return []
    rate = heard[0][1]
    channels = max(s[0].shape[0] for s in heard)
    parts = []
    for sound, duration in zip(sounds, durations):
        count = round(duration * rate)
        if sound is None:
            parts.append(np.zeros((channels, count), np.float32))
            continue
        samples, r = sound
        if r != rate:
            raise ValueError(f"cannot join sound at {r} Hz with sound at {rate} Hz")
        if samples.shape[0] != channels:
            samples = np.repeat(samples, channels, axis=0)  # mono beside stereo: the same on both sides
        parts.append(fit_samples(samples, count))
    samples = np.concatenate(parts, axis=1)
    return aac_packets(add_aac_stream(out, samples, rate), samples)


def _video_run(paths: list, ostream) -> Iterator:
    """Each clip's video packets, read one clip at a time, shifted so each starts where the one before ended."""
    offset = Fraction(0)  # seconds already laid down
    last_dts = None  # in seconds, to keep decode order strictly increasing across joins
    for p in paths:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            tb = cast(Fraction, s.time_base)
            clip: list[Any] = [pk for pk in c.demux(s) if pk.dts is not None and pk.pts is not None]
            if not clip:
                continue
            start = min(pk.pts for pk in clip)
            end = max(pk.pts + (pk.duration or 0) for pk in clip)
            shift = round(offset / tb) - start
            first_dts = (clip[0].dts + shift) * tb
            if last_dts is not None and first_dts <= last_dts:
                # Deeper B-frame delay than the previous clip; a tiny gap beats a muxer error.
                extra = int((last_dts - first_dts) / tb) + 1
                log.warning("concat_mp4: shifting %s by %d ticks to keep dts increasing", p, extra)
                shift += extra
            for pk in clip:
                pk.pts += shift
                pk.dts += shift
                pk.stream = ostream
                yield pk
            last_dts = clip[-1].dts * tb
            offset = (end + shift) * tb

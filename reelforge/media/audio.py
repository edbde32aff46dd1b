"""Sound in MP4s: AAC encoding and muxing beside the video, reading a track back, replacing it, and describing it."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import numpy as np

from reelforge.media.files import PathLike, publish, temp_path, unlink_quietly
from reelforge.media.video import AudioInfo, audio_info, video_duration

__all__ = ["AAC_FRAME", "aac_packets", "add_aac_stream", "fit_samples", "mux_in_time_order", "probe_audio", "read_audio", "set_audio", "sound_label"]


def sound_label(audio: dict | None, kept: bool = True) -> str:
    """A video's sound in words, from AudioInfo.to_dict() as a job's metadata keeps it."""
    if not kept:
        return "none: a silent video was asked for"
    if not audio:
        return "none (silent video)"
    channels = {1: "mono", 2: "stereo"}.get(cast(Any, audio.get("channels")), f"{audio.get('channels')} channels")
    return f"{str(audio.get('codec', '')).upper()}, {audio.get('sampleRate', 0) / 1000:g} kHz, {channels}"


def probe_audio(path: PathLike) -> AudioInfo | None:
    """The first audio stream of ``path`` (read from the container, nothing decoded); None without one."""
    with av.open(str(path)) as c:
        return audio_info(c)


AAC_FRAME = 1024  # samples per AAC frame: what the encoder takes per call


def fit_samples(samples: np.ndarray, count: int) -> np.ndarray:
    """``samples`` (channels, n) cut or padded with silence to exactly ``count`` samples."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.shape[1] >= count:
        return samples[:, :count]
    return np.concatenate([samples, np.zeros((samples.shape[0], count - samples.shape[1]), np.float32)], axis=1)


def _check_samples(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.ndim != 2 or samples.shape[0] not in (1, 2) or samples.shape[1] == 0:
        raise ValueError(f"audio must be float samples shaped (channels, samples) with 1 or 2 channels, got {samples.shape}")
    if not 8000 <= int(sample_rate) <= 96000:
        raise ValueError(f"audio sample rate {sample_rate} is not allowed; allowed: 8000 to 96000 Hz")
    return np.clip(np.nan_to_num(samples.astype(np.float32, copy=False)), -1.0, 1.0)


def aac_packets(stream, samples: np.ndarray) -> list:
    """Encode (channels, n) float32 samples through ``stream`` (an AAC output stream); its packets, in order."""
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    packets = []
    for i in range(0, samples.shape[1], AAC_FRAME):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + AAC_FRAME]), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = stream.codec_context.sample_rate, i
        packets.extend(stream.encode(frame))
    packets.extend(stream.encode(None))
    return packets


def add_aac_stream(out, samples: np.ndarray, sample_rate: int):
    return out.add_stream("aac", rate=int(sample_rate), layout="mono" if samples.shape[0] == 1 else "stereo")


def mux_in_time_order(out, video_packets: Iterable, audio_packets: list) -> None:
    """Mux video packets as they come and the (already encoded) audio packets between them, by time,
    so the muxer never holds a whole track in memory waiting for the other."""
    queue_ = list(reversed(audio_packets))
    for pk in video_packets:
        t = pk.dts * pk.time_base
        while queue_ and queue_[-1].dts * queue_[-1].time_base <= t:
            out.mux(queue_.pop())
        out.mux(pk)
    while queue_:
        out.mux(queue_.pop())


def read_audio(path: PathLike) -> tuple[np.ndarray, int] | None:
    """The first audio stream of ``path`` as float32 (channels, samples) and its sample rate; None without one.

    Encoder priming is left out by the decoder; the padding of the last AAC frame is cut here, to the
    stream's duration."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        a = c.streams.audio[0]
        rate = a.codec_context.sample_rate
        chunks = []
        for frame in c.decode(a):
            data = frame.to_ndarray()
            if not frame.format.is_planar:  # packed: (1, n * channels)
                data = data.reshape(-1, frame.layout.nb_channels).T
            chunks.append(data.astype(np.float32))
        if not chunks:
            return None
        samples = np.concatenate(chunks, axis=1)
        if a.duration is not None:
            samples = samples[:, : round(a.duration * cast(Fraction, a.time_base) * rate)]
        return samples, rate


def set_audio(path: PathLike, samples: np.ndarray | None, sample_rate: int = 0) -> Path:
    """Give the MP4 at ``path`` an AAC track of ``samples`` (float32 (channels, n) in [-1, 1]), in
    place of any it had; ``samples=None`` leaves it silent.

    The video is copied as it is; the audio is cut or padded with silence to the video's duration,
    so the two end together. The file is replaced whole (readers see the old or the new one)."""
    path = Path(path)
    if samples is None:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                return path
    else:
        samples = _check_samples(samples, sample_rate)
    tmp = temp_path(path)
    try:
        with av.open(str(path)) as src, av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            vs = src.streams.video[0]
            ov = out.add_stream_from_template(vs)
            audio = []
            if samples is not None:
                count = round(video_duration(src, vs) * sample_rate)
                audio = aac_packets(add_aac_stream(out, samples, sample_rate), fit_samples(samples, count))

            def video():
                for pk in src.demux(vs):
                    if pk.dts is not None:
                        pk.stream = ov
                        yield pk

            mux_in_time_order(out, video(), audio)
    except BaseException:
        unlink_quietly(tmp)
        raise
    publish(tmp, path)
    return path

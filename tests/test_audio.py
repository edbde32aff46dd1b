"""Sound through the job path: an engine's audio becomes the MP4's AAC track, kept across joins,
dropped by --no-audio; finished files handed back by an engine are checked, then published."""

import json

import av
import numpy as np
import pytest
from click.testing import CliRunner

from reelforge import Audio, Client, Engine, JobFailedError, ShotOutput, VideoRequest
from reelforge import media
from helpers import engines_registered
from reelforge.cli.main import cli
from reelforge.request.limits import LOCAL, ModelSpec

RATE = 16000
TINY = dict(fps=24, width=128, height=72)


def tone(freq: float, seconds: float, channels: int = 2) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.repeat((0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None], channels, axis=0)


def pitch(samples: np.ndarray) -> float:
    """The loudest frequency of a mono stretch of samples, in Hz."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * RATE / len(samples))


class ToneEngine(Engine):
    """Grey frames and a sine tone whose pitch tells the shot (440 Hz for shot 1, 660 for 2, 880 for 3).

    The tone is set on the output once the frames are done, as an engine whose model makes the
    sound at the end would."""

    engine_id = "test-tone"

    @classmethod
    def models(cls):
        return [ModelSpec("test.tone", "test-tone", "frames and a tone", LOCAL)]

    def render(self, shot, ctx):
        out = ShotOutput()

        def frames():
            for i in range(shot.frame_count):
                ctx.progress(i, shot.frame_count, "render")
                yield np.full((shot.height, shot.width, 3), 60 * (shot.index + 1), np.uint8)
            out.audio = Audio(tone(220 * (shot.index + 2), shot.duration_s + 0.05), RATE)  # a little long: cut to the video

        out.frames = frames()
        return out


class LegacyEngine(Engine):
    """A plugin written before the door grew: it only has render_shot."""

    engine_id = "test-legacy"

    @classmethod
    def models(cls):
        return [ModelSpec("test.legacy", "test-legacy", "frames only, the old way", LOCAL)]

    def render_shot(self, shot, progress):
        for _ in range(shot.frame_count):
            yield np.full((shot.height, shot.width, 3), 90, np.uint8)


class FileEngine(Engine):
    """Hands back a finished MP4 with sound, as a remote service would; the prompt "wrong size" makes a bad one."""

    engine_id = "test-file"

    @classmethod
    def models(cls):
        return [ModelSpec("test.file", "test-file", "finished files", LOCAL)]

    def render(self, shot, ctx):
        w, h = (shot.width // 2, shot.height) if shot.text == "wrong size" else (shot.width, shot.height)
        path = ctx.workdir / "made.mp4"
        media.encode_mp4((np.full((h, w, 3), 120, np.uint8) for _ in range(shot.frame_count)), path, shot.fps)
        media.set_audio(path, tone(330, shot.duration_s), RATE)
        return ShotOutput(video_file=path)


registered_engines = engines_registered(ToneEngine, LegacyEngine, FileEngine)


def streams(path):
    """(video frames, width, height, fps, video seconds, audio codec or None, audio seconds)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(v))
        vdur = float(v.duration * v.time_base)
        fps = v.average_rate
        if not c.streams.audio:
            return frames, v.codec_context.width, v.codec_context.height, fps, vdur, None, None
        a = c.streams.audio[0]
        return frames, v.codec_context.width, v.codec_context.height, fps, vdur, a.codec_context.name, float(a.duration * a.time_base)


def test_an_engines_sound_is_the_mp4s_aac_track_in_sync(tmp_path):
    job = Client().start(VideoRequest(text="a bell", duration_s=2, **TINY), model="test.tone", output=tmp_path).wait(timeout=60)
    frames, w, h, fps, vdur, codec, adur = streams(job.local_dir / "output.mp4")
    assert (frames, w, h, fps) == (48, 128, 72, 24)
    assert codec == "aac" and abs(adur - vdur) <= 1 / 24
    samples, rate = media.read_audio(job.local_dir / "output.mp4")
    assert rate == RATE and samples.shape[0] == 2 and abs(pitch(samples[0, 4000:12000]) - 440) < 5
    manifest = json.loads((job.local_dir / "manifest.json").read_text())
    assert {k: manifest["output"]["audio"][k] for k in ("codec", "sampleRate", "channels")} == {"codec": "aac", "sampleRate": RATE, "channels": 2}
    assert manifest["keepAudio"] is True
    assert job.audio["codec"] == "aac" and "AAC, 16 kHz, stereo" in job._repr_html_()
    shown = json.loads(CliRunner().invoke(cli, ["jobs", "show", job.id], catch_exceptions=False).stdout)
    assert shown["audio"]["sampleRate"] == RATE and shown["keepAudio"] is True

    from reelforge.server.gallery.views import detail

    assert detail(job.record).sound == "AAC, 16 kHz, stereo"


def test_three_shots_keep_their_sound_across_the_join(tmp_path):
    shots = [{"text": t, "duration_s": 1} for t in ("one", "two", "three")]
    job = Client(workers=2).start(VideoRequest(shots=shots, **TINY), model="test.tone", output=tmp_path).wait(timeout=60)
    frames, w, h, fps, vdur, codec, adur = streams(job.local_dir / "output.mp4")
    assert (frames, w, h, fps) == (72, 128, 72, 24) and codec == "aac" and abs(adur - vdur) <= 1 / 24
    for n in (1, 2, 3):
        assert streams(job.local_dir / f"shot_{n:04d}.mp4")[5] == "aac"
    samples, _ = media.read_audio(job.local_dir / "output.mp4")
    # each second carries its own shot's pitch: the sound did not drift across the joins
    heard = [pitch(samples[0, k * RATE + 2000:(k + 1) * RATE - 2000]) for k in range(3)]
    assert [round(f / 10) * 10 for f in heard] == [440, 660, 880]


def test_no_audio_gives_a_silent_video_and_is_recorded(tmp_path):
    result = CliRunner().invoke(cli, ["generate", "a bell", "--model", "test.tone", "--duration", "1", "--fps", "24",
                                      "--resolution", "128x72", "--no-audio", "-o", str(tmp_path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["keepAudio"] is False and shown["audio"] is None
    folder = tmp_path / shown["id"]
    assert streams(folder / "output.mp4")[5] is None
    assert json.loads((folder / "manifest.json").read_text())["keepAudio"] is False
    # the same from Python, for a finished file that came with sound
    job = Client().start(VideoRequest(text="x", duration_s=1, **TINY), model="test.file", output=tmp_path, audio=False).wait(timeout=60)
    assert job.record.audio is False and streams(job.local_dir / "output.mp4")[5] is None


def test_a_frames_only_engine_still_works_and_is_silent(tmp_path):
    job = Client().start(VideoRequest(text="x", duration_s=1, **TINY), model="test.legacy", output=tmp_path).wait(timeout=60)
    assert streams(job.local_dir / "output.mp4")[:6] == (24, 128, 72, 24, 1.0, None)
    assert job.audio is None


def test_a_finished_file_is_checked_then_published(tmp_path):
    job = Client().start(VideoRequest(text="x", duration_s=1, **TINY), model="test.file", output=tmp_path).wait(timeout=60)
    frames, w, h, fps, vdur, codec, adur = streams(job.local_dir / "output.mp4")
    assert (frames, w, h, fps, codec) == (24, 128, 72, 24, "aac") and abs(adur - vdur) <= 1 / 24
    bad = Client().start(VideoRequest(text="wrong size", duration_s=1, **TINY), model="test.file", output=tmp_path)
    with pytest.raises(JobFailedError):
        bad.wait(timeout=60)
    assert bad.failure_message == (
        "engine test-file handed back a video file for shot 1 that does not match its plan: "
        "it is h264 64x72, 24 frames at 24 fps; the shot needs h264 128x72, 24 frames at 24 fps"
    )
    assert not (bad.local_dir / "output.mp4").exists()

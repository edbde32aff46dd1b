"""reelforge.media against real files encoded in the test."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from reelforge import media
from reelforge.errors import StorageError

COLORS = [(200, 30, 60), (20, 180, 40), (30, 40, 220)]


def gradient_frames(n=144, width=1280, height=720):
    """A smooth moving gradient: cheap to encode, so the 720p file stays around 350 KB."""
    y, x = np.mgrid[0:height, 0:width]
    r, g = (x // 5).astype(np.uint8), (y // 3).astype(np.uint8)
    for i in range(n):
        frame = np.empty((height, width, 3), np.uint8)
        frame[..., 0] = r + i
        frame[..., 1] = g + i
        frame[..., 2] = (i * 2) % 256
        yield frame


def solid(color, width=320, height=180):
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = color
    return frame


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three 6 s clips at 24 fps, one solid colour each, different crf (stitchable keeps them joinable)."""
    d = tmp_path_factory.mktemp("clips")
    return [media.encode_mp4([solid(c)] * 144, d / f"clip{k}.mp4", 24, crf=20 + 3 * k) for k, c in enumerate(COLORS)]


def test_encode_720p_probe(tmp_path):
    out = media.encode_mp4(gradient_frames(), tmp_path / "out.mp4", 24)
    assert out == tmp_path / "out.mp4"
    info = media.probe(out)
    assert info.codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert (info.width, info.height) == (1280, 720)
    assert info.fps == 24.0
    assert info.frames == 144
    assert info.duration == pytest.approx(6.0)
    assert info.moov_before_mdat is True
    assert info.profile == "High"
    assert out.stat().st_size < 600_000
    assert leftovers(tmp_path) == []


def test_writer_counts_and_colors_roundtrip(tmp_path):
    path = tmp_path / "c.mp4"
    with media.VideoWriter(path, 24, width=64, height=48) as w:
        for _ in range(5):
            w.write(solid(COLORS[0], 64, 48))
        assert not path.exists()  # nothing published until close
    assert w.frames_written == 5
    frames = list(media.read_frames(path))
    assert len(frames) == 5 and frames[0].shape == (48, 64, 3)
    # BT.709 tagged and converted both ways, so colours survive within rounding.
    assert np.abs(frames[0].reshape(-1, 3).mean(0) - COLORS[0]).max() < 3
    assert np.array_equal(media.read_frame(path, 4), frames[4])
    with pytest.raises(IndexError):
        media.read_frame(path, 5)


def test_failure_inside_writer_leaves_nothing(tmp_path):
    path = tmp_path / "fail.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with media.VideoWriter(path, 24) as w:
            for frame in gradient_frames(10, 64, 48):
                w.write(frame)
            raise RuntimeError("boom")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "keep.mp4"
    path.write_bytes(b"old")
    with pytest.raises(ValueError):
        with media.VideoWriter(path, 24) as w:
            w.write(solid(COLORS[0], 64, 48))
            w.write(solid(COLORS[0], 32, 48))
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("size", [(321, 240), (320, 241)])
def test_odd_size_rejected(tmp_path, size):
    w, h = size
    with pytest.raises(ValueError, match=f"{w}x{h}"):
        media.VideoWriter(tmp_path / "a.mp4", 24, width=w, height=h)
    with pytest.raises(ValueError, match=f"{w}x{h}"):
        media.encode_mp4([np.zeros((h, w, 3), np.uint8)], tmp_path / "b.mp4", 24)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "bad",
    [np.zeros((48, 64), np.uint8), np.zeros((48, 64, 4), np.uint8), np.zeros((48, 64, 3), np.float32)],
    ids=["2d", "rgba", "float"],
)
def test_wrong_frame_shape_rejected(tmp_path, bad):
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        with media.VideoWriter(tmp_path / "a.mp4", 24, width=64, height=48) as w:
            w.write(bad)
    assert list(tmp_path.iterdir()) == []


def test_no_frames_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        media.encode_mp4([], tmp_path / "empty.mp4", 24)
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_storage_error(tmp_path):
    with pytest.raises(StorageError):
        media.encode_mp4([solid(COLORS[0], 64, 48)], tmp_path / "nope" / "a.mp4", 24)


def test_concat_stream_copy(tmp_path, clips):
    assert media.streams_match(clips)
    out = media.concat_mp4(clips, tmp_path / "joined.mp4")
    info = media.probe(out)
    assert info.frames == 432
    assert info.duration == pytest.approx(18.0)
    assert info.fps == 24.0 and info.moov_before_mdat
    frames = list(media.read_frames(out))
    for index, color in [(0, 0), (143, 0), (144, 1), (287, 1), (288, 2), (431, 2)]:
        assert np.abs(frames[index].reshape(-1, 3).mean(0) - COLORS[color]).max() < 3, index
    # Stream copy: the joined file carries exactly the source packets' bytes, in order.
    def payloads(path):
        with av.open(str(path)) as c:
            return [bytes(p) for p in c.demux(video=0) if p.size]
    assert payloads(out) == [b for clip in clips for b in payloads(clip)]
    assert leftovers(tmp_path) == []


def test_concat_timestamps_continuous(tmp_path, clips):
    out = media.concat_mp4(clips, tmp_path / "joined.mp4")
    with av.open(str(out)) as c:
        times = [f.time for f in c.decode(video=0)]
    assert times == pytest.approx([i / 24 for i in range(432)])


def test_concat_mismatch(tmp_path, clips):
    other = media.encode_mp4([solid(COLORS[0], 160, 90)] * 24, tmp_path / "small.mp4", 24)
    assert not media.streams_match([clips[0], other])
    with pytest.raises(ValueError, match="size 160x90 vs 320x180"):
        media.concat_mp4([clips[0], other], tmp_path / "bad.mp4")
    fast = media.encode_mp4([solid(COLORS[0])] * 30, tmp_path / "fast.mp4", 30)
    with pytest.raises(ValueError, match="fps 30 vs 24"):
        media.concat_mp4([clips[0], fast], tmp_path / "bad.mp4")
    assert not (tmp_path / "bad.mp4").exists()
    assert leftovers(tmp_path) == []


def test_probe_moov_after_mdat(tmp_path):
    path = tmp_path / "slow.mp4"
    with av.open(str(path), "w") as c:  # PyAV's default: no faststart
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(solid(COLORS[1], 64, 48), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    info = media.probe(path)
    assert info.frames == 3 and info.moov_before_mdat is False


def test_poster(tmp_path):
    frame = next(gradient_frames(1))
    out = media.save_poster(frame, tmp_path / "poster.jpg")
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (640, 360)
    small = media.save_poster(solid(COLORS[2], 320, 180), tmp_path / "small.jpg")
    with Image.open(small) as im:
        assert im.size == (320, 180)
    assert leftovers(tmp_path) == []


def test_contact_sheet(tmp_path, clips):
    joined = media.concat_mp4(clips, tmp_path / "joined.mp4")
    out = media.contact_sheet(joined, tmp_path / "sheet.png", columns=3, rows=2, thumb_width=160)
    with Image.open(out) as im:
        assert im.format == "PNG"
        sheet = np.asarray(im.convert("RGB"))
    gap, tw, th = 4, 160, 90
    assert sheet.shape == (2 * th + 3 * gap, 3 * tw + 4 * gap, 3)
    # Six thumbs evenly over 18 s: two per clip, so colours go red, red, green / green, blue, blue.
    expected = [0, 0, 1, 1, 2, 2]
    for k, color in enumerate(expected):
        x, y = gap + (k % 3) * (tw + gap), gap + (k // 3) * (th + gap)
        top = sheet[y : y + th // 2, x : x + tw].reshape(-1, 3).mean(0)  # label sits at the bottom
        assert np.abs(top - COLORS[color]).max() < 4, k
        label = sheet[y + th - 20 : y + th - 4, x + 4 : x + 60]
        # White text with a black stroke: both near-white and near-black pixels on a coloured thumb.
        assert (label.min(axis=2) > 200).any() and (label.max(axis=2) < 50).any()
    assert leftovers(tmp_path) == []


def test_atomic_write_bytes(tmp_path):
    p = media.atomic_write_bytes(tmp_path / "a.json", b'{"x": 1}')
    assert p.read_bytes() == b'{"x": 1}'
    media.atomic_write_bytes(p, b"2")
    assert p.read_text() == "2"
    assert oct(p.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode
    assert leftovers(tmp_path) == []
    with pytest.raises(StorageError):
        media.atomic_write_bytes(tmp_path / "missing" / "a.json", b"x")


def test_a_join_gives_silence_where_a_clip_has_no_sound_and_stays_in_sync(tmp_path):
    rate, fps = 16000, 24
    clips = []
    for k in range(3):
        path = media.encode_mp4((np.full((72, 128, 3), 40 * k, np.uint8) for _ in range(fps)), tmp_path / f"c{k}.mp4", fps)
        if k != 1:  # the middle clip is silent
            t = np.arange(rate - 300) / rate  # a little short: padded with silence to the clip's second
            media.set_audio(path, (0.4 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)[None], rate)
        clips.append(path)
    joined = media.concat_mp4(clips, tmp_path / "joined.mp4")
    info = media.probe(joined)
    assert (info.frames, info.audio.codec, info.audio.sample_rate, info.audio.channels) == (72, "aac", rate, 1)
    assert abs(info.audio.duration - info.duration) <= 1 / fps
    samples, _ = media.read_audio(joined)
    loud = [float(np.abs(samples[0, k * rate + 2000:(k + 1) * rate - 2000]).max()) for k in range(3)]
    assert loud[0] > 0.3 and loud[2] > 0.3 and loud[1] < 0.01
    media.set_audio(joined, None)  # and made silent again
    assert media.probe_audio(joined) is None and media.probe(joined).frames == 72

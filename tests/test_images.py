"""reelforge.request.images against images built in the test."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from reelforge.request import images
from reelforge.errors import ImageError, RequestError


def encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def halves(size, left, right, mode="RGB"):
    """An image whose left half is one colour and right half another."""
    w, h = size
    img = Image.new(mode, size, left)
    img.paste(Image.new(mode, (w - w // 2, h), right), (w // 2, 0))
    return img


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_bilevel_png(width, height):
    """A valid 1-bit PNG built row by row: 20000x20000 is ~50 KB on disk and never held in memory."""
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    idat = b"".join(comp.compress(row * 1000) for _ in range(height // 1000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


RED, BLUE, GREEN, WHITE = (220, 20, 20), (20, 20, 220), (20, 200, 20), (255, 255, 255)


def mean(img, box):
    return np.asarray(img.crop(box)).reshape(-1, 3).mean(0)


# --- decode_base64 / read_image_source ---------------------------------------------------------------


def test_decode_base64_forms():
    data = encode(Image.new("RGB", (4, 4), RED), "PNG")
    b64 = base64.b64encode(data).decode()
    assert images.decode_base64(b64, "f") == data
    assert images.decode_base64(f"data:image/png;base64,{b64}", "f") == data
    wrapped = "\n".join(b64[i : i + 20] for i in range(0, len(b64), 20))
    assert images.decode_base64(f"  {wrapped}\n", "f") == data


@pytest.mark.parametrize(
    "text, message",
    [("abc$", "not valid base64"), ("", "empty"), ("data:image/png,abcd", "base64-encoded"), ("abcde", "not valid base64")],
)
def test_decode_base64_errors(text, message):
    with pytest.raises(ImageError, match=message) as e:
        images.decode_base64(text, "image.source.bytes")
    assert str(e.value).startswith("image.source.bytes: ")
    assert isinstance(e.value, RequestError) and e.value.field == "image.source.bytes"


def test_decode_base64_length_cap(monkeypatch):
    monkeypatch.setattr(images, "_MAX_BASE64_CHARS", 100)
    with pytest.raises(ImageError, match="limit"):
        images.decode_base64("A" * 120, "f")


def test_read_image_source(tmp_path):
    data = encode(Image.new("RGB", (4, 4), RED), "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    assert images.read_image_source(path, "f") == data
    assert images.read_image_source(str(path), "f") == data
    assert images.read_image_source(data, "f") == data
    assert images.read_image_source(base64.b64encode(data).decode(), "f") == data
    assert images.read_image_source("data:image/png;base64," + base64.b64encode(data).decode(), "f") == data
    for missing in (tmp_path / "nope.png", str(tmp_path / "nope.png"), "cat.jpg", "/tmp/abcd"):
        with pytest.raises(ImageError, match="does not exist"):
            images.read_image_source(missing, "f")
    with pytest.raises(ImageError, match="folder"):
        images.read_image_source(tmp_path, "f")


# --- open_image: rejections -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "BMP"])
def test_other_formats_rejected(fmt):
    with pytest.raises(ImageError, match=f"{fmt} images are not supported.*png or jpeg"):
        images.open_image(encode(Image.new("RGB", (8, 8), RED), fmt), "f")


def test_non_image_rejected():
    with pytest.raises(ImageError, match="not a recognised image.*png or jpeg"):
        images.open_image(b"hello, this is not a picture" * 10, "f")


def test_truncated_jpeg_rejected():
    data = encode(halves((400, 300), RED, BLUE), "JPEG", quality=90)
    images.open_image(data, "f")  # the full file is fine
    with pytest.raises(ImageError, match="truncated"):
        images.open_image(data[: len(data) // 2], "f")


def test_truncated_png_rejected():
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "PNG")
    with pytest.raises(ImageError, match="truncated"):
        images.open_image(data[: len(data) // 2], "f")


def test_pixel_cap_checked_before_decoding():
    data = huge_bilevel_png(20000, 20000)
    assert len(data) < 200_000
    with pytest.raises(ImageError, match=r"20000x20000 \(400.0 megapixels\); the limit is 40 megapixels"):
        images.open_image(data, "f")


def test_byte_cap(monkeypatch):
    monkeypatch.setattr(images, "MAX_BYTES", 1000)
    with pytest.raises(ImageError, match="limit"):
        images.open_image(b"\x89PNG" + b"\x00" * 2000, "f")
    with pytest.raises(ImageError, match="limit"):
        images.read_image_source(b"\x00" * 2000, "f")


def test_declared_format():
    png = encode(Image.new("RGB", (8, 8), RED), "PNG")
    jpeg = encode(Image.new("RGB", (8, 8), RED), "JPEG")
    assert images.open_image(png, "f", "png").info["reelforge_format"] == "PNG"
    assert images.open_image(jpeg, "f", "jpeg").info["reelforge_format"] == "JPEG"
    assert images.open_image(jpeg, "f", "JPG").size == (8, 8)
    with pytest.raises(ImageError, match="declared format is jpeg but the data is a png image"):
        images.open_image(png, "f", "jpeg")
    with pytest.raises(ImageError, match="png or jpeg"):
        images.open_image(png, "f", "gif")


# --- open_image: normalisation ----------------------------------------------------------------------


def test_exif_rotation():
    # Stored 720x1280, top half red; Orientation=6 means "rotate 90 degrees clockwise to display".
    img = Image.new("RGB", (720, 1280), BLUE)
    img.paste(Image.new("RGB", (720, 640), RED), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = images.open_image(encode(img, "JPEG", exif=exif, quality=90), "f")
    assert out.size == (1280, 720) and out.mode == "RGB"
    assert np.abs(mean(out, (700, 0, 1280, 720)) - RED).max() < 8  # the stored top is now on the right
    assert np.abs(mean(out, (0, 0, 580, 720)) - BLUE).max() < 8


def test_alpha_flattened_onto_black():
    rgba = halves((40, 20), (255, 255, 255, 0), (*GREEN, 255), mode="RGBA")
    data = encode(rgba, "PNG")
    assert images.has_transparency(data)
    out = images.open_image(data, "f")
    assert out.mode == "RGB" and out.info["reelforge_had_alpha"] is True
    assert mean(out, (0, 0, 20, 20)).tolist() == [0, 0, 0]
    assert mean(out, (20, 0, 40, 20)).tolist() == list(GREEN)


def test_opaque_alpha_channel_is_fine():
    data = encode(Image.new("RGBA", (8, 8), (*RED, 255)), "PNG")
    assert not images.has_transparency(data)
    assert images.open_image(data, "f").info["reelforge_had_alpha"] is False
    assert not images.has_transparency(encode(Image.new("RGB", (8, 8), RED), "JPEG"))


def test_palette_transparency_detected():
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 4, 8))
    data = encode(pal, "PNG", transparency=1)
    assert images.has_transparency(data)
    out = images.open_image(data, "f")
    assert out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((7, 0)) == (255, 0, 0)


def test_16bit_grey_rescaled_not_saturated():
    arr = np.full((8, 8), 30000, np.uint16)
    data = encode(Image.fromarray(arr), "PNG")
    out = images.open_image(data, "f")
    assert out.getpixel((0, 0)) == (117, 117, 117)  # 30000 >> 8; a plain convert("RGB") gives 255


def test_cmyk_and_grey_jpeg_become_rgb():
    for img in (Image.new("CMYK", (8, 8), (0, 255, 255, 0)), Image.new("L", (8, 8), 128)):
        out = images.open_image(encode(img, "JPEG"), "f")
        assert out.mode == "RGB" and out.size == (8, 8)


# --- fit_image and friends --------------------------------------------------------------------------


def test_crop_removes_edges():
    img = Image.new("RGB", (1920, 720), WHITE)
    img.paste(Image.new("RGB", (320, 720), RED), (0, 0))
    img.paste(Image.new("RGB", (320, 720), BLUE), (1600, 0))
    out = images.fit_image(img, 1280, 720, "crop")
    assert out.size == (1280, 720)
    arr = np.asarray(out)
    assert arr[:, 2:-2].min() >= 250  # only the white centre is left


def test_pad_adds_black_bars():
    out = images.fit_image(Image.new("RGB", (1000, 1000), WHITE), 1280, 720, "pad")
    assert out.size == (1280, 720)
    arr = np.asarray(out)
    assert arr[:, :278].max() == 0 and arr[:, 1002:].max() == 0  # 280 px bars either side
    assert arr[:, 282:998].min() >= 250
    tall = images.fit_image(Image.new("RGB", (1280, 360), WHITE), 1280, 720, "pad")
    arr = np.asarray(tall)
    assert arr[:178].max() == 0 and arr[542:].max() == 0 and arr[182:538].min() >= 250


def test_fit_exact_size_and_bad_mode():
    img = Image.new("RGB", (1280, 720), RED)
    assert np.array_equal(np.asarray(images.fit_image(img, 1280, 720, "crop")), np.asarray(img))
    with pytest.raises(ValueError, match="crop, pad"):
        images.fit_image(img, 1280, 720, "stretch")


def test_prepare_image_uses_jpeg_draft():
    big = encode(halves((2600, 1500), RED, BLUE), "JPEG", quality=85)
    drafted = images.open_image(big, "f", draft_size=(1280, 720))
    assert drafted.size == (1300, 750)  # decoded at 1/2 scale, still covering the target
    out = images.prepare_image(big, "f", 1280, 720, "crop")
    assert out.size == (1280, 720) and out.info["reelforge_format"] == "JPEG"
    assert np.abs(mean(out, (0, 0, 500, 720)) - RED).max() < 8


def test_png_base64_roundtrip():
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (72, 128, 3), dtype=np.uint8))
    text = images.to_base64(images.encode_png(img))
    back = images.open_image(images.decode_base64(text, "f"), "f", "png")
    assert np.array_equal(np.asarray(back), np.asarray(img))

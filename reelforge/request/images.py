"""Conditioning images: decode, validate, normalise to opaque RGB, and fit to the video frame.

The checks run in a fixed order (see reference/media-stack.md §4): size of the input, format from the
header, declared format, pixel count from the header, then the full decode. Nothing is decoded before
the header says the image is small enough: at most ``MAX_PIXELS``, and, when the video it is for is
known, at most :func:`pixel_limit` of that video's frame (16 times its pixels: 4 times its width and
height, which is more than any fit to the frame can use; never below a 4K frame). A few kilobytes of
PNG can declare tens of megapixels, so decodes are also bounded in number: at most
``DECODE_SLOTS`` run at once in a process, the others wait.

Transparent pixels are flattened onto **black**, the same colour as the letterbox bars of ``fit_image``
and of video padding in general, so a cut-out subject looks the same whichever way it is framed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import os
import re
import struct
import threading
import warnings
from typing import Literal, cast, get_args

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin, UnidentifiedImageError

from reelforge.errors import ImageError

__all__ = [
    "ALLOWED_FORMATS",
    "ALPHA_BACKGROUND",
    "MAX_BYTES",
    "MAX_PIXELS",
    "decode_base64",
    "encode_png",
    "fit_image",
    "has_transparency",
    "inspect_image",
    "open_image",
    "pixel_limit",
    "prepare_image",
    "read_image_source",
    "to_base64",
]

MAX_PIXELS = 40_000_000
FRAME_FACTOR = 16  # an image may have this many times the pixels of the frame it is fitted to
MIN_PIXEL_LIMIT = 3840 * 2160  # ... but a 4K image is always accepted
DECODE_SLOTS = 2
_decodes = threading.BoundedSemaphore(DECODE_SLOTS)
MAX_BYTES = 50 * 1024 * 1024
ALLOWED_FORMATS = ("PNG", "JPEG")
ALPHA_BACKGROUND = (0, 0, 0)
FitMode = Literal["crop", "pad"]
FIT_MODES: tuple[str, ...] = get_args(FitMode)

_ALLOWED_TEXT = "png or jpeg"
# 4 base64 characters carry 3 bytes; anything longer cannot decode to an allowed image.
_MAX_BASE64_CHARS = (MAX_BYTES + 2) // 3 * 4
_DATA_URI = re.compile(r"^data:([^,;]*)((?:;[^,;]*)*),", re.IGNORECASE)
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
_FORMAT_ALIASES = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG"}


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def decode_base64(text: str, field: str) -> bytes:
    """Decode standard base64, optionally inside a ``data:image/...;base64,`` URI."""
    if not isinstance(text, str):
        raise ImageError(field, f"expected a base64 string, got {type(text).__name__}")
    # Cap before any copying so a huge body costs no more than one length check.
    if len(text) > 2 * _MAX_BASE64_CHARS:
        raise ImageError(field, f"base64 text is too long ({len(text)} characters); images are limited to {_mb(MAX_BYTES)}")
    s = text.strip()
    m = _DATA_URI.match(s)
    if m:
        if "base64" not in m.group(2).lower().split(";"):
            raise ImageError(field, "data URI must be base64-encoded (data:image/png;base64,...)")
        s = s[m.end():]
    s = "".join(s.split())
    if not s:
        raise ImageError(field, "base64 image data is empty")
    if len(s) > _MAX_BASE64_CHARS:
        raise ImageError(field, f"base64 text decodes to more than {_mb(MAX_BYTES)}, the image size limit")
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(field, f"not valid base64 (standard alphabet A-Z a-z 0-9 + /, '=' padding): {e}") from None


def _read_file(path: str | os.PathLike, field: str) -> bytes:
    p = os.path.expanduser(os.fspath(path))
    if not os.path.exists(p):
        raise ImageError(field, f"image file {p!r} does not exist")
    if os.path.isdir(p):
        raise ImageError(field, f"{p!r} is a folder, not an image file")
    size = os.path.getsize(p)
    if size > MAX_BYTES:
        raise ImageError(field, f"image file {p!r} is {_mb(size)}; the limit is {_mb(MAX_BYTES)}")
    try:
        with open(p, "rb") as f:
            return f.read()
    except OSError as e:
        raise ImageError(field, f"cannot read image file {p!r}: {e.strerror or e}") from None


def _looks_like_path(s: str) -> bool:
    return len(s) < 1024 and (
        os.sep in s or "/" in s or s.startswith(("~", ".")) or s.lower().endswith((".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"))
    )


def read_image_source(source: str | os.PathLike | bytes, field: str) -> bytes:
    """Image bytes from a file path, raw bytes, or a base64 / data-URI string (when it is not an existing path)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > MAX_BYTES:
            raise ImageError(field, f"image is {_mb(len(data))}; the limit is {_mb(MAX_BYTES)}")
        return data
    if isinstance(source, os.PathLike):
        return _read_file(source, field)
    if not isinstance(source, str):
        raise ImageError(field, f"expected a file path, bytes or base64 text, got {type(source).__name__}")
    s = source.strip()
    if _DATA_URI.match(s):
        return decode_base64(s, field)
    if len(s) < 4096 and "\0" not in s and os.path.exists(os.path.expanduser(s)):
        return _read_file(s, field)
    try:
        data = decode_base64(s, field)
    except ImageError:
        if _looks_like_path(s):
            raise ImageError(field, f"image file {s!r} does not exist") from None
        raise
    # Short strings such as "/tmp/abcd" happen to be valid base64; a missing path explains them better.
    if _looks_like_path(s) and not data.startswith(_SIGNATURES):
        raise ImageError(field, f"image file {s!r} does not exist (and it is not base64 image data)")
    return data


def _normalise_declared(declared_format: str | None, field: str) -> str | None:
    if declared_format is None:
        return None
    fmt = _FORMAT_ALIASES.get(str(declared_format).strip().lower())
    if fmt is None:
        raise ImageError(field, f"format {declared_format!r} is not supported; allowed formats: {_ALLOWED_TEXT}")
    return fmt


def pixel_limit(width: int, height: int) -> int:
    """The most pixels an image for a ``width`` x ``height`` video may declare."""
    return min(MAX_PIXELS, max(FRAME_FACTOR * width * height, MIN_PIXEL_LIMIT))


def _open_checked(data: bytes, field: str, declared_format: str | None, frame: tuple[int, int] | None = None) -> Image.Image:
    """Open lazily and check size, format and pixel count from the header alone."""
    if len(data) > MAX_BYTES:
        raise ImageError(field, f"image is {_mb(len(data))}; the limit is {_mb(MAX_BYTES)}")
    declared = _normalise_declared(declared_format, field)
    try:
        im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's own bomb check fires inside open(); report the size the same way as our cap does.
        size = _header_size(data)
        if size is None:
            raise ImageError(field, f"image is too large to decode safely ({e})") from None
        raise _too_many_pixels(field, *size) from None
    except UnidentifiedImageError:
        raise ImageError(field, f"data is not a recognised image; allowed formats: {_ALLOWED_TEXT}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(field, f"image header cannot be read ({e}); allowed formats: {_ALLOWED_TEXT}") from None
    if im.format not in ALLOWED_FORMATS:
        raise ImageError(field, f"{im.format} images are not supported; allowed formats: {_ALLOWED_TEXT}")
    if declared is not None and declared != im.format:
        raise ImageError(field, f"declared format is {declared.lower()} but the data is a {im.format.lower()} image")
    if im.size[0] * im.size[1] > MAX_PIXELS:
        raise _too_many_pixels(field, *im.size)
    if frame is not None and im.size[0] * im.size[1] > pixel_limit(*frame):
        raise _too_many_pixels(field, *im.size, frame)
    return im


def _too_many_pixels(field: str, w: int, h: int, frame: tuple[int, int] | None = None) -> ImageError:
    shown = f"image is {w}x{h} ({w * h / 1e6:.1f} megapixels)"
    if frame is None:
        return ImageError(field, f"{shown}; the limit is {MAX_PIXELS / 1e6:g} megapixels")
    limit = pixel_limit(*frame)
    return ImageError(
        field,
        f"{shown}; for a {frame[0]}x{frame[1]} video the limit is {limit / 1e6:.1f} megapixels "
        f"({FRAME_FACTOR} times the frame, at least a 4K image): scale it down to about {frame[0]}x{frame[1]} first",
    )


def _header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG/JPEG header, bypassing the bomb check that Image.open applies."""
    for plugin in (PngImagePlugin.PngImageFile, JpegImagePlugin.JpegImageFile):
        try:
            return plugin(io.BytesIO(data)).size
        except Exception:  # not this format; try the next
            continue
    return None


def _decode_error(field: str, e: Exception) -> ImageError:
    return ImageError(field, f"image data is truncated or corrupt and cannot be decoded ({e})")


@contextlib.contextmanager
def _decoding(field: str):
    """Decoding errors of every kind as one ImageError naming ``field``."""
    # catch_warnings is process-wide before Python 3.14; the pixel cap makes the warning a backstop only.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(field, f"image is too large to decode safely ({e})") from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
            raise _decode_error(field, e) from None


def inspect_image(data: bytes, field: str, declared_format: str | None = None) -> str:
    """The format ("PNG"/"JPEG") of image bytes, checked without decoding them at full size.

    PNG: the header and every chunk's checksum. JPEG: a decode at 1/8 scale (1/64 of the
    pixels), which reads the whole file and so finds a truncated one.
    """
    with _decoding(field):
        im = _open_checked(data, field, declared_format)
        fmt = im.format
        im.verify()
        if fmt == "JPEG":
            im = Image.open(io.BytesIO(data))
            im.draft(im.mode, (max(im.size[0] // 8, 1), max(im.size[1] // 8, 1)))
            with _decodes:
                im.load()
    return cast(str, fmt)  # _open_checked lets PNG and JPEG through only


def _load(data: bytes, field: str, declared_format: str | None, draft_size: tuple[int, int] | None, frame: tuple[int, int] | None = None) -> Image.Image:
    with _decoding(field):
        im = _open_checked(data, field, declared_format, frame)
        # verify() checks PNG chunk CRCs but leaves the object unusable, hence the reopen.
        im.verify()
        im = Image.open(io.BytesIO(data))
        if draft_size and im.format == "JPEG":
            tw, th = draft_size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                tw, th = th, tw  # draft works on stored pixels, before the EXIF rotation
            # JPEG decodes at 1/2, 1/4 or 1/8 scale for free, never below the requested size.
            im.draft("RGB", (tw, th))
        im.load()
    return im


def _alpha_mask(im: Image.Image) -> Image.Image | None:
    """The alpha channel as an L image, or None when the image cannot be transparent."""
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        return im.convert("RGBA").getchannel("A")
    return None


def _to_rgb(im: Image.Image) -> tuple[Image.Image, bool]:
    """Opaque RGB plus whether any pixel was not fully opaque."""
    mask = _alpha_mask(im)
    if mask is not None:
        had_alpha = cast(tuple[int, int], mask.getextrema())[0] < 255
        rgba = im.convert("RGBA")
        out = Image.new("RGB", im.size, ALPHA_BACKGROUND)
        out.paste(rgba.convert("RGB"), mask=mask)
        return out, had_alpha
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # convert("RGB") clips 16-bit values at 255; scale the full range down instead.
        arr = np.asarray(im)
        if im.mode == "I" and arr.max(initial=0) > 65535:
            arr = arr >> 16
        grey = (np.clip(arr, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB"), False
    if im.mode != "RGB":
        return im.convert("RGB"), False
    return im, False


def open_image(
    data: bytes,
    field: str,
    declared_format: str | None = None,
    *,
    draft_size: tuple[int, int] | None = None,
    frame: tuple[int, int] | None = None,
) -> Image.Image:
    """Validate and decode PNG/JPEG bytes into a loaded, upright, opaque RGB image.

    ``declared_format`` ("png"/"jpeg") must match the data. ``draft_size`` lets a JPEG decode at a
    reduced scale that is still at least that size. ``frame`` (width, height of the video the
    image is for) refuses, from the header, an image over :func:`pixel_limit`. The result's ``info`` carries
    ``reelforge_format`` ("PNG"/"JPEG") and ``reelforge_had_alpha`` (True when some pixel was not fully
    opaque before flattening onto black), so callers can enforce Nova Reel's all-opaque rule.
    """
    with _decodes:
        im = _load(data, field, declared_format, draft_size, frame)
        fmt = im.format
        try:
            im = ImageOps.exif_transpose(im)
            rgb, had_alpha = _to_rgb(im)
        except (OSError, SyntaxError, ValueError) as e:
            raise _decode_error(field, e) from None
        if rgb is im:
            rgb = im.copy()
    rgb.info["reelforge_format"] = fmt
    rgb.info["reelforge_had_alpha"] = had_alpha
    return rgb


def has_transparency(data: bytes, field: str = "image") -> bool:
    """True when the image has at least one pixel that is not fully opaque (Nova Reel rejects those)."""
    with _decodes:
        im = _load(data, field, None, None)
        mask = _alpha_mask(im)
        return mask is not None and cast(tuple[int, int], mask.getextrema())[0] < 255


def fit_image(img: Image.Image, width: int, height: int, mode: str) -> Image.Image:
    """Resize to exactly width x height: "crop" fills and cuts the edges, "pad" keeps all and adds black bars."""
    if mode not in FIT_MODES:
        raise ValueError(f"fit mode {mode!r} is not supported; use one of: {', '.join(FIT_MODES)}")
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"target size {width}x{height} must be positive")
    size = (int(width), int(height))
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size == size:
        out = img.copy()
    elif mode == "crop":
        out = ImageOps.fit(img, size, Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    else:
        out = ImageOps.pad(img, size, Image.Resampling.LANCZOS, color=ALPHA_BACKGROUND, centering=(0.5, 0.5))
    for key in ("reelforge_format", "reelforge_had_alpha"):
        if key in img.info:
            out.info[key] = img.info[key]
    return out


def prepare_image(
    source: str | os.PathLike | bytes,
    field: str,
    width: int,
    height: int,
    mode: str = "crop",
    declared_format: str | None = None,
) -> Image.Image:
    """read_image_source + open_image (with JPEG draft decoding) + fit_image, in one call."""
    if mode not in FIT_MODES:
        raise ValueError(f"fit mode {mode!r} is not supported; use one of: {', '.join(FIT_MODES)}")
    data = read_image_source(source, field)
    img = open_image(data, field, declared_format, draft_size=(width, height), frame=(width, height))
    return fit_image(img, width, height, mode)


def encode_png(img: Image.Image) -> bytes:
    """Lossless PNG bytes of ``img``."""
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def to_base64(data: bytes) -> str:
    """Standard base64 text of ``data``, as Nova Reel's ``bytes`` field expects."""
    return base64.b64encode(data).decode("ascii")

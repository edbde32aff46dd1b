"""Still pictures of a video: JPEG posters and PNG contact sheets."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from reelforge.media.files import PathLike, atomic_write_bytes
from reelforge.media.video import decoded_frames

__all__ = ["contact_sheet", "save_poster"]


def save_poster(frame: np.ndarray, path: PathLike, max_width: int = 640) -> Path:
    """Save an RGB frame as a JPEG no wider than ``max_width``."""
    img = Image.fromarray(np.asarray(frame, dtype=np.uint8)).convert("RGB")
    if img.width > max_width:
        img = img.resize((max_width, max(1, round(img.height * max_width / img.width))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85, optimize=True)
    return atomic_write_bytes(path, buf.getvalue())


def _timestamp(seconds: float) -> str:
    minutes, sec = divmod(seconds, 60)
    return f"{int(minutes)}:{sec:05.2f}"


def contact_sheet(
    path_mp4: PathLike, out_png: PathLike, columns: int = 4, rows: int = 3, thumb_width: int = 320
) -> Path:
    """Write a PNG grid of frames sampled evenly over the video, each labelled with its timestamp."""
    if columns < 1 or rows < 1 or thumb_width < 16:
        raise ValueError("contact_sheet needs columns >= 1, rows >= 1 and thumb_width >= 16")
    cells = columns * rows
    with av.open(str(path_mp4)) as c:
        s = c.streams.video[0]
        total = s.frames or sum(1 for _ in c.decode(s))
    # Centre of each of `cells` equal time slices, so the first and last moments are both represented.
    wanted = sorted({min(total - 1, int((k + 0.5) * total / cells)) for k in range(cells)}) or [0]
    thumbs: list[tuple[Image.Image, float]] = []
    for i, frame in enumerate(decoded_frames(path_mp4)):
        if i > wanted[-1]:
            break
        if i in wanted:
            img = frame.to_image()
            th = max(1, round(img.height * thumb_width / img.width))
            thumbs.append((img.resize((thumb_width, th), Image.Resampling.LANCZOS), float(frame.time or 0.0)))
    if not thumbs:
        raise ValueError(f"{path_mp4} has no decodable frames")
    th = thumbs[0][0].height
    gap = 4
    sheet = Image.new("RGB", (columns * thumb_width + (columns + 1) * gap, rows * th + (rows + 1) * gap), (16, 16, 16))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(10, thumb_width // 16))
    for k, (img, t) in enumerate(thumbs):
        x = gap + (k % columns) * (thumb_width + gap)
        y = gap + (k // columns) * (th + gap)
        sheet.paste(img, (x, y))
        draw.text((x + 6, y + th - 6), _timestamp(t), fill="white", font=font, anchor="ls",
                  stroke_width=2, stroke_fill="black")
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    return atomic_write_bytes(out_png, buf.getvalue())

"""The names in a job's output folder (Bedrock's layout, and reelforge's files beside it); the documents written there are jobs/layout.py's.

A completed job's folder holds ``output.mp4`` (published last, so its presence means the video is
whole), ``shot_NNNN.mp4`` for each shot of a multi-shot video, then ``poster.jpg``,
``contact_sheet.png``, ``manifest.json`` and ``video-generation-status.json`` (as Bedrock writes it).
``.checkpoints/shot_NNNN/`` holds what a shot's attempts keep for the next one; it is never an output.
"""

from __future__ import annotations

import re

VIDEO = "output.mp4"
POSTER = "poster.jpg"
CONTACT_SHEET = "contact_sheet.png"
MANIFEST = "manifest.json"
STATUS = "video-generation-status.json"
CHECKPOINTS = ".checkpoints"  # <job>/.checkpoints/shot_NNNN/: what a shot's attempts keep for the next one (never an output)
STILLS = [POSTER, CONTACT_SHEET]  # made from the finished video, beside it
OUTPUTS = [VIDEO, *STILLS, MANIFEST, STATUS]  # every file of a completed job but its shots, in the order they are listed
SHOT_FILE = re.compile(r"shot_(\d{4})\.mp4")  # a shot's file; group 1 is its number from 1


def shot_file_name(index: int) -> str:
    """The file a video's shot is written to: shot_0001.mp4, ... (Bedrock's layout)."""
    return f"shot_{index + 1:04d}.mp4"


def shot_file_names(shots: int) -> list[str]:
    """The shot files of a video of ``shots`` shots: none for a single shot (output.mp4 is the video)."""
    return [shot_file_name(i) for i in range(shots)] if shots > 1 else []


def checkpoint_name(index: int) -> str:
    """Shot ``index``'s checkpoint folder under .checkpoints/: shot_0001, ..."""
    return shot_file_name(index).removesuffix(".mp4")


def completed_files(shots: int) -> list[str]:
    """Every file the worker writes for a completed job of ``shots`` shots, by name."""
    return [VIDEO, *shot_file_names(shots), *STILLS, MANIFEST, STATUS]

"""The engine interface: what every engine, built-in or third-party, implements.

An engine turns one shot plan into a ShotOutput: frames (and an audio track where the model
makes one), or a finished video file (an engine that forwards to a remote service). The worker
owns everything around it (job state, encoding, storage, joining shots), so an engine stays a
small class with one method: ``render`` or, for engines that only make frames, ``render_shot``.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from reelforge.errors import EngineError


@dataclass(frozen=True)
class ShotPlan:
    """One shot to render: everything an engine needs, already validated."""

    index: int  # 0-based position in the video
    count: int  # shots in the whole video
    text: str
    seed: int
    duration_s: int
    fps: int
    width: int
    height: int
    image: Any = None  # PIL.Image.Image in RGB at exactly width x height, or None
    model_id: str = ""

    @property
    def frame_count(self) -> int:
        return self.duration_s * self.fps


class Progress(Protocol):
    """What an engine reports through; calling it raises JobCanceled once the job is canceled."""

    metadata: dict[str, Any]

    def __call__(self, done: int, total: int, stage: str = "") -> None: ...


@dataclass
class NullProgress:
    """A progress sink for calling an engine outside a job (tests, benchmarks)."""

    metadata: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[int, int, str]] = field(default_factory=list)

    def __call__(self, done: int, total: int, stage: str = "") -> None:
        self.calls.append((done, total, stage))


@dataclass(frozen=True)
class Audio:
    """A shot's sound: float32 samples in [-1, 1], shaped (channels, samples)."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return self.samples.shape[-1] / self.sample_rate


@dataclass
class ShotOutput:
    """What an engine hands back for one shot: exactly one of ``frames`` or ``video_file``.

    ``frames`` yields ``shot.frame_count`` HxWx3 uint8 RGB frames; ``audio``, when set, is
    muxed as the shot's AAC track. ``video_file`` is a finished MP4 of the shot that the worker
    checks and publishes as it is (engines that forward to a service which encodes).
    """

    frames: Iterable[np.ndarray] | None = None
    audio: Audio | None = None
    video_file: Path | None = None


@dataclass
class RenderContext:
    """What the worker gives an engine for one shot besides the plan."""

    progress: Progress
    workdir: Path | None = None  # a private folder for the attempt's files, removed after the shot
    # A folder kept for the next attempt of this shot (after a crash, a kill, a retry), on this
    # machine or another, and removed once the shot completes: what an engine writes here (latents,
    # a remote job's id) lets it resume. It lives in the job's output storage (a hidden
    # .checkpoints/shot_NNNN/ beside the outputs, never listed as one): call ``keep(path)`` once a
    # file written here is complete, which uploads it where the storage is remote (S3).
    checkpoint: Path | None = None
    # For engines that forward whole jobs (engines/remote.py): the job, where it goes (forward.Forward),
    # what earlier attempts saved in the job log (metadata.checkpoint, seen by a worker on any machine,
    # unlike the folder above) and how to save more before going on.
    job: Any = None
    forward: Any = None
    saved: dict[str, Any] = field(default_factory=dict)
    save: Callable[[dict[str, Any]], None] = lambda data: None
    keep: Callable[[Path], None] = lambda path: None


class EngineOptions(BaseModel):
    """An engine's options (its ``Options`` subclass): fixed with the job when it is submitted; unknown names are refused."""

    model_config = ConfigDict(extra="forbid")


class Engine(ABC):
    """Base class of engines. Subclasses set ``engine_id`` and implement ``render`` or ``render_shot``."""

    engine_id: ClassVar[str]
    summary: ClassVar[str] = ""
    generative: ClassVar[bool] = True  # False for renderers that only illustrate the prompt
    splits_shots: ClassVar[bool] = True  # shots of one video may render on different workers
    Options: ClassVar[type[EngineOptions]] = EngineOptions

    def __init__(self, options: dict[str, Any] | EngineOptions | None = None):
        self.options = options if isinstance(options, EngineOptions) else self.parse_options(options)

    @classmethod
    def parse_options(cls, options: dict[str, Any] | None) -> EngineOptions:
        """``options`` as this engine's ``Options``; EngineError in one line naming the option and the allowed ones."""
        try:
            return cls.Options.model_validate(options or {})
        except ValidationError as exc:
            allowed = ", ".join(cls.Options.model_fields) or "none"
            problems = []
            for e in exc.errors():
                name = ".".join(map(str, e["loc"]))
                if e["type"] == "extra_forbidden":
                    problems.append(f"unknown option {name!r}")
                else:
                    said = str(e["msg"]).removeprefix("Value error, ")
                    problems.append(f"option {name!r}: {said}" if name else said)
            raise EngineError(f"engine {cls.engine_id!r}: bad options: {'; '.join(problems)} (allowed: {allowed})") from None

    @classmethod
    def check_available(cls, options: dict[str, Any]) -> None:
        """Raise EngineError when this engine cannot run here (a missing extra, missing weights).

        Called before a job is recorded, so a request that cannot run is refused, not logged as
        FAILED. Must be cheap: look for packages and files, load nothing.
        """

    @classmethod
    def check_request(cls, options: dict[str, Any], request: Any, shots: list) -> None:
        """Raise RequestError (naming the field) for a request this engine's model cannot render as asked.

        Called before a job is recorded, after ``check_available``, with the checked request
        (reelforge.request.model.VideoRequest) and its shots (ShotSpec: text, seed, duration_s, image).
        Like ``check_available`` it must be cheap: read configs, load no weights.
        """

    @classmethod
    def models(cls) -> list:
        """Model specs (reelforge.request.limits.ModelSpec) this engine adds to the model table."""
        return []

    def render(self, shot: ShotPlan, ctx: RenderContext) -> ShotOutput:
        """Render one shot. The default wraps ``render_shot`` for engines that only make frames."""
        return ShotOutput(frames=self.render_shot(shot, ctx.progress))

    def render_shot(self, shot: ShotPlan, progress: Progress) -> Iterable[np.ndarray]:
        """Yield ``shot.frame_count`` frames, each HxWx3 uint8 RGB at shot.height x shot.width."""
        raise NotImplementedError(f"engine {self.engine_id!r} implements neither render nor render_shot")

    def close(self) -> None:
        """Release what the engine holds (weights, GPU memory)."""

"""The kinds of unit a worker runs (a whole video, one shot, the join of a split job's shots, a forwarded job) and how a shot is rendered."""

from __future__ import annotations

import inspect
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Generator, cast

from reelforge.config import Timings
from reelforge.engines import Engine, RenderContext, ShotPlan, get_engine_class
from reelforge.engines.forward import Forward
from reelforge.errors import ReelforgeError
from reelforge.jobs import layout
from reelforge.jobs.ending import completed
from reelforge.jobs.engine_cache import EngineCache
from reelforge.jobs.folder import Folder
from reelforge.jobs.lane import Await
from reelforge.jobs.lease import JobProgress, LeaseKeeper, LeaseLost
from reelforge.jobs.record import JobRecord, JobStatus, JobStore, new_job_id
from reelforge import media
from reelforge.engines.catalog import forwarded_spec
from reelforge.request.model import VideoRequest
from reelforge.request.check import check

log = logging.getLogger("reelforge.worker")


def render_forwarded(store: JobStore, job: JobRecord, worker_id: str, engines: EngineCache, timings: Timings, progress: "JobProgress", forwards,
               keeper=None) -> Generator[Any, Any, JobStatus]:
    """A forwarded job (engines/remote.py): one unit, whatever its shots; the upstream makes the whole video.

    Where it goes is what was recorded at submit (the job's engine and its options, the route); this
    worker's own entry for the same place adds only its credentials and limits. The engine saves the
    upstream id in the job log through ``ctx.save`` before following it (a checkpoint folder would not
    be seen by a worker on another machine); the video it hands back goes through the finished-file
    check, loosened only where the engine says its upstream's wire cannot carry the plan.
    """
    forward = Forward.from_route(job.model_id, job.engine_options)
    own = forwards.get(job.model_id) if forwards is not None else None
    if own is not None and not own.same_place(forward):
        log.warning("job %s goes to %s as recorded at submit; this worker's --forward for %s (%s) is not used for it", job.id, forward.url, job.model_id, own.url)
        own = None
    forward = forward.overlay(own)
    request = VideoRequest.from_model_input(job.model_input)
    _, shots = check(request, forwarded_spec(job.model_id, forward.kind))
    progress.metadata.update({k: job.metadata[k] for k in ("lifecycle", "notes", "checkpoint") if k in job.metadata})
    unit = Unit(store, job, worker_id, engines, forward.kind, job.engine_options, request, shots)
    unit.progress = progress
    progress.deferred = keeper is not None
    checkpoint = dict(job.metadata.get("checkpoint", {}))

    def save(data: dict[str, Any]) -> None:
        if not cast(Any, store).save_checkpoint(job.id, worker_id, data, fence=job.fence):
            raise LeaseLost(job.id)
        checkpoint.update(data)
        progress.metadata["checkpoint"] = dict(checkpoint)

    with (keeper or LeaseKeeper)(progress), Folder(job.storage_uri) as out, tempfile.TemporaryDirectory(prefix="reelforge-forward-") as work:
        names = layout.shot_file_names(len(shots))
        out.clear_leftovers([*names, layout.VIDEO, layout.POSTER, layout.CONTACT_SHEET])
        engine = unit.load_engine()
        out.put_json(layout.MANIFEST, layout.manifest(job, forward.kind, request))
        plan = ShotPlan(0, len(shots), " ".join(request.shot_texts()), request.effective_seed, sum(s.duration_s for s in shots), request.fps,
                        request.width, request.height, None, job.model_id)
        t0 = time.perf_counter()
        result: Any = engine.render(plan, RenderContext(progress, Path(work), job=job, forward=forward, saved=checkpoint, save=save))
        if inspect.isawaitable(result):
            result = yield Await(result, progress)
        if result.video_file is None:
            raise ReelforgeError(f"engine {forward.kind} returned no video file")
        progress.beat("checking the upstream's video", force=True)
        differs: dict[str, Any] = {}
        poster = take_file(engine, plan, Path(result.video_file), out.path / layout.VIDEO, loosen=cast(Any, engine).upstream_differs, differs=differs)
        names = [n for n in names if (Path(work) / n).is_file()]
        for name in names:  # a multi-shot video's shots, as the upstream wrote them (Bedrock's layout)
            media.probe(Path(work) / name)
            media.publish_copy(Path(work) / name, out.path / name)
        metadata = {**progress.metadata, "engine": forward.kind, "render_encode_s": time.perf_counter() - t0}
        if differs:
            metadata["upstreamDiffers"] = differs  # what the upstream's wire could not be asked for, as it came
        unit.finish_video(out, names, poster, metadata)
    return completed(store, job, worker_id, metadata, timings)


class Unit:
    """One claimed unit of work and what it needs; each method is one kind of unit."""

    def __init__(self, store, job, worker_id, engines, engine_id, options, request, shots):
        self.store, self.job, self.worker_id, self.engines = store, job, worker_id, engines
        self.engine_id, self.options, self.request, self.shots = engine_id, options, request, shots
        self.progress: JobProgress
        self.sound = True  # the job keeps the sound its engine makes (False: --no-audio)

    def load_engine(self) -> Engine:
        """The unit's engine, loaded (or reused); from here a crash counts as one of the job's attempts."""
        self.progress.beat("loading engine", force=True)
        engine = self.engines.get(self.engine_id, self.options)
        self.progress.begin()
        return engine

    def render_one_shot(self, out: "Folder") -> Generator[Any, Any, JobStatus]:
        """A shot unit of a multi-shot job: render shot_NNNN.mp4 into the job's folder."""
        index = self.job.shot_index
        name = layout.shot_file_name(index)
        _, seconds = yield from render(self.load_engine(), plan_shot(self.request, self.shots, index, self.job.model_id), out.path / name, self.progress, self.sound, out.checkpoint(index))
        out.publish([name])
        metadata = {**self.progress.metadata, "render_encode_s": seconds, "seed": self.shots[index].seed}
        return completed(self.store, self.job, self.worker_id, metadata, self.progress.timings)

    def join_shots(self, out: "Folder", done: list[JobRecord]):
        """The last step of a split job: its shots are all rendered; join them by stream copy."""
        self.progress.beat("joining shots", force=True)
        self.progress.begin()
        names = [layout.shot_file_name(i) for i in range(len(self.shots))]
        out.fetch(names)
        media.concat_mp4([out.path / n for n in names], out.path / layout.VIDEO)
        poster = media.read_frame(out.path / names[0], self.shots[0].duration_s * self.request.fps // 3)
        return names, poster, {"engine": self.engine_id, "shots": [c.metadata for c in done]}

    def render_all(self, out: "Folder"):
        """Every shot in this worker (single-shot jobs, and engines that cannot split)."""
        engine = self.load_engine()
        multi = len(self.shots) > 1
        names = layout.shot_file_names(len(self.shots))
        paths = [out.path / n for n in names] or [out.path / layout.VIDEO]
        out.put_json(layout.MANIFEST, layout.manifest(self.job, self.engine_id, self.request))
        poster, seconds = None, 0.0
        for i, path in enumerate(paths):
            self.progress.shot = i
            frame, t = yield from render(engine, plan_shot(self.request, self.shots, i, self.job.model_id), path, self.progress, self.sound, out.checkpoint(i))
            poster = frame if poster is None else poster
            seconds += t
        self.progress.beat("finishing", force=True)
        if multi:
            media.concat_mp4(paths, out.path / layout.VIDEO)
        return names, poster, {**self.progress.metadata, "engine": self.engine_id, "render_encode_s": seconds}

    def append_to_source(self, out: "Folder") -> list[str]:
        """An extension (docs/wires.md): the video it continues, placed as shot 1 when the job was
        recorded, then the shot just rendered from its last frame, joined by stream copy."""
        source, added = layout.shot_file_name(0), layout.shot_file_name(1)
        out.fetch([source])
        os.replace(out.path / layout.VIDEO, out.path / added)
        media.concat_mp4([out.path / source, out.path / added], out.path / layout.VIDEO)
        return [source, added]

    def finish_video(self, out: "Folder", names: list[str], poster, metadata: dict[str, Any]) -> None:
        """Poster, contact sheet, manifest and status file; output.mp4 is uploaded last."""
        media.save_poster(poster, out.path / layout.POSTER)
        media.contact_sheet(out.path / layout.VIDEO, out.path / layout.CONTACT_SHEET)
        self.progress.beat("publishing", force=True)  # a worker whose claim was lost publishes nothing
        out.publish([*names, layout.POSTER, layout.CONTACT_SHEET, layout.VIDEO])
        audio = media.probe_audio(out.path / layout.VIDEO)
        metadata.update(
            engine_options=self.options,
            generative=get_engine_class(self.engine_id).generative,
            audio=audio.to_dict() if audio else None,
            total_s=time.time() - (self.job.start_time or time.time()),
        )
        manifest = layout.manifest(self.job, self.engine_id, self.request)
        manifest["output"]["audio"] = metadata["audio"]
        manifest.update(metadata=metadata, endTime=layout.iso(time.time()))
        out.put_json(layout.MANIFEST, manifest)
        out.put_json(layout.STATUS, layout.status_doc(self.job, len(self.shots), None))


def plan_shot(request: VideoRequest, shots, index: int, model_id: str) -> ShotPlan:
    """What the engine is asked to render for shot ``index`` of a checked request."""
    s = shots[index]
    return ShotPlan(index, len(shots), s.text, s.seed, s.duration_s, request.fps, request.width, request.height, s.image, model_id)


def shot_unit(job: JobRecord, index: int) -> JobRecord:
    """The record of shot ``index`` of a multi-shot job, split off as a unit any worker may take."""
    unit_id = new_job_id()
    return JobRecord(
        id=unit_id,
        arn=job.arn.rsplit("/", 1)[0] + "/" + unit_id,
        model_id=job.model_id,
        model_input={},  # the shot reads its parent's request: images are stored once
        output_uri=job.output_uri,
        storage_uri=job.storage_uri,
        submit_time=job.submit_time,
        parent_id=job.id,
        shot_index=index,
        stage="queued shot",
        engine=job.engine,
        engine_options=job.engine_options,
        audio=job.audio,
    )


def render(engine: Engine, plan: ShotPlan, path: Path, progress: "JobProgress", sound: bool, checkpoint: tuple[Path, Callable[[Path], None]]):
    """Render one shot to ``path`` (encoding its frames, or checking the file the engine made), with its
    sound unless ``sound`` is False; return a poster frame and the seconds it took (a generator: a
    coroutine engine's render is yielded to the unit's driver to await). ``checkpoint``: the shot's
    checkpoint folder and how to keep a file written there (``Folder.checkpoint``)."""
    t0 = time.perf_counter()
    folder, keep = checkpoint
    with tempfile.TemporaryDirectory(prefix="reelforge-shot-") as workdir:
        output = engine.render(plan, RenderContext(progress, Path(workdir), folder, keep=keep))
        if inspect.isawaitable(output):
            output = yield Await(output, progress)
        if output.video_file is not None:
            poster = take_file(engine, plan, Path(output.video_file), path)
        elif output.frames is not None:
            poster = _encode(engine, plan, output.frames, path)
        else:
            raise ReelforgeError(f"engine {engine.engine_id} returned neither frames nor a video file for shot {plan.index + 1}")
        audio = output.audio  # read after the frames: an engine may set it once they are done
        if not sound and output.video_file is not None:
            media.set_audio(path, None)  # a file that came with sound is made silent
        elif sound and audio is not None:
            try:
                media.set_audio(path, audio.samples, audio.sample_rate)
            except ValueError as exc:
                raise ReelforgeError(f"engine {engine.engine_id} returned sound for shot {plan.index + 1} that cannot be used: {exc}") from None
    return poster, time.perf_counter() - t0


def _encode(engine: Engine, plan: ShotPlan, frames, path: Path):
    poster = None
    with media.VideoWriter(path, plan.fps, plan.width, plan.height) as writer:
        for k, frame in enumerate(frames):
            writer.write(frame)
            if k == plan.frame_count // 3:
                poster = frame
    if writer.frames_written != plan.frame_count:
        raise ReelforgeError(f"engine {engine.engine_id} made {writer.frames_written} frames for shot {plan.index + 1}; {plan.frame_count} were asked for")
    return poster


def take_file(engine: Engine, plan: ShotPlan, made: Path, path: Path, loosen: tuple[str, ...] = (), differs: dict[str, Any] | None = None):
    """A finished MP4 the engine made: checked against the plan, then published as the shot's file.

    ``loosen=("fps",)`` (an upstream whose wire carries no frame rate) accepts another rate whose
    length is the plan's to within a frame of either; what differed is put in ``differs``."""
    what = f"engine {engine.engine_id} handed back a video file for shot {plan.index + 1}"
    try:
        info = media.probe(made)
    except Exception as exc:  # PyAV's errors, a missing video stream
        raise ReelforgeError(f"{what} that cannot be read as a video: {exc}") from None
    want = f"h264 {plan.width}x{plan.height}, {plan.frame_count} frames at {plan.fps} fps"
    got = f"{info.codec} {info.width}x{info.height}, {info.frames} frames at {info.fps:g} fps"
    exact = (info.frames, round(info.fps, 3)) == (plan.frame_count, plan.fps)
    if not exact and "fps" in loosen and info.fps > 0 and abs(info.frames / info.fps - plan.frame_count / plan.fps) <= 1 / min(info.fps, plan.fps) + 1e-6:
        exact = True
        if differs is not None:
            differs.update(fps={"planned": plan.fps, "upstream": round(info.fps, 3)}, frames={"planned": plan.frame_count, "upstream": info.frames})
    if (info.codec, info.width, info.height) != ("h264", plan.width, plan.height) or not exact:
        raise ReelforgeError(f"{what} that does not match its plan: it is {got}; the shot needs {want}")
    media.publish_copy(made, path)
    return media.read_frame(path, plan.frame_count // 3)

"""Remote engines: a job forwarded to another server, followed there, and its video brought home.

``bedrock`` forwards with boto3 to Amazon Bedrock or any Bedrock-wire endpoint (another reelforge);
``openai-videos`` forwards with httpx to any server with OpenAI's Videos wire (vLLM-Omni, SGLang
Diffusion, FastVideo, another reelforge). Both go through the engine door (``render(shot, ctx)``
returning ``ShotOutput(video_file=...)``) and hold no GPU.

Never twice upstream:

- the create is idempotent: one token per job, the same on every attempt (``reelforge-<job id>``),
  sent as Bedrock's ``clientRequestToken`` or OpenAI's ``Idempotency-Key``;
- the upstream id is saved in the job's checkpoint (``metadata.checkpoint.upstreamId``) **before**
  the job is followed; a later attempt (after a crash, a restart) re-attaches to it;
- for upstreams that ignore idempotency keys, the engine saves its intent (``intentAt``) before the
  create; an attempt that finds an intent but no upstream id first looks in the upstream's list for a
  job it may have made (same prompt, size and length, created since the intent) and adopts it. The
  window that remains: a job the upstream created whose create reply was lost *and* that the list no
  longer shows (an upstream that forgot it, or a list that pages it away) is made again.

Throttling and quota answers (Bedrock ThrottlingException / ServiceQuotaExceededException, HTTP 429)
back off and try again with the same token. ``render`` is a coroutine: the worker's async lane
follows every forwarded job on one event loop, holding no thread while a job waits upstream; one
poller task per upstream reads every followed job's state (:class:`Poller`), and a per-upstream
limit (the entry's ``concurrency``) bounds the jobs followed at once. Cancel reaches the upstream: OpenAI's DELETE, reelforge's own cancel route;
Bedrock has none, so a canceled job's upstream result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, cast

from reelforge.errors import EngineError, JobCanceled
from reelforge.storage import S3Storage, join
from reelforge.engines.base import Engine, EngineOptions, RenderContext, ShotOutput, ShotPlan
from reelforge.storage import layout

from reelforge.engines.forward import Forward
from reelforge.engines.luma import from_nova
from reelforge.engines.upstream import (
    BACKOFF_MAX_S, BACKOFF_S, WAIT_STEP_S, Busy, Upstream, UpstreamFailed, fetch_file, is_reelforge, reelforge_health,
    shared_http, upstream_for, wait_for_slot,
)
log = logging.getLogger("reelforge.engines.remote")


def token_for(job_id: str) -> str:
    """The idempotency token of a job's upstream create: the same on every attempt."""
    return f"reelforge-{job_id}"


def _after_create(job_id: str) -> None:
    """Called between the upstream create and the saving of its id (tests replace it to crash there)."""


class RouteOptions(EngineOptions):
    """A remote engine's options are the job's route, recorded at submit (forward.Forward.route): never credentials."""

    kind: str
    url: str
    upstreamModel: str
    region: str | None = None
    output: str | None = None


class RemoteEngine(Engine):
    """A remote engine: ``create``, ``fetch``, ``download`` and ``cancel`` are the kind's coroutines; following is shared."""

    Options: ClassVar[type[EngineOptions]] = RouteOptions
    generative: ClassVar[bool] = True
    splits_shots: ClassVar[bool] = False  # the whole request goes upstream as one job
    remote: ClassVar[bool] = True
    # what the upstream's wire cannot be asked for, so its video may differ from the plan there (jobs.units.take_file)
    upstream_differs: ClassVar[tuple[str, ...]] = ()

    def upstream(self, forward) -> Upstream:
        return upstream_for(forward)

    # the kind's parts
    async def create(self, forward, job, token: str) -> str:
        raise NotImplementedError

    async def find_made(self, forward, job, since: float) -> str | None:
        """The upstream id of a job an earlier attempt may have made (upstreams that ignore tokens); None when none."""
        return None

    async def fetch(self, forward, upstream_id: str) -> dict[str, Any]:
        """{"status": queued|running|completed|failed, "progress": 0..1, "message": str}."""
        raise NotImplementedError

    async def download(self, forward, job, upstream_id: str, state: dict[str, Any], folder: Path, shots: int = 1) -> dict[str, Any]:
        """Write ``output.mp4`` into ``folder`` (and, where the upstream keeps them, ``shot_NNNN.mp4`` of a multi-shot video)."""
        raise NotImplementedError

    async def cancel(self, forward, upstream_id: str) -> bool:
        return False

    # the door
    async def render(self, shot: ShotPlan, ctx: RenderContext) -> ShotOutput:  # type: ignore[override]  # the worker awaits a remote engine's render
        job, forward = ctx.job, ctx.forward
        if job is None or forward is None:
            raise EngineError(f"engine {self.engine_id!r} forwards whole jobs; it needs the job and its forward (the worker gives them)")
        up = self.upstream(forward)
        progress = ctx.progress
        timings: dict[str, float] = {"queuedAt": time.time()}
        await wait_for_slot(up, progress)
        held = True
        try:
            upstream_id = ctx.saved.get("upstreamId")
            if upstream_id:
                log.info("job %s: re-attaching to upstream job %s at %s", job.id, upstream_id, forward.url)
            else:
                if "intentAt" in ctx.saved:
                    upstream_id = await self.find_made(forward, job, ctx.saved["intentAt"])
                if upstream_id is None:
                    await asyncio.to_thread(ctx.save, {"intentAt": time.time() - 1.0})  # before the create: a later attempt looks in the list first
                    upstream_id = await self._create(forward, job, progress)
                    _after_create(job.id)
                await asyncio.to_thread(ctx.save, {"upstreamId": upstream_id, "upstream": forward.url, "createdAt": time.time()})
            timings["createdAt"] = time.time()
            progress.metadata.update(upstreamId=upstream_id, upstream=forward.url, upstreamEngine=self.engine_id)
            state = await self._follow(up, forward, upstream_id, progress)
            timings["upstreamEndedAt"] = time.time()
            up.slots.release()  # the upstream's work is done: its slot goes to the next job while this one downloads
            held = False
            folder = ctx.workdir or Path(".")
            progress.metadata.update(await self.download(forward, job, upstream_id, state, folder, shot.count))
            timings["downloadedAt"] = time.time()
            progress.metadata["upstreamTimings"] = {k: round(v, 3) for k, v in timings.items()}
            return ShotOutput(video_file=folder / layout.VIDEO)
        finally:
            if held:
                up.slots.release()

    async def _create(self, forward, job, progress) -> str:
        pause = BACKOFF_S
        while True:
            try:
                return await self.create(forward, job, token_for(job.id))
            except Busy as exc:
                log.info("job %s: upstream %s is busy (%s); trying again in %.1f s with the same token", job.id, forward.url, exc, pause)
                progress.metadata["upstreamBackoffs"] = progress.metadata.get("upstreamBackoffs", 0) + 1
                progress(0, 1, f"upstream busy: {exc}")
                await asyncio.sleep(pause * random.uniform(0.8, 1.2))
                pause = min(pause * 2, BACKOFF_MAX_S)

    async def _follow(self, up: Upstream, forward, upstream_id: str, progress) -> dict[str, Any]:
        poller = up.poller(lambda uid, f=forward: self.fetch(f, uid))
        w = poller.watch(upstream_id)
        errors = 0
        try:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(w.changed.wait(), WAIT_STEP_S)
                w.changed.clear()
                state, error = w.state, w.error
                if error is not None:
                    errors += 1
                    if errors in (1, 10) or errors % 100 == 0:
                        log.warning("upstream %s job %s: cannot read its state (%s); still following", forward.url, upstream_id, error)
                    progress(0, 1, "upstream unreachable; following")
                    continue
                if state is None:
                    progress(0, 1, "forwarded; waiting for the upstream")
                    continue
                errors = 0
                status = state["status"]
                if status == "completed":
                    return state
                if status == "failed":
                    raise UpstreamFailed(f"upstream job {upstream_id} at {forward.url} failed: {state.get('message') or 'no message'}")
                progress(int(state.get("progress", 0.0) * 1000), 1000, f"upstream {status}")
        except (JobCanceled, asyncio.CancelledError):
            if progress.canceled:  # not a lost claim or a stopping worker: the job itself was canceled
                reached = False
                asking = asyncio.ensure_future(self.cancel(forward, upstream_id))
                while not asking.done():  # the lane cancels a canceled unit's await again each round: let the request finish
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait([asking])
                try:
                    reached = asking.result()
                except Exception as exc:  # noqa: BLE001 - the cancel here stands either way
                    log.warning("job canceled; canceling upstream job %s at %s failed: %s", upstream_id, forward.url, exc)
                progress.metadata["upstreamCanceled"] = reached
            raise
        finally:
            poller.unwatch(upstream_id)


def cancel_upstream(record) -> threading.Thread | None:
    """Cancel the upstream job of a forwarded job that ended CANCELED while no worker followed it
    (canceled while requeued after a crash, or ended by recovery): best effort, in a thread of its own."""
    from reelforge.engines import get_engine_class

    upstream_id = (record.metadata.get("checkpoint") or {}).get("upstreamId")
    if not record.engine or not getattr(get_engine_class(record.engine), "remote", False) or not upstream_id:
        return None
    forward = Forward.from_route(record.model_id, record.engine_options)

    def run() -> None:
        try:
            reached = asyncio.run(cast(RemoteEngine, get_engine_class(forward.kind)(record.engine_options)).cancel(forward, upstream_id))
            log.info("job %s canceled; upstream job %s at %s %s", record.id, upstream_id, forward.url, "canceled" if reached else "cannot be canceled (its result is dropped)")
        except Exception as exc:  # noqa: BLE001 - the cancel here stands either way
            log.warning("job %s canceled; canceling upstream job %s at %s failed: %s", record.id, upstream_id, forward.url, exc)

    t = threading.Thread(target=run, name=f"cancel upstream {record.id}", daemon=True)
    t.start()
    return t


# --- Bedrock ---------------------------------------------------------------------------------------


class BedrockEngine(RemoteEngine):
    """boto3 is synchronous: each of its calls runs in a thread of the loop's default pool for its own
    length only (``asyncio.to_thread``); a reelforge upstream's state and files are read with httpx."""

    engine_id: ClassVar[str] = "bedrock"
    summary: ClassVar[str] = "forwards to Amazon Bedrock or another Bedrock-wire server (boto3); output copied from S3"
    _clients: dict[str, Any] = {}
    _clients_lock = threading.Lock()

    @classmethod
    def check_available(cls, options: dict[str, Any]) -> None:
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise EngineError("engine 'bedrock' needs boto3: pip install boto3") from None

    def client(self, forward):
        import boto3
        from botocore.config import Config

        key = forward.upstream_key()
        with self._clients_lock:
            if key not in self._clients:
                session = boto3.session.Session(region_name=forward.region)
                if forward.url != "aws" and session.get_credentials() is None:
                    session = boto3.session.Session(aws_access_key_id="reelforge", aws_secret_access_key="reelforge", region_name=forward.region or "us-east-1")
                self._clients[key] = session.client(
                    "bedrock-runtime",
                    endpoint_url=None if forward.url == "aws" else forward.url,
                    region_name=forward.region or session.region_name or "us-east-1",
                    config=Config(retries={"total_max_attempts": 2, "mode": "standard"}, signature_version="v4",
                                  max_pool_connections=max(10, forward.concurrency + 2)),
                )
            return self._clients[key]

    async def output_location(self, forward) -> str:
        if forward.output:
            return forward.output
        if await is_reelforge(forward.url):
            default = (await reelforge_health(forward.url)).get("defaultOutput")
            if default:
                return default
        raise EngineError(f"forward {forward.model_id}={forward.kind}:{forward.url}: give output=s3://bucket/prefix, where the upstream writes videos")

    async def create(self, forward, job, token: str) -> str:
        from botocore.exceptions import ClientError

        from reelforge.engines.catalog import get_model

        model_input = job.wire_request.get("modelInput") or job.model_input  # Luma's own request, as it came
        if "modelInput" not in job.wire_request and get_model(job.model_id).input_format == "luma":
            model_input = from_nova(job.model_input)  # a Luma job that came on another wire
        output = await self.output_location(forward)
        try:
            reply = await asyncio.to_thread(
                self.client(forward).start_async_invoke,
                modelId=forward.upstream_model, modelInput=model_input, clientRequestToken=token,
                outputDataConfig={"s3OutputDataConfig": {"s3Uri": output}},
            )
        except ClientError as exc:
            err = exc.response.get("Error", {})
            if err.get("Code") in ("ThrottlingException", "ServiceQuotaExceededException", "ServiceUnavailableException"):
                raise Busy(f"{err.get('Code')}: {err.get('Message')}") from None
            raise UpstreamFailed(f"upstream {forward.url} refused the job: {err.get('Code')}: {err.get('Message')}") from None
        return reply["invocationArn"]

    async def fetch(self, forward, upstream_id: str) -> dict[str, Any]:
        if await is_reelforge(forward.url):  # one request that has the status and the progress too
            r = await shared_http().get(f"{forward.url}/reelforge/jobs/{upstream_id.rsplit('/', 1)[1]}")
            r.raise_for_status()
            d = r.json()
            status = {"QUEUED": "queued", "RUNNING": "running", "COMPLETED": "completed"}.get(d["status"], "failed")
            return {"status": status, "progress": float(d.get("progress") or 0.0), "message": d.get("failureMessage"), "output": d.get("s3Uri")}
        r = await asyncio.to_thread(self.client(forward).get_async_invoke, invocationArn=upstream_id)
        status = {"InProgress": "running", "Completed": "completed", "Failed": "failed"}[r["status"]]
        return {"status": status, "progress": 0.0, "message": r.get("failureMessage"), "output": r["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]}

    async def download(self, forward, job, upstream_id: str, state: dict[str, Any], folder: Path, shots: int = 1) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        names = [layout.VIDEO, *layout.shot_file_names(shots)]  # Bedrock's layout
        for name in names:
            if await is_reelforge(forward.url):
                await fetch_file(shared_http(), f"{forward.url}/reelforge/jobs/{upstream_id.rsplit('/', 1)[1]}/files/{name}", folder / name)
            else:
                data = await asyncio.to_thread(S3Storage().get_bytes, join(state["output"], name))
                (folder / name).write_bytes(data)
        return {}

    async def cancel(self, forward, upstream_id: str) -> bool:
        if not await is_reelforge(forward.url):
            return False  # Bedrock has no cancel: the job runs on and its result is dropped
        r = await shared_http().post(f"{forward.url}/reelforge/jobs/{upstream_id.rsplit('/', 1)[1]}/cancel")
        return r.status_code == 200

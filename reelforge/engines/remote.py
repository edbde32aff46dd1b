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
import os
import random
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, ClassVar

from reelforge.errors import EngineError, JobCanceled, ReelforgeError
from reelforge.engines.base import Engine, EngineOptions, RenderContext, ShotOutput, ShotPlan
from reelforge.storage import layout

log = logging.getLogger("reelforge.engines.remote")

POLL_S = float(os.environ.get("REELFORGE_FORWARD_POLL_S", "0.5"))  # between two rounds of a poller
BACKOFF_S, BACKOFF_MAX_S = 0.5, 15.0
WAIT_STEP_S = 1.0  # a follower wakes at least this often to see a cancel


def token_for(job_id: str) -> str:
    """The idempotency token of a job's upstream create: the same on every attempt."""
    return f"reelforge-{job_id}"


def _after_create(job_id: str) -> None:
    """Called between the upstream create and the saving of its id (tests replace it to crash there)."""


class UpstreamFailed(ReelforgeError):
    """The upstream job ended FAILED; the message is the upstream's."""


class Busy(Exception):
    """The upstream refused for now (throttling, a full queue): back off and try again with the same token."""


# --- one poller per upstream ---------------------------------------------------------------------


@dataclass
class _Watch:
    state: dict[str, Any] | None = None
    error: BaseException | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Poller:
    """One task, on the event loop of the jobs it follows, that reads the state of every job followed
    at one upstream, round after round: followers await their watch's event, so neither threads nor
    requests grow with jobs (one ``fetch`` per job and round)."""

    def __init__(self, name: str, fetch: Callable[[str], Awaitable[dict[str, Any]]], interval: float = POLL_S):
        self.name, self.fetch, self.interval = name, fetch, interval
        self._watches: dict[str, _Watch] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def watch(self, upstream_id: str) -> _Watch:
        w = self._watches.setdefault(upstream_id, _Watch())
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"poller {self.name}")
        self._wake.set()
        return w

    def unwatch(self, upstream_id: str) -> None:
        self._watches.pop(upstream_id, None)
        if not self._watches:
            self._wake.set()  # the task ends now, not a round later (a stopping loop finds nothing pending)

    async def _run(self) -> None:
        while self._watches:
            for upstream_id in list(self._watches):
                try:
                    state, error = await self.fetch(upstream_id), None
                except Exception as exc:  # noqa: BLE001 - the follower decides what an error means
                    state, error = None, exc
                w = self._watches.get(upstream_id)
                if w is not None:
                    w.state, w.error = state, error
                    w.changed.set()
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)


# --- what every remote engine shares ---------------------------------------------------------------


class Upstream:
    """An upstream's shared parts in this process: the concurrency limit (across every thread and
    loop of the process) and, per event loop, its poller and clients."""

    def __init__(self, key: str, concurrency: int):
        self.key = key
        self.concurrency = concurrency
        self.slots = threading.BoundedSemaphore(concurrency)
        self._per_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def on_loop(self) -> dict[str, Any]:
        """What this upstream keeps on the running loop (its poller, its httpx clients)."""
        return self._per_loop.setdefault(asyncio.get_running_loop(), {})

    def poller(self, fetch) -> Poller:
        mine = self.on_loop()
        if "poller" not in mine:
            mine["poller"] = Poller(self.key, fetch)
        return mine["poller"]


_upstreams: dict[str, Upstream] = {}
_upstreams_lock = threading.Lock()


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
        key = forward.upstream_key()
        with _upstreams_lock:
            up = _upstreams.get(key)
            if up is None or up.concurrency != forward.concurrency:
                up = _upstreams[key] = Upstream(key, forward.concurrency)
            return up

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
    async def render(self, shot: ShotPlan, ctx: RenderContext) -> ShotOutput:
        job, forward = ctx.job, ctx.forward
        if job is None or forward is None:
            raise EngineError(f"engine {self.engine_id!r} forwards whole jobs; it needs the job and its forward (the worker gives them)")
        up = self.upstream(forward)
        progress = ctx.progress
        timings: dict[str, float] = {"queuedAt": time.time()}
        await _wait_for_slot(up, progress)
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
    from reelforge.engines.forward import Forward
    from reelforge.engines import get_engine_class

    upstream_id = (record.metadata.get("checkpoint") or {}).get("upstreamId")
    if not record.engine or not getattr(get_engine_class(record.engine), "remote", False) or not upstream_id:
        return None
    forward = Forward.from_route(record.model_id, record.engine_options)

    def run() -> None:
        try:
            reached = asyncio.run(get_engine_class(forward.kind)(record.engine_options).cancel(forward, upstream_id))
            log.info("job %s canceled; upstream job %s at %s %s", record.id, upstream_id, forward.url, "canceled" if reached else "cannot be canceled (its result is dropped)")
        except Exception as exc:  # noqa: BLE001 - the cancel here stands either way
            log.warning("job %s canceled; canceling upstream job %s at %s failed: %s", record.id, upstream_id, forward.url, exc)

    t = threading.Thread(target=run, name=f"cancel upstream {record.id}", daemon=True)
    t.start()
    return t


async def _wait_for_slot(up: Upstream, progress) -> None:
    """A slot of the upstream's limit; the wait holds no thread (the limit spans every loop of the process)."""
    waited = 0.0
    while not up.slots.acquire(blocking=False):
        if waited >= WAIT_STEP_S:
            progress(0, 1, f"waiting for one of {up.concurrency} upstream slots")
            waited = 0.0
        await asyncio.sleep(0.05)
        waited += 0.05


# --- Bedrock ---------------------------------------------------------------------------------------


_HEALTH: dict[str, dict[str, Any]] = {}


async def _reelforge_health(url: str) -> dict[str, Any]:
    """An upstream's /reelforge/health when it is another reelforge, else {}; remembered per URL once it answers."""
    import httpx

    if url == "aws":
        return {}
    if url not in _HEALTH:
        try:
            r = await _shared_http().get(url + "/reelforge/health", timeout=5)
            doc = r.json() if r.status_code == 200 else {}
            _HEALTH[url] = doc if isinstance(doc, dict) and doc.get("service") == "reelforge" else {}
        except (httpx.HTTPError, ValueError):
            return {}  # not remembered: it may answer later
    return _HEALTH[url]


async def is_reelforge(url: str) -> bool:
    """Whether ``url`` is another reelforge server (its /reelforge/health says so)."""
    return bool(await _reelforge_health(url))


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
            default = (await _reelforge_health(forward.url)).get("defaultOutput")
            if default:
                return default
        raise EngineError(f"forward {forward.model_id}={forward.kind}:{forward.url}: give output=s3://bucket/prefix, where the upstream writes videos")

    async def create(self, forward, job, token: str) -> str:
        from botocore.exceptions import ClientError

        from reelforge.engines.catalog import get_model

        model_input = job.wire_request.get("modelInput") or job.model_input  # Luma's own request, as it came
        if "modelInput" not in job.wire_request and get_model(job.model_id).input_format == "luma":
            from reelforge.engines.luma import from_nova

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
            r = await _shared_http().get(f"{forward.url}/reelforge/jobs/{upstream_id.rsplit('/', 1)[1]}")
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
                await _fetch_file(_shared_http(), f"{forward.url}/reelforge/jobs/{upstream_id.rsplit('/', 1)[1]}/files/{name}", folder / name)
            else:
                from reelforge.storage.base import S3Storage, join

                data = await asyncio.to_thread(S3Storage().get_bytes, join(state["output"], name))
                (folder / name).write_bytes(data)
        return {}

    async def cancel(self, forward, upstream_id: str) -> bool:
        if not await is_reelforge(forward.url):
            return False  # Bedrock has no cancel: the job runs on and its result is dropped
        r = await _shared_http().post(f"{forward.url}/reelforge/jobs/{upstream_id.rsplit('/', 1)[1]}/cancel")
        return r.status_code == 200


_loop_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> {key: httpx.AsyncClient}


def _loop_client(key: str, make: Callable[[], Any]):
    """One kept-alive httpx.AsyncClient per key on the running loop (a client's connections belong to one loop)."""
    clients = _loop_clients.setdefault(asyncio.get_running_loop(), {})
    if key not in clients:
        clients[key] = make()
    return clients[key]


def _shared_http():
    """The running loop's kept-alive client for requests to reelforge upstreams."""
    import httpx

    return _loop_client("", lambda: httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10), limits=httpx.Limits(max_connections=64)))


async def _fetch_file(client, url: str, path: Path, params: dict[str, str] | None = None) -> None:
    async with client.stream("GET", url, params=params) as r:
        if r.status_code != 200:
            raise ReelforgeError(f"cannot download {url}: HTTP {r.status_code}")
        with open(path, "wb") as f:
            async for chunk in r.aiter_bytes():
                f.write(chunk)


# --- OpenAI Videos -----------------------------------------------------------------------------------


class OpenAIVideosEngine(RemoteEngine):
    engine_id: ClassVar[str] = "openai-videos"
    summary: ClassVar[str] = "forwards to any OpenAI Videos server (vLLM-Omni, SGLang Diffusion, FastVideo, reelforge) with httpx"
    upstream_differs: ClassVar[tuple[str, ...]] = ("fps",)  # the wire has size and seconds, no frame rate

    def http(self, forward):
        import httpx

        def make():
            headers = {}
            if forward.key_env:
                secret = os.environ.get(forward.key_env)
                if not secret:
                    raise EngineError(f"forward {forward.model_id}: key-env={forward.key_env} names a variable that is not set")
                headers["Authorization"] = f"Bearer {secret}"
            limits = httpx.Limits(max_connections=forward.concurrency + 4)
            base = forward.url if forward.url.endswith("/v1") else forward.url + "/v1"  # the server's root or its /v1
            return httpx.AsyncClient(base_url=base, headers=headers, timeout=httpx.Timeout(60, connect=10), limits=limits)

        return _loop_client(forward.upstream_key() + (forward.key_env or ""), make)

    @staticmethod
    def fields(forward, job) -> dict[str, str]:
        cfg = job.model_input.get("videoGenerationConfig", {})
        text = job.model_input.get("textToVideoParams", {}).get("text", "")
        return {"prompt": text, "model": forward.upstream_model, "seconds": str(cfg.get("durationSeconds", 4)), "size": str(cfg.get("dimension", "1280x720"))}

    async def create(self, forward, job, token: str) -> str:
        import base64

        # multipart, as the openai client sends it (what every Videos server reads); text fields have no file name
        parts: list[tuple[str, tuple]] = [(k, (None, v)) for k, v in self.fields(forward, job).items()]
        images = job.model_input.get("textToVideoParams", {}).get("images")
        if images and "bytes" in images[0].get("source", {}):
            fmt = images[0]["format"]
            parts.append(("input_reference", (f"reference.{'jpg' if fmt == 'jpeg' else 'png'}", base64.b64decode(images[0]["source"]["bytes"]), f"image/{fmt}")))
        r = await self.http(forward).post("/videos", files=parts, headers={"Idempotency-Key": token})
        if r.status_code == 429 or r.status_code >= 500:
            raise Busy(f"HTTP {r.status_code}: {_message(r)}")
        if r.status_code >= 400:
            raise UpstreamFailed(f"upstream {forward.url} refused the job: HTTP {r.status_code}: {_message(r)}")
        return r.json()["id"]

    async def find_made(self, forward, job, since: float) -> str | None:
        want = self.fields(forward, job)
        r = await self.http(forward).get("/videos", params={"limit": 100, "order": "desc"})
        if r.status_code != 200:
            return None
        for v in r.json().get("data", []):
            if v.get("created_at", 0) >= int(since) and v.get("prompt") == want["prompt"] and v.get("size") == want["size"] \
                    and str(v.get("seconds")) == want["seconds"] and v.get("model") in (want["model"], None):
                log.info("job %s: adopting upstream job %s found in the upstream's list (created after the recorded intent)", job.id, v["id"])
                return v["id"]
        return None

    async def fetch(self, forward, upstream_id: str) -> dict[str, Any]:
        r = await self.http(forward).get(f"/videos/{upstream_id}")
        if r.status_code == 404:
            return {"status": "failed", "message": f"the upstream has no video {upstream_id} (deleted, expired, or it forgot it)"}
        r.raise_for_status()
        v = r.json()
        status = {"queued": "queued", "in_progress": "running", "completed": "completed", "failed": "failed"}.get(v.get("status"), "running")
        error = v.get("error") or {}
        return {"status": status, "progress": float(v.get("progress") or 0) / 100, "message": error.get("message") if error else None}

    async def download(self, forward, job, upstream_id: str, state: dict[str, Any], folder: Path, shots: int = 1) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        await _fetch_file(self.http(forward), f"/videos/{upstream_id}/content", folder / layout.VIDEO, params={"variant": "video"})
        return {}

    async def cancel(self, forward, upstream_id: str) -> bool:
        r = await self.http(forward).delete(f"/videos/{upstream_id}")
        return r.status_code in (200, 204)


def _message(r) -> str:
    try:
        doc = r.json()
        return str((doc.get("error") or {}).get("message") or doc.get("message") or doc)[:500]
    except (ValueError, AttributeError):
        return r.text[:500]

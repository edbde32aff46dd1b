"""The ASGI app: Bedrock's async-invoke API and reelforge's extensions over one Runtime.

``create_app(settings)`` builds the runtime (same job log, engines and worker code as the
embedded client), recovers jobs a stopped server left running, and starts worker threads and
the change hub when the server starts. One middleware gives every reply a request id (in the
header its wire's clients read), the browser headers (origin.py) and its wire's error shape, and before any
route runs applies the same-origin rule to every state-changing request, requires JSON bodies
on Bedrock's POST, enforces the body size limit and, when access keys are configured, verifies
SigV4 signatures; on a loopback-bound server another refuses requests whose Host is not a
loopback name (DNS rebinding). How connections are held (timeouts, limits) is protocol.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, cast

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Match

from reelforge import config
from reelforge.errors import ImageError, ReelforgeError
from reelforge.server.gallery import error_page, gallery_routes, not_found, upload_too_large
from reelforge.jobs.open import open_store
from reelforge.jobs.record import JobRecord, V
from reelforge.jobs.sqlite import SQLiteJobStore
from reelforge.jobs.runtime import Runtime
from reelforge.storage import S3Storage
from reelforge.server import bedrock_api, extensions, gemini_api, openai_api, openapi, sigv4, video_wires
from reelforge.server.errors import BEDROCK, GEMINI, ApiError, code_for_status, error_response, new_request_id, request_id_header, shaped_send, wire_of
from reelforge.server.dispatch import SegmentRouter
from reelforge.server.events import ChangeHub
from reelforge.server.hosts import LoopbackHostMiddleware
from reelforge.server.locations import IMAGE_FIELD, OUTPUT_FIELD, bucket_path, check_s3_uri, missing_message
from reelforge.server.origin import DATA_HEADERS, SAFE_METHODS, same_origin_problem, security_headers

log = logging.getLogger("reelforge.server")

DEFAULT_MAX_BODY = 32 * 1024 * 1024
OPEN_PATHS = ("/reelforge/health", "/openapi.json")
BUCKET_DIR_DEFAULT_OUTPUT = "s3://reelforge-outputs/videos"  # with --bucket-dir: DIR/reelforge-outputs/videos


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8787
    workers: int = 1
    bucket_dir: Path | None = None  # s3://bucket/prefix -> bucket_dir/bucket/prefix
    auth_keys: dict[str, str] = field(default_factory=dict)  # access key id -> secret; empty: no checks
    max_body: int = DEFAULT_MAX_BODY
    read_timeout: float = config.SERVER_READ_TIMEOUT  # see protocol.py
    max_connections: int = config.SERVER_MAX_CONNECTIONS
    region: str = field(default_factory=config.region)
    account: str = field(default_factory=config.account)
    data_dir: Path | None = None  # default: REELFORGE_HOME / the user data dir
    default_output: str | None = None  # s3://bucket/prefix advertised on /reelforge/health for clients without one
    allowed_hosts: tuple[str, ...] = ()  # extra Host names a loopback-bound server answers (a reverse proxy's)
    max_queued: int | None = None  # refuse new jobs while this many are queued (each wire's quota error)
    forwards: Any = None  # forward.Forwards: model ids that run upstream (default: REELFORGE_FORWARD)
    retain_s: float | None = None  # prune ended jobs this old (reelforge/retention.py); None keeps every job
    webhooks: Any = None  # webhooks.Settings; default: from the environment
    public_url: str | None = None  # where webhook links point; default: http://HOST:PORT

    @property
    def advertised_output(self) -> str | None:
        """The output location a reelforge client uses when given none (with --bucket-dir there always is one)."""
        if self.default_output:
            return self.default_output.rstrip("/")
        return BUCKET_DIR_DEFAULT_OUTPUT if self.bucket_dir is not None else None


class ServerState:
    def __init__(self, settings: ServerSettings, runtime: Runtime | None = None):
        self.settings = settings
        if runtime is None:
            location = str(Path(settings.data_dir) / "jobs.sqlite3") if settings.data_dir else config.job_store_location()
            runtime = Runtime(
                open_store(location),
                region=settings.region,
                account=settings.account,
                fetch_s3=self.fetch_s3,
                map_output=self.map_output if settings.bucket_dir is not None else None,
                forwards=settings.forwards,
                retain_s=settings.retain_s,
                webhooks=settings.webhooks,
                public_url=settings.public_url or f"http://{'[' + settings.host + ']' if ':' in settings.host else settings.host}:{settings.port}",
            )
        self.runtime = runtime
        if settings.max_queued is not None:
            runtime.max_queued = settings.max_queued
        self.hub = ChangeHub(runtime)
        self.wire_models = video_wires.WireModels.from_env()  # REELFORGE_WIRE_MODELS, checked at start

    @property
    def reads_on_loop(self) -> bool:
        """Whether a request's job read runs on the event loop: on SQLite, where a WAL reader does
        not wait for writers and a point read (tens of microseconds) costs less than the hop to a
        worker thread, which was most of a Get's time. PostgreSQL reads cross the network, so they
        run in a thread."""
        return isinstance(self.runtime.store, SQLiteJobStore)

    async def job(self, job_id: str) -> JobRecord:
        """One job by id, for a request."""
        if self.reads_on_loop:
            return self.runtime.store.get(job_id)
        return await run_in_threadpool(self.runtime.store.get, job_id)

    async def view(self, job_id: str, make: Callable[[JobRecord], V]) -> V:
        """``make(record)`` of one job, read as ``job`` reads; SQLite keeps it until the job log changes (JobStore.view)."""
        if self.reads_on_loop:
            return self.runtime.store.view(job_id, make)
        return await run_in_threadpool(self.runtime.store.view, job_id, make)

    def local_path_for(self, s3_uri: str, field: str = OUTPUT_FIELD) -> Path:
        """Where ``s3://bucket/key`` lives under --bucket-dir; refuses anything that could leave it.

        The bucket must be a valid S3 bucket name, the key may not have empty, '.' or '..'
        segments or control characters, and the resolved path (symlinks followed) must stay
        inside the bucket folder. Errors name ``field`` and never say whether a file outside
        the folder exists.
        """
        return bucket_path(Path(cast(Path, self.settings.bucket_dir)), s3_uri, field)

    def map_output(self, requested: str) -> str:
        return self.local_path_for(requested).as_uri()

    def fetch_s3(self, uri: str, bucket_owner: str | None) -> bytes:
        check_s3_uri(uri, IMAGE_FIELD)
        if self.settings.bucket_dir is None:
            return S3Storage().get_bytes(uri)
        path = self.local_path_for(uri, IMAGE_FIELD)
        try:
            return path.read_bytes()
        except (OSError, ValueError):
            raise ImageError(IMAGE_FIELD, missing_message(uri)) from None


REGION = re.compile(r"[a-z0-9-]{1,20}")  # what an invocation ARN's region may be (wire.INVOCATION_ARN)


def arn_region(region: str | None) -> str | None:
    """The SigV4 credential region when an ARN can carry it, else None (the configured --region is used)."""
    return region if region and REGION.fullmatch(region) else None


class _ClientGone(Exception):
    """The client closed the connection before its request body was complete."""


class _CrossSite(ApiError):
    """A state-changing request sent by another site's page (see origin.py)."""

    def __init__(self, method: str, path: str, problem: str):
        self.problem = problem
        super().__init__(403, "AccessDeniedException", f"{method} {path[:100]} refused: {problem} (a page of another site may not change jobs here).")


BEDROCK_BODY_PATHS = ("/async-invoke",)  # POST routes whose body is Bedrock JSON
JSON_CHARSETS = ("utf-8", "utf8")


def json_content_problem(content_type: str | None) -> str | None:
    """Why a body with this Content-Type is not Bedrock JSON, or None (boto3 sends ``application/json``)."""
    if not content_type:
        return "The request has no Content-Type; send the JSON body with Content-Type: application/json."
    media, *params = [p.strip().lower() for p in content_type.split(";")]
    charset = next((p.partition("=")[2].strip('"') for p in params if p.startswith("charset=")), None)
    if media != "application/json" or (charset is not None and charset not in JSON_CHARSETS):
        return f"The Content-Type is {content_type[:100]!r}; this operation takes a JSON body sent as Content-Type: application/json (UTF-8)."
    return None


def _is_gallery(path: str) -> bool:
    return path.startswith("/gallery/")


class BedrockMiddleware:
    """Request id, browser headers and Bedrock's error shape on every reply; the same-origin rule,
    JSON bodies on Bedrock's routes, the body size limit and SigV4 before any route runs."""

    def __init__(self, app, settings: ServerSettings):
        self.app = app
        self.settings = settings
        self.headers = security_headers()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = new_request_id()
        scope["reelforge.request_id"] = request_id
        path = scope["path"]
        wire = wire_of(path)
        id_header = request_id_header(wire).lower().encode()

        def add_headers(message) -> None:
            headers = message["headers"] = list(message.get("headers", ()))
            present = {name for name, _ in headers}  # ASGI response header names are lowercase
            if id_header not in present:
                headers.append((id_header, request_id.encode()))
            extra = DATA_HEADERS if (b"content-type", b"application/json") in headers else self.headers
            headers += [(name, value) for name, value in extra if name not in present]

        async def decorated(message):
            if message["type"] == "http.response.start":
                add_headers(message)
            await send(message)

        shaper = None  # an error reply goes through shaped_send, which may rewrite it first

        async def send_out(message):
            nonlocal shaper
            if message["type"] == "http.response.start":
                if message["status"] >= 400:
                    shaper = shaped_send(decorated, wire)
                else:
                    add_headers(message)
            if shaper is not None:
                return await shaper(message)
            await send(message)

        try:
            body = await self._admitted_body(scope, receive, path, wire)
        except _ClientGone:
            log.info("request %s: the client left before sending its whole body; nothing done", request_id)
            return
        except ApiError as exc:
            return await self._refusal(exc, scope, path, request_id, wire)(scope, receive, send_out)
        if body is None:  # none declared, none read: the app reads the request as it came
            return await self.app(scope, receive, send_out)

        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then wait for the disconnect, as streaming responses do

        await self.app(scope, replay, send_out)

    async def _admitted_body(self, scope, receive, path: str, wire: str) -> bytes | None:
        """The request's body (None for a request that declares none: nothing was read), once the
        same-origin rule, the content type, the size limit and the credentials pass."""
        self._check_request(scope)
        headers = dict(scope["headers"])
        body = await self._read_body(headers, receive) if b"content-length" in headers or b"transfer-encoding" in headers else None
        if self.settings.auth_keys and path not in OPEN_PATHS:
            if wire == BEDROCK:
                sigv4.verify(scope, body or b"", self.settings.auth_keys)
            else:  # OpenAI's and Google's clients send API keys, not signatures
                video_wires.check_key(scope, wire, self.settings.auth_keys)
        auth = headers.get(b"authorization", b"").decode("latin-1") if wire == BEDROCK else ""
        scope["reelforge.region"] = arn_region(sigv4.credential_region(auth)) if wire == BEDROCK else None
        return body

    def _refusal(self, exc: ApiError, scope, path: str, request_id: str, wire: str):
        """The reply to a request refused before any route ran: a page for a gallery form, else the wire's error."""
        if _is_gallery(path) and exc.status == 413:  # a browser's form post: a page, not JSON
            declared = dict(scope["headers"]).get(b"content-length", b"")
            size = int(declared) if declared.isdigit() else None
            return upload_too_large(path, self.settings.max_body, size)
        if _is_gallery(path) and isinstance(exc, _CrossSite):
            return error_page(403, "Form refused", f"This form was not posted from the gallery's own page: {exc.problem}.")
        return error_response(exc, request_id, wire)

    def _check_request(self, scope) -> None:
        """The checks that need no body: the same-origin rule and Bedrock's JSON content type."""
        method = scope["method"]
        if method in SAFE_METHODS:
            return
        request = Request(scope)
        problem = same_origin_problem(request)
        if problem:  # another site's page must not start, cancel or rerun jobs through a visitor's browser
            raise _CrossSite(method, scope["path"], problem)
        if method == "POST" and scope["path"] in BEDROCK_BODY_PATHS:
            problem = json_content_problem(request.headers.get("content-type"))
            if problem:
                raise ApiError(415, "ValidationException", problem)

    async def _read_body(self, headers: dict[bytes, bytes], receive) -> bytes:
        """The whole body; 413 as soon as it is known to be over the limit (the protocol drains the rest)."""
        limit = self.settings.max_body
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, "ValidationException", f"The request body is {size} bytes; this server accepts at most {limit} bytes (reelforge serve --max-body).")


async def _handle(request: Request, exc: Exception):
    return error_response(exc, request.scope.get("reelforge.request_id"), wire_of(request.url.path))


def _wants_page(request: Request) -> bool:
    """A browser asking for a page: GET, accepts HTML, outside the API's paths."""
    path = request.url.path
    return (
        request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
        and not (path == "/async-invoke" or path.startswith(("/async-invoke/", "/reelforge/")))
        and wire_of(path) == BEDROCK
    )


async def _handle_http(request: Request, exc: HTTPException):
    path, status = request.url.path, exc.status_code
    if status == 405 and wire_of(path) == GEMINI and not path.startswith("/v1/videos") and gemini_api.allowed_methods(path) is None:
        status = 404  # the catch-all route of a version prefix matched the path, but no resource is there
    unknown = status in (404, 405)
    if _is_gallery(path) and request.method == "POST":  # a gallery form: its error is a page
        if unknown:
            return error_page(status, "No such form", f"Nothing here takes a form posted to {path[:200]}; nothing was started.")
        return error_page(status, "The form could not be read", f"{exc.detail}. Nothing was started: go back and send the form again.")
    if status == 404 and _wants_page(request):
        return not_found(path)
    if unknown:
        error = ApiError(status, "UnknownOperationException", f"No operation answers {request.method} {path}.")
    else:
        error = ApiError(status, code_for_status(status), str(exc.detail))
    reply = error_response(error, request.scope.get("reelforge.request_id"), wire_of(path))
    for name, value in (exc.headers or {}).items():
        if name.lower() != "allow":
            reply.headers[name] = value
    if status == 405:  # RFC 9110: Allow lists every method of the resource (Starlette names one route's only)
        reply.headers["Allow"] = _allowed(request)
    return reply


def _allowed(request: Request) -> str:
    """The methods of the resource at the request's path: those of every route with the first matching route's path."""
    if wire_of(request.url.path) == GEMINI and not request.url.path.startswith("/v1/videos"):
        return gemini_api.allowed_methods(request.url.path) or ""
    routes = request.app.router.routes
    first = next((r for r in routes if r.matches(request.scope)[0] is not Match.NONE), None)
    same = [r for r in routes if first is not None and getattr(r, "path", None) == first.path]
    return ", ".join(sorted(set().union(*(getattr(r, "methods", None) or set() for r in same))))


def create_app(settings: ServerSettings | None = None, runtime: Runtime | None = None) -> Starlette:
    """The ASGI app; workers and the change hub start with the server and stop with it."""
    settings = settings or ServerSettings()
    state = ServerState(settings, runtime)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state.hub.start(asyncio.get_running_loop())
        if settings.workers > 0:
            state.runtime.start_workers(settings.workers)
        state.runtime.start_pruning()
        state.runtime.start_dispatcher()  # webhooks go out from the server even when workers run elsewhere
        log.info("serving; job log %s, %d worker(s)", getattr(state.runtime.store, "path", "?"), settings.workers)
        try:
            yield
        finally:
            state.hub.stop()
            # Stopping (Ctrl-C, SIGTERM): running units go back to the queue now, not when their lease ends.
            await asyncio.to_thread(state.runtime.release)
            await asyncio.to_thread(state.runtime.stop, 10)

    handlers: dict[Any, Any] = {ApiError: _handle, ReelforgeError: _handle, HTTPException: _handle_http, Exception: _handle}
    app = Starlette(exception_handlers=handlers)
    app.router = SegmentRouter(
        bedrock_api.routes + extensions.routes + openai_api.routes + gemini_api.routes + openapi.routes
        + gallery_routes(state.runtime, settings.advertised_output, settings.max_body),
        lifespan=lifespan,
    )
    app.state.reelforge = state
    app.add_middleware(BedrockMiddleware, settings=settings)
    app.add_middleware(LoopbackHostMiddleware, settings=settings)  # outermost: runs first
    return app


def settings_from_env(**overrides) -> ServerSettings:
    """Settings with REELFORGE_AUTH_KEYS (``AKID:SECRET,...``) applied, then ``overrides``."""
    s = ServerSettings(**overrides)
    env = os.environ.get("REELFORGE_AUTH_KEYS")
    if env and not s.auth_keys:
        s.auth_keys = sigv4.load_keys(env=env)
    return s

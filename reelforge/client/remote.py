"""RemoteBackend: ``Client(endpoint=URL)`` over boto3, against a reelforge server or Bedrock itself.

Jobs are started, read and listed with boto3's bedrock-runtime client, so the same code runs
against ``reelforge serve`` and AWS. Against a reelforge server (found by its ``/reelforge/health``
route) the backend also uses the extensions: full job detail with progress, cancel, file
downloads, and server-sent events so that ``Job.wait()`` returns as soon as a job ends.
Elsewhere ``Job.wait()`` polls, 1 s at first and growing to 15 s.

Outputs are S3 locations. Without one, the backend uses the ``defaultOutput`` a reelforge server
advertises on ``/reelforge/health`` (``reelforge serve --default-output``, or a location under
``--bucket-dir``); when there is none it checks the request here first (against the local model
table, when it knows the model), so a bad request gets its own error before the missing output.

boto3 prefers bearer auth whenever ``AWS_BEARER_TOKEN_BEDROCK`` is set, and bearer auth refuses
http:// endpoints; the client here asks for SigV4 in code, which is what overrides that.
"""

from __future__ import annotations

import builtins
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode

from reelforge.client.events import EventFollower
from reelforge.client.replies import record_from_detail, record_from_summary, reply_error
from reelforge.errors import JobNotFoundError, ReelforgeError, RequestError, UnknownModelError, UnreachableError
from reelforge.jobs.listing import Page, statuses
from reelforge.jobs.record import JobRecord
from reelforge.storage.aws_errors import botocore_errors, unreachable
from reelforge.request.model import VideoRequest

SERVICE = "bedrock"
AWS_ENDPOINTS = ("bedrock", "aws")  # Client(endpoint="bedrock"): the real service
PASS_OUTPUT = 'pass -o s3://bucket/prefix (Python: output="s3://bucket/prefix")'


class RemoteBackend:
    """The Backend protocol (reelforge.client.backend) over boto3 and a reelforge server's extension routes."""

    def __init__(
        self,
        endpoint: str,
        *,
        region: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile: str | None = None,
        poll_min_s: float = 1.0,
        poll_max_s: float = 15.0,
    ):
        import boto3
        from botocore.config import Config

        self.endpoint_url = None if endpoint in AWS_ENDPOINTS else endpoint.rstrip("/")
        session = boto3.session.Session(
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
            profile_name=profile,
            region_name=region,
        )
        if session.get_credentials() is None and self.endpoint_url and "amazonaws.com" not in self.endpoint_url:
            # A reelforge server without --auth-keys ignores signatures; boto3 still wants some.
            session = boto3.session.Session(aws_access_key_id="reelforge", aws_secret_access_key="reelforge", region_name=region)
        self.region = session.region_name or "us-east-1"
        self._session = session
        self.bedrock = session.client(
            "bedrock-runtime",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            config=Config(auth_scheme_preference="sigv4", user_agent_extra="reelforge"),
        )
        self.poll_min_s, self.poll_max_s = poll_min_s, poll_max_s
        self._reelforge: bool | None = None
        self._health: dict[str, Any] = {}
        self._arns: dict[str, str] = {}
        self._cond = threading.Condition()
        self._version: dict[str, int] = {}
        self._seen: dict[str, int] = {}
        self._followers: dict[str, EventFollower] = {}
        self._interval: dict[str, float] = {}
        self._closed = False

    # --- what is on the other end ------------------------------------------------------------
    @property
    def is_reelforge(self) -> bool:
        """True when the endpoint is a reelforge server (it answers /reelforge/health)."""
        if self._reelforge is None:
            info = self._fetch_health()
            self._health = info or {}
            self._reelforge = bool(info) and cast(dict, info).get("service") == "reelforge"
        return self._reelforge

    def _fetch_health(self) -> dict[str, Any] | None:
        """The server's /reelforge/health reply; None when it answers but is not reelforge (UnreachableError
        when nothing answers: a start must not go on to blame a missing output location)."""
        if not self.endpoint_url:
            return None
        try:
            status, body = self._call("GET", "/reelforge/health", timeout=5)
            info = json.loads(body)
        except UnreachableError:
            raise
        except (ValueError, ReelforgeError):
            return None
        return info if status == 200 and isinstance(info, dict) else None

    def ping(self) -> None:
        """Raise UnreachableError now when nothing answers at the endpoint (a found server is remembered)."""
        self.is_reelforge

    @property
    def default_output(self) -> str | None:
        """The s3:// location a reelforge server writes to when a request names none (None: it has none)."""
        if not self.is_reelforge:
            return None
        value = self._health.get("defaultOutput")
        return value if isinstance(value, str) and value.startswith("s3://") else None

    # --- the Backend protocol (reelforge.client.backend) -------------------------------------------
    def submit(self, model: str, request, output, client_token, tags, webhook=None, webhook_events=None, audio: bool = True) -> str:
        if webhook is not None:
            raise RequestError("webhook", "a server is sent the name of an endpoint it has registered, not a URL: start it with "
                               "--webhook-endpoint NAME=URL and pass webhook=NAME (or --webhook URL to hear every job)")
        if not audio:
            raise RequestError("audio", "Bedrock's StartAsyncInvoke has no field to ask for a silent video; "
                               "leave audio on here, or submit on this machine (no --endpoint)")
        self.ping()  # before botocore's retries, and before any talk of output locations
        output = self._output_for(model, request, output)
        if isinstance(request, VideoRequest):
            if request.fit is not None:  # fit the image here: the wire format has no field for it
                from reelforge.engines.catalog import get_model
                from reelforge.request.check import check

                request, _ = check(request, get_model(model))
            model_input = request.to_model_input()
        else:
            model_input = request
        kw: dict[str, Any] = dict(modelId=model, modelInput=model_input, outputDataConfig={"s3OutputDataConfig": {"s3Uri": output}})
        if client_token is not None:
            kw["clientRequestToken"] = client_token
        if tags:
            kw["tags"] = tags
        arn = self._boto("start_async_invoke", model, **kw)["invocationArn"]
        job_id = arn.rsplit("/", 1)[-1]
        self._arns[job_id] = arn
        return job_id

    def _output_for(self, model: str, request, output) -> str:
        """The s3:// output of a start: the one given, else the server's default; else a RequestError."""
        if output is not None and str(output).startswith("s3://"):
            return str(output)
        if output is None and self.default_output:
            return self.default_output
        check_locally(model, request)  # a bad request gets its own error, not the output's
        if output is not None:
            raise RequestError("output", f"a server writes its outputs to S3, not to {str(output)!r}; {PASS_OUTPUT}")
        if self.endpoint_url is None:
            raise RequestError("output", f"Bedrock needs an S3 output location; {PASS_OUTPUT}")
        if self.is_reelforge:
            raise RequestError(
                "output",
                f"this server has no default output location (reelforge serve --default-output sets one); {PASS_OUTPUT}",
            )
        raise RequestError("output", f"this endpoint has no default output location; {PASS_OUTPUT}")

    def get(self, ref: str) -> JobRecord:
        job_id = ref.rsplit("/", 1)[-1]
        with self._cond:
            self._seen[job_id] = self._version.get(job_id, 0)
        if self.is_reelforge:
            _, body = self._call("GET", f"/reelforge/jobs/{quote(job_id)}", ref=job_id)
            return record_from_detail(json.loads(body))
        arn = ref if ref.startswith("arn:") else self._arns.get(job_id) or self._guess_arn(job_id)
        r = self._boto("get_async_invoke", arn, invocationArn=arn)
        return record_from_summary(r)

    def list(self, *, status=None, model=None, q=None, limit=50, after=None) -> Page:
        if self.is_reelforge:
            query = {k: v for k, v in dict(status=str(status).upper() if status else None, model=model, q=q, limit=limit, after=after).items() if v}
            _, body = self._call("GET", "/reelforge/jobs?" + urlencode(query))
            d = json.loads(body)
            records = [record_from_detail(j) for j in d["jobs"]]
            return Page(records, d.get("total"), bool(d.get("totalIsLowerBound")), d.get("offset") or 0, d.get("nextToken"),
                        {j["id"]: j["prompts"] for j in d["jobs"] if isinstance(j.get("prompts"), list)})
        for name, value in (("model", model), ("q", q)):
            if value:
                raise RequestError(name, "Amazon Bedrock's ListAsyncInvokes cannot filter by model or search prompts; only a reelforge server can")
        kw: dict[str, Any] = {"maxResults": limit}
        if status:
            kw["statusEquals"] = cast(builtins.list, statuses(status))[0].bedrock
        if after:
            kw["nextToken"] = after
        r = self._boto("list_async_invokes", "ListAsyncInvokes", **kw)
        records = [record_from_summary(x) for x in r.get("asyncInvokeSummaries", [])]
        return Page(records, None, next_token=r.get("nextToken"), prompts={rec.id: [] for rec in records})  # Bedrock keeps no request

    def files(self, record: JobRecord) -> builtins.list[str]:
        """The names of a finished job's output files: as the server lists them, else from S3."""
        if self.is_reelforge:
            _, body = self._call("GET", f"/reelforge/jobs/{quote(record.id)}", ref=record.id)
            names = json.loads(body).get("files") or []
            if names:
                return names  # on the server's disk; an S3 job lists none there
        from reelforge.storage import S3Storage

        return S3Storage(self._session.client("s3")).list(record.storage_uri)

    def deliveries(self, job_id: str) -> builtins.list[dict[str, Any]]:
        if not self.is_reelforge:
            return []
        _, body = self._call("GET", f"/reelforge/jobs/{quote(job_id)}", ref=job_id)
        return json.loads(body).get("webhooks", [])

    def cancel(self, job_id: str) -> JobRecord:
        if not self.is_reelforge:
            raise ReelforgeError("Bedrock has no way to cancel an async invocation; only a reelforge server can cancel jobs")
        _, body = self._call("POST", f"/reelforge/jobs/{quote(job_id)}/cancel", ref=job_id)
        self._bump(job_id)
        return record_from_detail(json.loads(body))

    def wait_for_change(self, job_id: str, timeout: float) -> None:
        """Return when the job may have changed: on its next server-sent event, or after a poll interval."""
        follower = self._follower(job_id) if self.is_reelforge else None
        if follower is None:
            interval = self._interval.get(job_id, self.poll_min_s)
            self._interval[job_id] = min(self.poll_max_s, interval * 1.5)
            time.sleep(max(0.0, min(timeout, interval)))
            return
        with self._cond:
            self._cond.wait_for(lambda: self._version.get(job_id, 0) > self._seen.get(job_id, 0) or not follower.is_alive(), timeout)

    def download(self, uri: str, path: Path) -> Path:
        """Fetch an output: from a reelforge server's own folder when it has the file, else from S3."""
        path = Path(path)
        folder, name = uri.rsplit("/", 1)
        job_id = folder.rsplit("/", 1)[-1]
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.is_reelforge:
            from reelforge.media.files import publish, temp_path, unlink_quietly

            tmp = temp_path(path)  # unique: concurrent downloads to one path never share a temp file
            try:
                with self._open("GET", f"/reelforge/jobs/{quote(job_id)}/files/{quote(name)}") as r, open(tmp, "wb") as f:
                    while chunk := r.read(1 << 20):
                        f.write(chunk)
            except BaseException as exc:
                unlink_quietly(tmp)
                if not isinstance(exc, JobNotFoundError):
                    raise
                # not on the server's disk: it went to S3
            else:
                publish(tmp, path)
                return path
        from reelforge.storage import S3Storage

        return S3Storage(self._session.client("s3")).download(uri, path)

    def hand_off(self) -> None:
        pass  # the server runs its jobs whoever watches them

    def close(self) -> None:
        self._closed = True
        for f in list(self._followers.values()):
            f.stop()

    # --- events ---------------------------------------------------------------------------------
    def _bump(self, job_id: str) -> None:
        with self._cond:
            self._version[job_id] = self._version.get(job_id, 0) + 1
            self._cond.notify_all()

    def _follower(self, job_id: str) -> "EventFollower | None":
        f = self._followers.get(job_id)
        if f is not None and (f.is_alive() or f.fatal):
            return None if f.fatal else f
        if f is not None and time.monotonic() - f.started < 5:
            return None  # the stream keeps dropping: poll until it has been down a while
        f = EventFollower(job_id, lambda: self._open("GET", f"/reelforge/jobs/{quote(job_id)}/events", timeout=60, ref=job_id),
                          lambda: self._bump(job_id), lambda: self._closed)
        self._followers[job_id] = f
        f.start()
        return f

    # --- plumbing -------------------------------------------------------------------------------
    def _guess_arn(self, job_id: str) -> str:
        from reelforge import config

        return f"arn:aws:bedrock:{self.region}:{config.account()}:async-invoke/{job_id}"

    def _boto(self, op: str, ref: str, **kw) -> dict:
        with botocore_errors(url=self.endpoint_url or self.bedrock.meta.endpoint_url, hint=self._hint(),
                             client_error=lambda code, message: reply_error(code, message, ref)):
            return getattr(self.bedrock, op)(**kw)

    def _hint(self) -> str:
        if self.endpoint_url is None:
            return "check this machine's network"
        return "is `reelforge serve` running there? Check the endpoint URL (--endpoint, REELFORGE_ENDPOINT)"

    def _sign(self, method: str, url: str, body: bytes | None) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        creds = self._session.get_credentials()
        req = AWSRequest(method=method, url=url, data=body or b"")
        if creds is not None:
            SigV4Auth(creds.get_frozen_credentials(), SERVICE, self.region).add_auth(req)
        return {k: v for k, v in req.headers.items()}

    def _open(self, method: str, path: str, body: bytes | None = None, timeout: float = 30, ref: str | None = None):
        url = cast(str, self.endpoint_url) + path
        req = urllib.request.Request(url, data=body, method=method, headers=self._sign(method, url, body))
        where = cast(str, self.endpoint_url)
        try:
            response = _NO_REDIRECT.open(req, timeout=timeout)
            if response.status in (301, 302, 303, 307, 308) and response.headers.get("location"):
                # Files of S3 jobs: a presigned URL carries its own authorization; our signature must not follow.
                response.close()
                location = response.headers["location"]
                where = "/".join(location.split("/", 3)[:3])
                return urllib.request.urlopen(location, timeout=timeout)
            return response
        except urllib.error.HTTPError as exc:
            data = exc.read()
            try:
                message = json.loads(data)["message"]
            except (ValueError, KeyError, TypeError):
                message = data.decode("utf-8", "replace")[:500]
            raise reply_error(exc.headers.get("x-amzn-ErrorType", str(exc.code)), message, ref or path) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise unreachable(where, exc, self._hint() if where == self.endpoint_url else "") from None

    def _call(self, method: str, path: str, body: bytes | None = None, timeout: float = 30, ref: str | None = None) -> tuple[int, bytes]:
        with self._open(method, path, body, timeout, ref) as r:
            return r.status, r.read()


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # hand the 3xx back to _open


class _KeepRedirectsErrors(urllib.request.HTTPErrorProcessor):
    def http_response(self, request, response):
        if response.status in (301, 302, 303, 307, 308):
            return response
        return super().http_response(request, response)

    https_response = http_response


_NO_REDIRECT = urllib.request.build_opener(_KeepRedirects, _KeepRedirectsErrors)


class _ServerSideImage(Exception):
    """An image in S3: only the server can read it, so the local check stops there."""


def _no_s3(uri: str, bucket_owner: str | None) -> bytes:
    raise _ServerSideImage(uri)


def check_locally(model: str, request) -> None:
    """Check ``request`` against this machine's model table when it knows ``model`` (RequestError if bad).

    Used before a start that cannot be sent (no output location), so a bad request still gets its
    own error first. Models only the server knows, and images in S3, are left to the server.
    """
    from reelforge.engines.catalog import get_model
    from reelforge.request.check import check

    try:
        spec = get_model(model)
    except UnknownModelError:
        return
    parsed = request if isinstance(request, VideoRequest) else VideoRequest.from_model_input(request)
    try:
        check(parsed, spec, _no_s3)
    except _ServerSideImage:
        pass



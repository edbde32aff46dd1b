"""Helpers for the server tests: a real uvicorn server on a free loopback port, boto3 clients, moto S3."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import uvicorn
from botocore.config import Config

from reelforge.cli.serve import bind_listener
from reelforge.server.app import ServerSettings, create_app
from reelforge.server.protocol import uvicorn_config

TEST_KEYS = dict(aws_access_key_id="AKIDTEST", aws_secret_access_key="secret")
TINY = {  # reelforge.animatic-v1 at postage-stamp size: a job takes a few tens of milliseconds
    "taskType": "TEXT_VIDEO",
    "textToVideoParams": {"text": "a red ball rolls across a table"},
    "videoGenerationConfig": {"durationSeconds": 1, "fps": 8, "dimension": "128x72", "seed": 1},
}
TINY_MODEL = "reelforge.animatic-v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """``create_app(settings)`` in a background thread of this process, served as `reelforge serve`
    serves it: on a listener from ``bind_listener`` with ``uvicorn_config`` (protocol, limits)."""

    def __init__(self, settings: ServerSettings):
        self.sock = bind_listener("127.0.0.1", settings.port if settings.port not in (0, 8787) else 0)
        settings.port = self.sock.getsockname()[1]
        self.settings = settings
        self.app = create_app(settings)
        cfg = uvicorn_config(self.app, settings, "warning")
        cfg.timeout_graceful_shutdown = 2
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.url = f"http://127.0.0.1:{settings.port}"

    @property
    def runtime(self):
        return self.app.state.reelforge.runtime

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


def bedrock(url: str, **config) -> "boto3.client":
    """Unmodified boto3, as the issue asks: dummy keys, us-east-1, endpoint_url, one attempt."""
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}, **config),
        **TEST_KEYS,
    )


def start_tiny(client, bucket_uri: str = "s3://test-bucket/out", **kw) -> str:
    return client.start_async_invoke(
        modelId=TINY_MODEL, modelInput=TINY, outputDataConfig={"s3OutputDataConfig": {"s3Uri": bucket_uri}}, **kw
    )["invocationArn"]


def wait_done(client, arn: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get_async_invoke(invocationArn=arn)
        if r["status"] != "InProgress":
            return r
        if time.monotonic() > deadline:
            raise AssertionError(f"{arn} still InProgress after {timeout} s")
        time.sleep(0.05)


def http(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body bytes) of a plain unsigned request, errors included."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def expect(code: str, fn, *args, **kw) -> str:
    """Call a boto3 operation that must fail with ``code``; return the error message."""
    import pytest
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        fn(*args, **kw)
    err = info.value.response["Error"]
    assert err["Code"] == code, err
    return err["Message"]


def raw_exchange(port: int, data: bytes, *, shut_write: bool = False, timeout: float = 15) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        return read_to_close(s)


def read_to_close(s: socket.socket) -> bytes:
    """Everything ``s`` receives until the server closes (or resets) the connection."""
    chunks = []
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_reply(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One reply read from a connection that stays open: headers, then Content-Length bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        data += chunk
    status, headers, body = parse_reply(data)
    while len(body) < int(headers.get("content-length", 0)):
        chunk = s.recv(65536)
        assert chunk, "the connection closed inside the body"
        body += chunk
    return status, headers, body


def parse_reply(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one HTTP/1.1 reply."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def error_of(status_headers_body) -> tuple[int, str, str]:
    status, headers, body = status_headers_body
    lower = {k.lower(): v for k, v in headers.items()}
    return status, lower.get("x-amzn-errortype"), json.loads(body)["message"]


@contextlib.contextmanager
def moto_s3():
    """moto's S3 on a loopback port; AWS_ENDPOINT_URL_S3 and dummy credentials point boto3 at it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    names = ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(AWS_ENDPOINT_URL_S3=url, AWS_ACCESS_KEY_ID="AKIDTEST", AWS_SECRET_ACCESS_KEY="secret", AWS_DEFAULT_REGION="us-east-1")
    try:
        yield url
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class ServerProcess:
    """``reelforge serve`` as a child process (for the kill -9 test)."""

    def __init__(self, home: Path, *args: str, fd_limit: int | None = None):
        self.fd_limit = fd_limit  # RLIMIT_NOFILE (soft and hard) of the server process
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = home
        self.args = args
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServerProcess":
        env = dict(os.environ, REELFORGE_HOME=str(self.home))
        cmd = [sys.executable, "-m", "reelforge", "serve", "--port", str(self.port), "--log-level", "warning", *self.args]
        log = open(self.home / f"server-{time.time_ns()}.log", "wb")
        self.log = Path(log.name)
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._limit if self.fd_limit else None)
        deadline = time.monotonic() + 30
        while True:
            try:
                if http(self.url + "/reelforge/health")[0] == 200:
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"reelforge serve did not start; see {log.name}")
            time.sleep(0.1)

    def _limit(self) -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (self.fd_limit, self.fd_limit))

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()  # reap it: a zombie still answers kill(pid, 0)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

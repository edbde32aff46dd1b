"""`reelforge serve` against attackers and broken clients (issue 9, "Security"), on real servers.

TCP_NODELAY on the real listener; the same-origin rule and JSON bodies (a plain HTML form in
Chromium on another site); framing and the Content-Security-Policy (Chromium, S3 outputs on
moto); idle and slow clients at a low descriptor limit; image bombs; nested JSON, lone
surrogates, short and oversized bodies; full matches; dot segments in S3 outputs.
"""

from __future__ import annotations

import copy
import http.server as http_server
import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.config import Config
from PIL import Image

import gallery_browser
import reelforge
from reelforge.request import images
from reelforge.cli.serve import bind_listener, parse_size
from reelforge.errors import ImageError, RequestError
from reelforge.engines.catalog import get_model
from reelforge.request.model import VideoRequest, parse_dimension
from reelforge.request.check import check
from reelforge.server.app import ServerSettings
from reelforge.server.origin import s3_sources
from server_fixtures import (
    TEST_KEYS, TINY, TINY_MODEL, ServerProcess, ServerThread, bedrock, error_of, expect, http, moto_s3,
    parse_reply, raw_exchange, read_reply, read_to_close, start_tiny, wait_done,
)

OUTPUT_FIELD = "outputDataConfig.s3OutputDataConfig.s3Uri"
OUT = {"s3OutputDataConfig": {"s3Uri": "s3://sec-bucket/out"}}
JSON = {"Content-Type": "application/json"}
BODY = json.dumps({"modelId": TINY_MODEL, "modelInput": TINY, "outputDataConfig": OUT}).encode()
browser_missing = gallery_browser.missing()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    settings = ServerSettings(workers=1, bucket_dir=root / "b", data_dir=root / "h", read_timeout=1.0, max_body=1024 * 1024)
    with ServerThread(settings) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    if browser_missing is not None:
        pytest.skip(browser_missing)
    with gallery_browser.chromium() as context:
        yield context


def jobs(server) -> int:
    return len(server.runtime.store.list(limit=1000))


def stays(server, count: int, seconds: float = 0.3) -> None:
    """The job count stays ``count`` while the server finishes whatever the last request started."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert jobs(server) == count
        time.sleep(0.05)


# --- the listener: TCP_NODELAY ---------------------------------------------------------------------


def test_accepted_connections_have_tcp_nodelay(server):
    """Without it every reply of a kept-alive connection waits ~40 ms for the client's delayed ACK."""
    listener = bind_listener("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
    finally:
        listener.close()
    with socket.create_connection(("127.0.0.1", server.settings.port)) as c:
        c.sendall(b"GET /reelforge/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert c.recv(65536).startswith(b"HTTP/1.1 200")
        held = [p.transport.get_extra_info("socket") for p in list(server.server.server_state.connections)]
        assert held and all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in held)


# --- cross-site requests: JSON bodies and the same-origin rule --------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/json; charset=latin-1", "application/jsonp", "application/x-amz-json-1.1"],
)
def test_start_refuses_bodies_that_are_not_json(server, content_type):
    before = jobs(server)
    head = f"POST /async-invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(BODY)}\r\nConnection: close\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    status, headers, body = parse_reply(raw_exchange(server.settings.port, head.encode() + b"\r\n" + BODY))
    assert (status, headers["x-amzn-errortype"]) == (415, "ValidationException")
    assert "application/json" in json.loads(body)["message"]
    stays(server, before)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8", 'application/json; charset="utf-8"'])
def test_start_accepts_json_as_clients_send_it(server, content_type):
    status, _, body = http(server.url + "/async-invoke", "POST", BODY, {"Content-Type": content_type})
    assert status == 200 and json.loads(body)["invocationArn"]


def test_state_changing_requests_from_other_sites_are_refused(server):
    arn = start_tiny(bedrock(server.url), "s3://sec-bucket/x-site")
    job_id = arn.rsplit("/", 1)[1]
    before = jobs(server)
    foreign = [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}, {"Referer": "http://evil.example/x.html"}]
    for headers in foreign:
        status, code, msg = error_of(http(server.url + "/async-invoke", "POST", BODY, {**JSON, **headers}))
        assert (status, code) == (403, "AccessDeniedException") and "POST /async-invoke refused" in msg, headers
        status, code, _ = error_of(http(f"{server.url}/reelforge/jobs/{job_id}/cancel", "POST", b"", headers))
        assert (status, code) == (403, "AccessDeniedException"), headers
    stays(server, before)
    own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    assert http(server.url + "/async-invoke", "POST", BODY, {**JSON, **own})[0] == 200
    assert http(server.url + "/reelforge/health", headers={"Origin": "http://evil.example"})[0] == 200  # reading is not changing


class _OtherSite:
    """A page on another origin (http://localhost:PORT, the server being 127.0.0.1), as an attacker hosts one."""

    def __init__(self, pages: dict[str, str]):
        pages = {k: v.encode() for k, v in pages.items()}

        class Handler(http_server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = pages.get(self.path, b"")
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http_server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_browser_on_another_site_can_neither_start_jobs_nor_frame_the_gallery(server, browser):
    arn = start_tiny(bedrock(server.url), "s3://sec-bucket/framed")
    job_id = arn.rsplit("/", 1)[1]
    wait_done(bedrock(server.url), arn)
    # A text/plain form is what a page can send without a CORS preflight; its one field spells the JSON.
    name = BODY[:-2].decode().replace('"', "&quot;")
    form = (
        f'<form method="post" action="{server.url}/async-invoke" enctype="text/plain">'
        f'<input name="{name}" value="&quot;}}}}"></form><script>document.forms[0].submit()</script>'
    )
    frame = f'<iframe id="f" src="{server.url}/gallery/jobs/{job_id}"></iframe>'
    site = _OtherSite({"/form.html": form, "/frame.html": frame})
    before = jobs(server)
    page = browser.new_page()
    try:
        page.goto(site.url + "/form.html")
        page.wait_for_url(f"{server.url}/async-invoke")
        assert "refused" in page.content()
        stays(server, before)

        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        page.goto(site.url + "/frame.html")
        page.wait_for_timeout(500)
        child = page.frames[1]  # Chromium shows its error page in place of the gallery
        assert child.url.startswith("chrome-error://") and any("frame-ancestors 'none'" in m for m in console), (child.url, console)
    finally:
        page.close()
        site.close()


# --- framing and the Content-Security-Policy -----------------------------------------------------


def test_every_reply_forbids_framing_and_limits_what_pages_load(server):
    """Pages and files carry the page policy; JSON replies the stricter one that loads nothing; none names the server software."""
    job_id = start_tiny(bedrock(server.url), "s3://sec-bucket/csp").rsplit("/", 1)[1]
    pages = ("/", "/gallery/new", f"/gallery/jobs/{job_id}", "/gallery/jobs/zzzzzzzzzzzz", "/nothing-here")
    data = ("/reelforge/health", "/async-invoke", f"/v1/videos/video_{job_id}", "/v1/videos/video_zzzzzzzzzzzz", "/v1beta/operations/nothing")
    for path in pages + data:
        _, headers, _ = http(server.url + path, headers={"Accept": "text/html"})
        lower = {k.lower(): v for k, v in headers.items()}
        policy = lower.get("content-security-policy", "")
        assert lower.get("x-frame-options") == "DENY", path
        assert lower.get("x-content-type-options") == "nosniff", path
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy, path
        assert "server" not in lower, path
        if path in pages:
            assert lower["content-type"].startswith("text/html"), path
            for directive in ("script-src 'self'", "style-src 'self'", "connect-src 'self'", "form-action 'self'"):
                assert directive in policy, (path, directive)
            assert lower.get("referrer-policy") == "same-origin", path
        else:
            assert lower["content-type"] == "application/json", path
            assert policy == "default-src 'none'; frame-ancestors 'none'", path  # nothing in a JSON reply may load


def test_the_policy_lets_media_come_from_the_s3_endpoint():
    assert s3_sources({}) == ("https://*.amazonaws.com", "https://*.amazonaws.com.cn")
    assert s3_sources({"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000"}) == ("http://127.0.0.1:9000",)
    assert s3_sources({"AWS_ENDPOINT_URL": "https://minio.example:9443/"}) == ("https://minio.example:9443", "https://*.minio.example:9443")
    assert s3_sources({"AWS_ENDPOINT_URL_S3": "http://[::1]:9000", "AWS_ENDPOINT_URL": "http://other"}) == ("http://[::1]:9000",)


def test_browser_plays_s3_outputs_under_the_policy(tmp_path, browser):
    """The player and the posters follow the files route's redirect to S3; nothing on the pages is blocked."""
    with moto_s3():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="csp-bucket")
        with ServerThread(ServerSettings(workers=1, data_dir=tmp_path / "home")) as srv:
            job = reelforge.Client(endpoint=srv.url).start(
                reelforge.VideoRequest(text="a kite over a hill", duration_s=1, fps=8, width=128, height=72), model=TINY_MODEL, output="s3://csp-bucket/g"
            )
            job.wait(timeout=60)
            page = browser.new_page()
            blocked: list[str] = []
            page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
            page.goto(srv.url + "/")
            page.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 0 && i.src.includes('poster'))")
            page.goto(f"{srv.url}/gallery/jobs/{job.id}")
            page.wait_for_function("() => document.getElementById('player').readyState >= 1")
            assert page.evaluate("() => document.getElementById('player').duration") > 0
            page.goto(srv.url + "/gallery/new")
            page.fill("textarea[name=prompt]", "a kite")
            page.wait_for_timeout(600)  # the prompt notes are fetched from this server as you type
            page.close()
            assert not blocked, blocked


# --- idle and slow clients -------------------------------------------------------------------------


def test_idle_and_slow_clients_are_dropped_and_the_server_keeps_serving(tmp_path):
    """450 idle connections against a 400-descriptor limit, plus slow headers and slow bodies.

    Before: uvicorn never timed out a connection that had not sent a whole request, accept()
    failed at the descriptor limit and boto3 could not get an answer.
    """
    home = tmp_path / "home"
    home.mkdir()
    srv = ServerProcess(home, "--workers", "0", "--read-timeout", "1", fd_limit=400).start()
    port = srv.port
    idle, slow_heads, slow_bodies = [], [], []
    try:
        for _ in range(450):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"POST /async-invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
            slow_heads.append(s)
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"POST /async-invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"mod")
            slow_bodies.append(s)
        client = boto3.client(
            "bedrock-runtime", endpoint_url=srv.url, region_name="us-east-1",
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=5), **TEST_KEYS,
        )
        assert "asyncInvokeSummaries" in client.list_async_invokes()  # served while the flood is still open
        for s in slow_heads + slow_bodies:
            status, headers, body = parse_reply(read_to_close(s))
            assert (status, headers["x-amzn-errortype"]) == (408, "RequestTimeoutException"), body
        for s in idle:
            assert read_to_close(s) == b""  # closed: by the read timeout, or to make room for newer ones
        assert "warning: the descriptor limit is 400" in srv.log.read_text()
        arn = start_tiny(client)
        assert client.get_async_invoke(invocationArn=arn)["status"] == "InProgress"
    finally:
        for s in idle + slow_heads + slow_bodies:
            s.close()
        srv.stop()


def test_requests_beyond_the_connection_limit_get_503_in_bedrock_shape(tmp_path):
    settings = ServerSettings(workers=0, bucket_dir=tmp_path / "b", data_dir=tmp_path / "h", max_connections=2)
    with ServerThread(settings) as srv:
        job_id = start_tiny(bedrock(srv.url)).rsplit("/", 1)[1]
        streams = []
        try:
            for _ in range(2):  # two connections busy with event streams: none is idle
                s = socket.create_connection(("127.0.0.1", srv.settings.port), timeout=10)
                s.sendall(f"GET /reelforge/jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                assert s.recv(65536).startswith(b"HTTP/1.1 200")
                streams.append(s)
            status, code, msg = error_of(http(srv.url + "/reelforge/health"))
            assert (status, code) == (503, "ServiceUnavailableException") and "--max-connections" in msg
            assert "--max-connections" in expect("ServiceUnavailableException", bedrock(srv.url).list_async_invokes)
        finally:
            for s in streams:
                s.close()
        deadline = time.monotonic() + 10
        while http(srv.url + "/reelforge/health")[0] != 200:  # the streams' connections are gone: served again
            assert time.monotonic() < deadline
            time.sleep(0.05)


# --- image bombs ---------------------------------------------------------------------------------


def bilevel_png(width: int, height: int) -> bytes:
    """A few kilobytes of PNG that decode to width x height pixels (three bytes each as RGB)."""
    buf = io.BytesIO()
    Image.new("1", (width, height), 0).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def test_image_declaring_far_more_pixels_than_the_video_is_refused_before_decoding(server):
    bomb = bilevel_png(8000, 5000)  # 40 megapixels, at the absolute cap
    assert len(bomb) < 20_000
    model_input = copy.deepcopy(TINY)
    model_input["textToVideoParams"]["images"] = [{"format": "png", "source": {"bytes": images.to_base64(bomb)}}]
    before = jobs(server)
    msg = expect("ValidationException", bedrock(server.url).start_async_invoke, modelId=TINY_MODEL, modelInput=model_input, outputDataConfig=OUT)
    assert msg.startswith("textToVideoParams.images[0]: image is 8000x5000 (40.0 megapixels); for a 128x72 video the limit is 8.3 megapixels")
    assert jobs(server) == before
    with pytest.raises(ImageError, match="for a 1280x720 video the limit is 14.7 megapixels"):
        images.open_image(bomb, "f", frame=(1280, 720))


def test_pixel_limit_follows_the_frame():
    assert images.pixel_limit(1280, 720) == 16 * 1280 * 720
    assert images.pixel_limit(128, 72) == 3840 * 2160  # a 4K image is always accepted
    assert images.pixel_limit(1920, 1080) == 16 * 1920 * 1080
    assert images.pixel_limit(4096, 4096) == images.MAX_PIXELS
    phone = bilevel_png(4032, 3024)  # a 12 MP phone photo still fits a 1280x720 video
    assert images.open_image(phone, "f", frame=(1280, 720)).size == (4032, 3024)


def test_image_decodes_are_bounded_in_number(monkeypatch):
    running, most, lock = 0, 0, threading.Lock()
    real = images._load

    def counted(*args, **kw):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.05)
            return real(*args, **kw)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(images, "_load", counted)
    data = bilevel_png(64, 64)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: images.open_image(data, "f"), range(8)))
    assert most == images.DECODE_SLOTS


def test_an_uploaded_image_is_not_decoded_before_its_video_size_is_known():
    """from_source reads the header only; check() then refuses the bomb against the frame."""
    bomb = bilevel_png(8000, 5000)
    request = VideoRequest(text="a kite", image=bomb, duration_s=1, fps=8, width=128, height=72, fit="crop")
    with pytest.raises(ImageError, match="for a 128x72 video the limit"):
        check(request, get_model(TINY_MODEL))


# --- bodies: nested JSON, lone surrogates, short bodies, too-large bodies -------------------------


def test_deeply_nested_json_is_a_validation_error(server):
    for raw in (b"[" * 100_000, b'{"modelId": ' + b"[" * 50 + b"]" * 50 + b"}"):
        status, code, msg = error_of(http(server.url + "/async-invoke", "POST", raw, JSON))
        assert (status, code) == (400, "ValidationException") and "levels" in msg
    assert http(server.url + "/reelforge/health")[0] == 200


def test_lone_surrogates_are_validation_errors(server):
    before = jobs(server)
    for text in ("\\ud800", "a cat \\udfff here"):
        raw = BODY.replace(b"a red ball rolls across a table", text.encode())
        status, code, msg = error_of(http(server.url + "/async-invoke", "POST", raw, JSON))
        assert (status, code) == (400, "ValidationException") and msg.startswith("textToVideoParams.text: contains \\u")
    raw = BODY.replace(b"s3://sec-bucket/out", b"s3://sec-bucket/\\udc80")
    status, code, msg = error_of(http(server.url + "/async-invoke", "POST", raw, JSON))
    assert (status, code) == (400, "ValidationException") and msg.startswith(OUTPUT_FIELD)
    assert jobs(server) == before
    with pytest.raises(RequestError) as info:
        check(VideoRequest(text="a \ud800 cat", duration_s=1, fps=8, width=128, height=72), get_model(TINY_MODEL))
    assert info.value.field == "textToVideoParams.text" and "lone UTF-16 surrogate" in info.value.message


def test_a_body_shorter_than_its_content_length_creates_nothing(server):
    before = jobs(server)
    head = f"POST /async-invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(BODY) + 40}\r\n\r\n".encode()
    assert raw_exchange(server.settings.port, head + BODY, shut_write=True) in (b"",)  # the client left: no reply
    status, headers, _ = parse_reply(raw_exchange(server.settings.port, head + BODY))  # it stays, silent: timed out
    assert (status, headers["x-amzn-errortype"]) == (408, "RequestTimeoutException")
    stays(server, before)
    assert http(server.url + "/async-invoke", "POST", BODY, JSON)[0] == 200  # the whole body: a job


def test_a_declared_body_over_the_limit_gets_413_at_once(server):
    """No body follows the headers: the 413 must not wait for one (the 408 would come after 1 s)."""
    head = b"POST /async-invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.settings.port), timeout=15) as s:
        s.sendall(head)
        status, headers, body = read_reply(s)
    assert (status, headers["x-amzn-errortype"]) == (413, "ValidationException")
    assert "at most 1048576 bytes" in json.loads(body)["message"]


def test_boto3_sending_a_large_body_reads_the_413(server):
    """The server replies before the body is in, then drains it, so boto3 gets the reply, not a reset."""
    big = copy.deepcopy(TINY)
    big["textToVideoParams"]["text"] = "x" * (8 * 1024 * 1024)
    msg = expect("ValidationException", bedrock(server.url, parameter_validation=False).start_async_invoke, modelId=TINY_MODEL, modelInput=big, outputDataConfig=OUT)
    assert "at most 1048576 bytes" in msg


# --- full matches ------------------------------------------------------------------------------


def test_a_trailing_newline_does_not_pass_a_pattern(server):
    model_input = copy.deepcopy(TINY)
    model_input["videoGenerationConfig"]["dimension"] = "128x72\n"
    msg = expect("ValidationException", bedrock(server.url).start_async_invoke, modelId=TINY_MODEL, modelInput=model_input, outputDataConfig=OUT)
    assert msg.startswith("videoGenerationConfig.dimension: ")
    with pytest.raises(RequestError):
        parse_dimension("1280x720\n")
    with pytest.raises(RequestError):
        parse_dimension("１２８０x720")  # full-width digits are digits to \\d, not to a size
    import click

    with pytest.raises(click.BadParameter):
        parse_size("32MiB\nx")
    assert parse_size(" 32MiB ") == 32 * 1024 * 1024
    status, code, msg = error_of(http(server.url + "/async-invoke?maxResults=5%0A"))
    assert (status, code) == (400, "ValidationException") and "maxResults" in msg


# --- dot segments in outputs, on every backend ---------------------------------------------------


@pytest.mark.parametrize("uri", ["s3://sec-bucket/../../x", "s3://sec-bucket/a/./b", "s3://sec-bucket//x", "s3://sec-bucket/a/..", "s3://sec-bucket/a/../b/"])
def test_dot_segments_in_s3_outputs_are_refused_without_a_bucket_dir(tmp_path, uri):
    with ServerThread(ServerSettings(workers=0, data_dir=tmp_path / "h")) as srv:  # outputs to S3
        msg = expect("ValidationException", start_tiny, bedrock(srv.url), uri)
        assert msg.startswith(f"{OUTPUT_FIELD}: ") and "'..' path segment" in msg
        assert srv.runtime.store.list() == []


@pytest.mark.parametrize("output", ["s3://sec-bucket/../x", "s3://sec-bucket/a//b", "file:///tmp/a/../b", "file:///tmp/a/%2e%2e/b"])
def test_dot_segments_are_refused_in_the_python_api(output):
    client = reelforge.Client()
    with pytest.raises(RequestError) as info:
        client.start(reelforge.VideoRequest(text="a kite", duration_s=1, fps=8, width=128, height=72), model=TINY_MODEL, output=output)
    assert info.value.field == "output" and "'..' path segment" in str(info.value)
    assert client.jobs() == []

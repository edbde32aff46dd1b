"""Server hardening: --bucket-dir containment, NUL bytes, ARN regions, the signed payload hash,
job-log outages as 503, concurrent downloads and the DNS-rebinding Host check."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import threading
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from PIL import Image

import reelforge
from reelforge.server.app import ServerSettings
from reelforge.server.errors import error_parts
from reelforge.errors import JobStoreError
from server_fixtures import TEST_KEYS, TINY, TINY_MODEL, ServerThread, bedrock, error_of, expect, http, start_tiny, wait_done

IMAGE_FIELD = "s3Location.uri"
OUTPUT_FIELD = "outputDataConfig.s3OutputDataConfig.s3Uri"


def png(width=128, height=72) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def with_image(uri: str) -> dict:
    model_input = copy.deepcopy(TINY)
    model_input["textToVideoParams"]["images"] = [{"format": "png", "source": {"s3Location": {"uri": uri}}}]
    return model_input


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """root/b is the bucket folder; root/private is outside it; root/b/outb/link points at root/private."""
    root = tmp_path_factory.mktemp("hardening")
    (root / "private").mkdir()
    (root / "private" / "secret.png").write_bytes(png())
    bucket = root / "b" / "outb"
    bucket.mkdir(parents=True)
    (bucket / "ok.png").write_bytes(png())
    (bucket / "link").symlink_to(root / "private", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def server(layout):
    with ServerThread(ServerSettings(workers=1, bucket_dir=layout / "b", data_dir=layout / "home")) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return bedrock(server.url)


def start_with_image(client, uri):
    return client.start_async_invoke(
        modelId=TINY_MODEL, modelInput=with_image(uri), outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://outb/videos"}}
    )["invocationArn"]


# --- 1. --bucket-dir containment ------------------------------------------------------------------


def test_image_inside_the_bucket_folder_still_works(client):
    arn = start_with_image(client, "s3://outb/ok.png")
    assert wait_done(client, arn)["status"] == "Completed"


@pytest.mark.parametrize("uri", ["s3://../private/secret.png", "s3://../private/nope.png", "s3://..", "s3://OUTB/ok.png", "s3://a/ok.png"])
def test_bad_bucket_names_are_refused(client, uri):
    msg = expect("ValidationException", start_with_image, client, uri)
    assert msg.startswith(f"{IMAGE_FIELD}: ") and "bucket name" in msg


@pytest.mark.parametrize("uri", ["s3://outb/../private/secret.png", "s3://outb/./ok.png", "s3://outb//ok.png", "s3://outb/link/../ok.png"])
def test_dot_and_empty_segments_are_refused(client, uri):
    msg = expect("ValidationException", start_with_image, client, uri)
    assert msg.startswith(f"{IMAGE_FIELD}: ") and "'..' path segment" in msg


def test_outside_and_missing_read_the_same(client):
    """A symlink out of the folder: an existing and a missing file outside get the same answer as a missing one inside."""
    answers = {}
    for uri in ("s3://outb/link/secret.png", "s3://outb/link/nope.png", "s3://outb/nope.png"):
        answers[uri] = expect("ValidationException", start_with_image, client, uri).replace(uri, "URI")
    assert len(set(answers.values())) == 1, answers
    assert answers["s3://outb/nope.png"] == f"{IMAGE_FIELD}: URI does not exist in the server's bucket folder"


def test_output_through_a_symlink_is_refused(client, layout):
    msg = expect("ValidationException", start_tiny, client, "s3://outb/link/videos")
    assert msg.startswith(f"{OUTPUT_FIELD}: ") and "outside the server's bucket folder" in msg
    assert not (layout / "private" / "videos").exists()


def test_control_characters_are_400_naming_the_field(client, server):
    msg = expect("ValidationException", start_tiny, client, "s3://outb/a\x00b")
    assert msg.startswith(OUTPUT_FIELD) and "control character" in msg
    msg = expect("ValidationException", start_with_image, client, "s3://outb/a\x00b.png")
    assert msg.startswith(f"{IMAGE_FIELD}: ") and "control character" in msg
    msg = expect("ValidationException", start_with_image, client, "s3://outb/a\x01b.png")
    assert msg.startswith(f"{IMAGE_FIELD}: ")
    # the raw wire form too (a JSON \u0000 escape), not only what boto3 sends
    body = {"modelId": TINY_MODEL, "modelInput": TINY, "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://outb/x\u0000y"}}}
    status, code, msg = error_of(http(server.url + "/async-invoke", "POST", json.dumps(body).encode(), {"Content-Type": "application/json"}))
    assert (status, code) == (400, "ValidationException") and OUTPUT_FIELD in msg


def test_long_segment_is_refused_without_naming_server_paths(client, layout):
    msg = expect("ValidationException", start_tiny, client, "s3://outb/" + "a" * 300)
    assert msg.startswith(OUTPUT_FIELD) and str(layout) not in msg


# --- 3. credential-scope regions that cannot go into an ARN -----------------------------------------


@pytest.mark.parametrize("region", ["US-East-1", "my-company-on-prem-region-1"])
def test_odd_signature_regions_fall_back_to_the_configured_one(server, region):
    c = boto3.client("bedrock-runtime", endpoint_url=server.url, region_name=region, config=Config(retries={"total_max_attempts": 1}), **TEST_KEYS)
    arn = start_tiny(c, "s3://outb/regions")
    assert arn.startswith("arn:aws:bedrock:us-east-1:")
    assert c.get_async_invoke(invocationArn=arn)["invocationArn"] == arn
    assert arn in [s["invocationArn"] for s in c.list_async_invokes(maxResults=50)["asyncInvokeSummaries"]]


def test_arn_region():
    from reelforge.server.app import arn_region

    assert arn_region("eu-west-1") == "eu-west-1"
    assert arn_region("US-East-1") is None and arn_region("x" * 21) is None and arn_region("") is None and arn_region(None) is None


# --- 4. the signed payload hash must be the body's ---------------------------------------------------


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("signed")
    with ServerThread(ServerSettings(workers=0, bucket_dir=root / "b", data_dir=root / "h", auth_keys={"AKIDTEST": "secret"})) as s:
        yield s


def _signed(url: str, signed_body: bytes, content_sha256: str | None) -> dict:
    headers = {"Content-Type": "application/json"}
    if content_sha256 is not None:
        headers["X-Amz-Content-SHA256"] = content_sha256
    req = AWSRequest(method="POST", url=url, data=signed_body, headers=headers)
    SigV4Auth(Credentials("AKIDTEST", "secret"), "bedrock", "us-east-1").add_auth(req)
    assert content_sha256 is None or "x-amz-content-sha256" in req.headers["Authorization"]
    return dict(req.headers)


def test_signed_content_sha256_must_match_the_body(signed_server):
    url = signed_server.url + "/async-invoke"
    body = json.dumps({"modelId": TINY_MODEL, "modelInput": TINY, "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://outb/sig"}}}).encode()
    other = body.replace(b"a red ball", b"a red bomb")
    good = hashlib.sha256(body).hexdigest()

    assert http(url, "POST", body, _signed(url, body, good))[0] == 200  # the honest case passes
    # signed over body's hash, sent with another body: the signature alone would verify
    status, code, msg = error_of(http(url, "POST", other, _signed(url, body, good)))
    assert (status, code) == (403, "AccessDeniedException") and "x-amz-content-sha256" in msg
    for claim in ("UNSIGNED-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "0" * 64):
        status, code, _ = error_of(http(url, "POST", other, _signed(url, other, claim)))
        assert (status, code) == (403, "AccessDeniedException"), claim
    assert http(url, "POST", body, _signed(url, body, None))[0] == 200  # no such header: the body is hashed


# --- 5. job-log outages ---------------------------------------------------------------------------


def test_job_store_error_is_503():
    status, code, msg = error_parts(JobStoreError("cannot reach the PostgreSQL job store: connection refused"))
    assert (status, code) == (503, "ServiceUnavailableException") and "job log" in msg


def test_job_log_outage_is_retried_by_boto3(server, monkeypatch):
    store = server.runtime.store
    calls = []

    def flaky(real):  # the store's reads (a Get reads through view) fail twice, then work
        def read(job_id, *args):
            calls.append(job_id)
            if len(calls) < 3:
                raise JobStoreError("cannot reach the PostgreSQL job store: connection refused")
            return real(job_id, *args)

        return read

    arn = start_tiny(bedrock(server.url), "s3://outb/outage")
    for name in ("get", "view"):
        monkeypatch.setattr(store, name, flaky(getattr(store, name)))
    one_try = bedrock(server.url)
    with pytest.raises(ClientError) as info:
        one_try.get_async_invoke(invocationArn=arn)
    assert info.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    retrying = boto3.client(
        "bedrock-runtime", endpoint_url=server.url, region_name="us-east-1",
        config=Config(retries={"mode": "standard", "total_max_attempts": 3}), **TEST_KEYS,
    )
    assert retrying.get_async_invoke(invocationArn=arn)["invocationArn"] == arn
    assert len(calls) == 3


# --- 6. concurrent downloads through the server ------------------------------------------------------


def test_concurrent_client_downloads_to_one_path(server, tmp_path):
    client = reelforge.Client(endpoint=server.url)
    job = client.start(reelforge.VideoRequest(text="two readers", duration_s=1, fps=8, width=128, height=72), model=TINY_MODEL, output="s3://outb/dl")
    job.wait(timeout=60)
    target = tmp_path / "v.mp4"
    errors = []

    def fetch():
        try:
            job.download(target)
        except Exception as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert target.stat().st_size > 0
    assert os.listdir(tmp_path) == ["v.mp4"]  # no temp files left


# --- 7. DNS rebinding --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/async-invoke", "/reelforge/jobs", "/reelforge/health", "/"])
@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "[::2]:{port}"])
def test_foreign_host_is_refused_on_loopback(server, path, host):
    host = host.format(port=server.settings.port)
    status, code, msg = error_of(http(server.url + path, headers={"Host": host}))
    assert (status, code) == (403, "AccessDeniedException") and "loopback" in msg


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}", "127.0.0.2:{port}"])
def test_loopback_hosts_pass(server, host):
    status, _, body = http(server.url + "/reelforge/health", headers={"Host": host.format(port=server.settings.port)})
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_foreign_host_post_starts_nothing(server):
    before = len(server.runtime.store.list(limit=1000))
    body = json.dumps({"modelId": TINY_MODEL, "modelInput": TINY, "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://outb/x"}}}).encode()
    status, code, _ = error_of(http(server.url + "/async-invoke", "POST", body, {"Host": "evil.example:8787", "Origin": "http://evil.example:8787"}))
    assert (status, code) == (403, "AccessDeniedException")
    assert len(server.runtime.store.list(limit=1000)) == before


def test_host_check_is_off_when_not_bound_to_loopback(tmp_path):
    settings = ServerSettings(workers=0, host="0.0.0.0", bucket_dir=tmp_path / "b", data_dir=tmp_path / "h")
    with ServerThread(settings) as s:  # the fixture still listens on 127.0.0.1
        assert http(s.url + "/reelforge/health", headers={"Host": "videos.example.com"})[0] == 200


def test_bucket_dir_path_mapping_unit(tmp_path):
    """local_path_for directly: the same rules without a server."""
    from reelforge.errors import RequestError
    from reelforge.server.app import ServerState

    state = ServerState.__new__(ServerState)
    state.settings = ServerSettings(bucket_dir=tmp_path / "b")
    (tmp_path / "b").mkdir()
    assert state.local_path_for("s3://outb/a/b") == (tmp_path / "b" / "outb" / "a" / "b").resolve()
    for bad in ("s3://../x", "s3://outb/../../x", "s3://outb/a\x00b", "s3://outb/a\nb", "s3:///x", "file:///etc/passwd", "s3://ab"):
        with pytest.raises(RequestError) as info:
            state.local_path_for(bad, "some.field")
        assert info.value.field == "some.field"
    assert Path(state.map_output("s3://outb/v").removeprefix("file://")).is_relative_to((tmp_path / "b").resolve())


def test_allowed_host_adds_a_proxy_name(tmp_path):
    settings = ServerSettings(workers=0, bucket_dir=tmp_path / "b", data_dir=tmp_path / "h", allowed_hosts=("videos.example.com",))
    with ServerThread(settings) as s:
        assert http(s.url + "/reelforge/health", headers={"Host": "videos.example.com"})[0] == 200
        assert http(s.url + "/reelforge/health", headers={"Host": "Videos.Example.com:443"})[0] == 200
        assert http(s.url + "/reelforge/health", headers={"Host": "evil.example"})[0] == 403


def test_serve_cli_checks_region():
    from click.testing import CliRunner

    from reelforge.cli.serve import serve

    got = CliRunner().invoke(serve, ["--region", "US-East-1", "--port", "0"])
    assert got.exit_code == 2 and "--region" in got.output

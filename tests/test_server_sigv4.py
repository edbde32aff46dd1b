"""SigV4 verification with --auth-keys: boto3's own signatures pass, anything else gets a 403."""

from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import reelforge
from reelforge.server.app import ServerSettings
from reelforge.server.sigv4 import load_keys
from server_fixtures import TINY_MODEL, ServerThread, error_of, http, start_tiny, wait_done


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sigv4")
    keys = {"AKIDTEST": "secret", "AKIDOTHER": "other-secret"}
    with ServerThread(ServerSettings(workers=1, bucket_dir=root / "b", data_dir=root / "h", auth_keys=keys)) as s:
        yield s


def client(url, akid="AKIDTEST", secret="secret", **kw):
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name=kw.pop("region", "us-east-1"),
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}),
        **kw,
    )


def test_correct_keys_pass_every_operation(server):
    c = client(server.url)
    arn = start_tiny(c, clientRequestToken="sig/token:with=odd+chars", tags=[{"key": "a b", "value": "c/d"}])
    assert wait_done(c, arn)["status"] == "Completed"
    for i in range(2):
        start_tiny(c)
    since = datetime(2020, 1, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)  # colons and dots in the query
    pages = list(c.get_paginator("list_async_invokes").paginate(submitTimeAfter=since, sortOrder="Ascending", PaginationConfig={"PageSize": 1}))
    assert len(pages) == 3  # later pages carry a nextToken in the signed query string
    assert start_tiny(client(server.url, "AKIDOTHER", "other-secret", region="eu-west-1")).startswith("arn:aws:bedrock:eu-west-1:")
    assert start_tiny(client(server.url, aws_session_token="session-token")).startswith("arn:")


def test_wrong_credentials_get_403(server):
    for c in (client(server.url, secret="wrong"), client(server.url, akid="AKIDUNKNOWN")):
        for call in (lambda: start_tiny(c), lambda: c.list_async_invokes(), lambda: c.get_async_invoke(invocationArn="arn:aws:bedrock:us-east-1:000000000000:async-invoke/abcdefabcdef")):
            with pytest.raises(ClientError) as info:
                call()
            assert info.value.response["Error"]["Code"] == "AccessDeniedException"
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unsigned_and_tampered_requests_get_403(server):
    status, code, msg = error_of(http(server.url + "/async-invoke"))
    assert (status, code) == (403, "AccessDeniedException") and "Signature Version 4" in msg
    status, code, _ = error_of(http(server.url + "/reelforge/jobs"))
    assert (status, code) == (403, "AccessDeniedException")
    assert http(server.url + "/reelforge/health")[0] == 200  # liveness stays open

    c = client(server.url)
    captured = {}
    c.meta.events.register("before-send.bedrock-runtime.StartAsyncInvoke", lambda request, **_: captured.setdefault("r", request) and None)
    start_tiny(c)
    req = captured["r"]
    tampered = req.body.replace(b"a red ball", b"a red bomb")
    status, code, msg = error_of(http(req.url, "POST", tampered, dict(req.headers)))
    assert (status, code) == (403, "AccessDeniedException") and "does not match" in msg


def test_reelforge_client_signs_extension_calls(server):
    c = reelforge.Client(endpoint=server.url, aws_access_key_id="AKIDTEST", aws_secret_access_key="secret")
    job = c.start(reelforge.VideoRequest(text="a signed kite", duration_s=1, fps=8, width=128, height=72), model=TINY_MODEL, output="s3://sig-bucket/x")
    assert job.wait(timeout=60).status is reelforge.JobStatus.COMPLETED
    assert c._backend.is_reelforge and job.id in c._backend._followers


def test_load_keys(tmp_path):
    f = tmp_path / "keys"
    f.write_text("# comment\nAKID1:s1\n\nAKID2 : s2\n")
    assert load_keys(f, "AKID3:s3,AKID4:s4") == {"AKID1": "s1", "AKID2": "s2", "AKID3": "s3", "AKID4": "s4"}
    f.write_text("no-colon\n")
    with pytest.raises(ValueError, match="line 1"):
        load_keys(f)

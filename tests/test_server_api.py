"""The Bedrock wire protocol against a real server on loopback, driven by unmodified boto3."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from botocore.exceptions import ClientError

from reelforge.server.app import ServerSettings
from server_fixtures import TINY, TINY_MODEL, ServerThread, bedrock, error_of, expect, http, parse_reply, raw_exchange, start_tiny, wait_done

NOVA_INPUT = {
    "taskType": "TEXT_VIDEO",
    "textToVideoParams": {"text": "Closeup of a large seashell in the sand. Camera zoom in."},
    "videoGenerationConfig": {"durationSeconds": 6, "fps": 24, "dimension": "1280x720", "seed": 0},
}
OUT = {"s3OutputDataConfig": {"s3Uri": "s3://test-bucket/out"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    with ServerThread(ServerSettings(workers=2, bucket_dir=root / "buckets", data_dir=root / "home")) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return bedrock(server.url)


@pytest.fixture
def idle_server(tmp_path):
    """A server with no workers: jobs stay InProgress until the test runs them."""
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "buckets", data_dir=tmp_path / "home")) as s:
        yield s


# --- start / get --------------------------------------------------------------------------------


def test_start_get_shapes(client, server):
    arn = start_tiny(client, "s3://test-bucket/out/", clientRequestToken="tok-shapes", tags=[{"key": "team", "value": "video"}])
    assert arn.startswith("arn:aws:bedrock:us-east-1:000000000000:async-invoke/")
    job_id = arn.rsplit("/", 1)[-1]
    assert len(job_id) == 12 and job_id.isalnum() and job_id.lower() == job_id
    r = wait_done(client, arn)
    assert r["status"] == "Completed"
    assert r["invocationArn"] == arn
    assert r["modelArn"] == f"arn:aws:bedrock:us-east-1::foundation-model/{TINY_MODEL}"
    assert r["clientRequestToken"] == "tok-shapes"
    assert r["outputDataConfig"] == {"s3OutputDataConfig": {"s3Uri": f"s3://test-bucket/out/{job_id}"}}  # trailing / dropped
    assert r["submitTime"].tzinfo is not None and r["endTime"] >= r["submitTime"]
    assert "failureMessage" not in r
    folder = server.settings.bucket_dir / "test-bucket" / "out" / job_id
    assert {"output.mp4", "manifest.json", "video-generation-status.json"} <= {p.name for p in folder.iterdir()}
    status = json.loads((folder / "video-generation-status.json").read_text())
    assert status["fullVideo"] == {"status": "SUCCESS", "location": f"s3://test-bucket/out/{job_id}/output.mp4"}
    raw = http(f"{server.url}/async-invoke/{arn.replace(':', '%3A').replace('/', '%2F')}")
    assert raw[0] == 200 and json.loads(raw[2])["submitTime"].endswith("Z")


def test_region_comes_from_the_signature(server):
    west = __import__("boto3").client(
        "bedrock-runtime", endpoint_url=server.url, region_name="us-west-2", aws_access_key_id="AKIDTEST", aws_secret_access_key="secret"
    )
    arn = start_tiny(west)
    assert arn.startswith("arn:aws:bedrock:us-west-2:")
    assert west.get_async_invoke(invocationArn=arn)["modelArn"].startswith("arn:aws:bedrock:us-west-2::foundation-model/")


def test_foundation_model_arn_accepted_as_model_id(client):
    arn = client.start_async_invoke(
        modelId=f"arn:aws:bedrock:us-east-1::foundation-model/{TINY_MODEL}", modelInput=TINY, outputDataConfig=OUT
    )["invocationArn"]
    assert client.get_async_invoke(invocationArn=arn)["modelArn"].endswith(f"foundation-model/{TINY_MODEL}")


def test_bucket_owner_is_recorded(client):
    out = {"s3OutputDataConfig": {"s3Uri": "s3://test-bucket/owned", "bucketOwner": "123456789012"}}
    arn = client.start_async_invoke(modelId=TINY_MODEL, modelInput=TINY, outputDataConfig=out)["invocationArn"]
    assert client.get_async_invoke(invocationArn=arn)["outputDataConfig"]["s3OutputDataConfig"]["bucketOwner"] == "123456789012"


# --- idempotency --------------------------------------------------------------------------------


def test_same_token_same_body_same_job(client, server):
    a = start_tiny(client, clientRequestToken="same-token-1")
    b = start_tiny(client, clientRequestToken="same-token-1")
    assert a == b
    with ThreadPoolExecutor(8) as pool:  # retries racing each other still make one job
        arns = set(pool.map(lambda _: start_tiny(client, clientRequestToken="same-token-2"), range(16)))
    assert len(arns) == 1
    tokens = [r.client_token for r in server.runtime.store.list(limit=1000)]
    assert tokens.count("same-token-1") == 1 and tokens.count("same-token-2") == 1


def test_same_token_other_body_conflicts(client):
    start_tiny(client, clientRequestToken="conflict-token")
    other = dict(TINY, textToVideoParams={"text": "a different prompt"})
    msg = expect(
        "ConflictException",
        client.start_async_invoke,
        modelId=TINY_MODEL,
        modelInput=other,
        outputDataConfig=OUT,
        clientRequestToken="conflict-token",
    )
    assert "conflict-token" in msg


# --- validation: every §1.6 error path that applies -------------------------------------------


@pytest.mark.parametrize(
    "change, needle",
    [
        (dict(modelInput=json.dumps(NOVA_INPUT)), "must be a JSON object"),
        (dict(outputDataConfig={"s3OutputDataConfig": {"s3Uri": "http://x"}}), "s3Uri"),
        (dict(outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://Bad_Bucket/x"}}), "regular expression"),
        (dict(outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bucket/../escape"}}), "'..'"),
        (dict(outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bucket/a\nb"}}), "regular expression"),
        (dict(modelId="acme.video-9000"), "unknown model"),
        (dict(modelId="bad model id!"), "modelId"),
        (dict(modelInput=dict(NOVA_INPUT, videoGenerationConfig=dict(NOVA_INPUT["videoGenerationConfig"], durationSeconds=12))), "durationSeconds"),
        (dict(modelInput=dict(NOVA_INPUT, videoGenerationConfig=dict(NOVA_INPUT["videoGenerationConfig"], dimension="1920x1080"))), "dimension"),
        (dict(modelInput=dict(NOVA_INPUT, videoGenerationConfig=dict(NOVA_INPUT["videoGenerationConfig"], seed=2147483647))), "seed"),
        (dict(modelInput=dict(NOVA_INPUT, textToVideoParams={"text": "x" * 513})), "512"),
        (
            dict(
                modelInput={
                    "taskType": "MULTI_SHOT_AUTOMATED",
                    "multiShotAutomatedParams": {"text": "a long story"},
                    "videoGenerationConfig": {"durationSeconds": 12, "fps": 24, "dimension": "1280x720"},
                }
            ),
            "multi-shot needs amazon.nova-reel-v1:1",
        ),
        (dict(tags=[{"key": "bad#key", "value": "v"}]), "tags.1.member.key"),
        (dict(tags=[{"key": "k", "value": "semi;colon"}]), "tags.1.member.value"),
        (dict(outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bucket", "kmsKeyId": "not-a-key"}}), "kmsKeyId"),
        (dict(outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bucket", "bucketOwner": "12345678901x"}}), "bucketOwner"),
        (dict(clientRequestToken="has space"), "clientRequestToken"),
    ],
)
def test_start_validation(client, change, needle):
    kw = dict(modelId="amazon.nova-reel-v1:0", modelInput=NOVA_INPUT, outputDataConfig=OUT, **{})
    kw.update(change)
    msg = expect("ValidationException", client.start_async_invoke, **kw)
    assert needle in msg


def test_valid_kms_key_is_refused_clearly(client):
    key = "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012"
    msg = expect(
        "ValidationException",
        client.start_async_invoke,
        modelId=TINY_MODEL,
        modelInput=TINY,
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bucket", "kmsKeyId": key}},
    )
    assert "does not encrypt outputs with a KMS key" in msg


def test_get_unknown_and_malformed_arn(client):
    expect("ResourceNotFoundException", client.get_async_invoke, invocationArn="arn:aws:bedrock:us-east-1:000000000000:async-invoke/zzzzzzzzzzzz")
    arn = start_tiny(client)
    other_account = arn.replace(":000000000000:", ":111111111111:")
    expect("ResourceNotFoundException", client.get_async_invoke, invocationArn=other_account)
    assert "invocationArn" in expect("ValidationException", client.get_async_invoke, invocationArn="not-an-arn")


def test_list_parameter_errors(server):
    loose = bedrock(server.url, parameter_validation=False)  # let out-of-range values reach the server
    for bad in (0, 1001):
        assert "maxResults" in expect("ValidationException", loose.list_async_invokes, maxResults=bad)
    assert "statusEquals" in expect("ValidationException", loose.list_async_invokes, statusEquals="COMPLETED")
    assert "sortOrder" in expect("ValidationException", loose.list_async_invokes, sortOrder="Sideways")
    assert "sortBy" in expect("ValidationException", loose.list_async_invokes, sortBy="Name")
    assert "nextToken" in expect("ValidationException", loose.list_async_invokes, nextToken="garbage!")
    forged = base64.urlsafe_b64encode(b'{"v":1,"t":"1.0","id":"x","q":"0000"}').decode()
    assert "other filters" in expect("ValidationException", loose.list_async_invokes, nextToken=forged)
    status, code, msg = error_of(http(server.url + "/async-invoke?submitTimeAfter=yesterday"))
    assert (status, code) == (400, "ValidationException") and "submitTimeAfter" in msg


def test_body_that_is_not_json(server):
    status, code, msg = error_of(http(server.url + "/async-invoke", "POST", b"{not json", {"Content-Type": "application/json"}))
    assert (status, code) == (400, "ValidationException") and "JSON" in msg


def test_body_size_limit(tmp_path):
    settings = ServerSettings(workers=0, bucket_dir=tmp_path / "b", data_dir=tmp_path / "h", max_body=64 * 1024)
    with ServerThread(settings) as s:
        big = dict(NOVA_INPUT, textToVideoParams={"text": "x" * 100_000})
        with pytest.raises(ClientError) as info:
            bedrock(s.url).start_async_invoke(modelId="amazon.nova-reel-v1:0", modelInput=big, outputDataConfig=OUT)
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
        assert info.value.response["Error"]["Code"] == "ValidationException"
        assert "at most 65536 bytes" in info.value.response["Error"]["Message"]


# --- list: every filter, both orders, the paginator ---------------------------------------------


def _ids(summaries):
    return [s["invocationArn"].rsplit("/", 1)[-1] for s in summaries]


def test_list_filters_and_paginator(idle_server):
    client = bedrock(idle_server.url)
    rt = idle_server.runtime
    t0 = datetime.now(timezone.utc)
    arns = []
    for i in range(7):
        arns.append(start_tiny(client))
        time.sleep(0.01)
    ids = [a.rsplit("/", 1)[-1] for a in arns]
    # halfway between the 4th and 5th submits: stored times are finer than the microseconds botocore sends
    t_mid = datetime.fromtimestamp((rt.get(ids[3]).submit_time + rt.get(ids[4]).submit_time) / 2, timezone.utc)

    everything = client.list_async_invokes()["asyncInvokeSummaries"]
    assert _ids(everything) == ids[::-1]  # newest first by default
    assert _ids(client.list_async_invokes(sortOrder="Ascending", sortBy="SubmissionTime")["asyncInvokeSummaries"]) == ids
    after = client.list_async_invokes(submitTimeAfter=t_mid)["asyncInvokeSummaries"]
    assert set(_ids(after)) == set(ids[4:])
    before = client.list_async_invokes(submitTimeBefore=t_mid, submitTimeAfter=t0)["asyncInvokeSummaries"]
    assert set(_ids(before)) == set(ids[:4])

    # one completed, one canceled (reads as Failed), the rest InProgress
    assert http(f"{idle_server.url}/reelforge/jobs/{ids[1]}/cancel", "POST")[0] == 200
    assert rt.run_one()  # runs the oldest queued: ids[0]
    by = {w: _ids(client.list_async_invokes(statusEquals=w)["asyncInvokeSummaries"]) for w in ("Completed", "Failed", "InProgress")}
    assert by == {"Completed": [ids[0]], "Failed": [ids[1]], "InProgress": ids[2:][::-1]}
    failed = client.get_async_invoke(invocationArn=arns[1])
    assert failed["status"] == "Failed" and failed["failureMessage"] == "Canceled."
    assert json.loads(http(f"{idle_server.url}/reelforge/jobs/{ids[1]}")[2])["status"] == "CANCELED"

    for order, expected in (("Descending", ids[::-1]), ("Ascending", ids)):
        pages = list(client.get_paginator("list_async_invokes").paginate(sortOrder=order, PaginationConfig={"PageSize": 2}))
        tokens = [p["nextToken"] for p in pages if "nextToken" in p]
        assert [len(p["asyncInvokeSummaries"]) for p in pages] == [2, 2, 2, 1]
        assert len(tokens) == len(set(tokens)) == 3
        assert [i for p in pages for i in _ids(p["asyncInvokeSummaries"])] == expected

    page = client.list_async_invokes(maxResults=2, statusEquals="InProgress")
    nxt = client.list_async_invokes(maxResults=2, statusEquals="InProgress", nextToken=page["nextToken"])
    assert _ids(page["asyncInvokeSummaries"]) + _ids(nxt["asyncInvokeSummaries"]) == ids[2:][::-1][:4]
    msg = expect("ValidationException", client.list_async_invokes, maxResults=2, statusEquals="Completed", nextToken=page["nextToken"])
    assert "other filters" in msg


# --- extensions ---------------------------------------------------------------------------------


def test_extensions_detail_events_files(idle_server):
    client = bedrock(idle_server.url)
    arn = start_tiny(client)
    job_id = arn.rsplit("/", 1)[-1]
    health = json.loads(http(idle_server.url + "/reelforge/health")[2])
    assert health["service"] == "reelforge" and health["status"] == "ok"
    d = json.loads(http(f"{idle_server.url}/reelforge/jobs/{job_id}")[2])
    assert d["status"] == "QUEUED" and d["progress"] == 0 and d["modelInput"] == TINY

    events: list[dict] = []

    def follow():
        import urllib.request

        with urllib.request.urlopen(f"{idle_server.url}/reelforge/jobs/{job_id}/events", timeout=30) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            for line in r:
                if line.startswith(b"data:"):
                    events.append(json.loads(line[5:]))

    t = threading.Thread(target=follow)
    t.start()
    time.sleep(0.3)
    idle_server.runtime.run_one()
    t.join(30)
    assert not t.is_alive(), "the event stream did not end with the job"
    assert events[0]["status"] == "QUEUED" and events[-1]["status"] == "COMPLETED"

    d = json.loads(http(f"{idle_server.url}/reelforge/jobs/{job_id}")[2])
    assert "output.mp4" in d["files"] and d["progress"] == 1.0
    whole = http(f"{idle_server.url}/reelforge/jobs/{job_id}/files/output.mp4")
    part = http(f"{idle_server.url}/reelforge/jobs/{job_id}/files/output.mp4", headers={"Range": "bytes=0-99"})
    assert whole[0] == 200 and part[0] == 206 and part[2] == whole[2][:100]
    assert part[1]["content-range"] == f"bytes 0-99/{len(whole[2])}"
    listed = json.loads(http(f"{idle_server.url}/reelforge/jobs?status=completed")[2])["jobs"]
    assert [j["id"] for j in listed] == [job_id]


def test_cancel_extension(idle_server):
    client = bedrock(idle_server.url)
    arn = start_tiny(client)
    job_id = arn.rsplit("/", 1)[-1]
    status, _, body = http(f"{idle_server.url}/reelforge/jobs/{job_id}/cancel", "POST")
    assert status == 200 and json.loads(body)["status"] == "CANCELED"
    got = client.get_async_invoke(invocationArn=arn)
    assert got["status"] == "Failed" and got["failureMessage"] == "Canceled." and "endTime" in got


# --- the error shape, on every route ------------------------------------------------------------


def _assert_bedrock_shape(status, headers, raw, want_status, want_code, what):
    lower = {k.lower(): v for k, v in headers.items()}
    assert (status, lower.get("x-amzn-errortype")) == (want_status, want_code), (what, raw)
    assert lower["content-type"] == "application/json" and lower.get("x-amzn-requestid"), what
    doc = json.loads(raw)
    assert list(doc) == ["message"] and doc["message"], what


def test_error_shape_on_every_route(server, tmp_path):
    bad_id = "zzzzzzzzzzzz"
    json_body = {"Content-Type": "application/json"}
    arn = start_tiny(bedrock(server.url))
    job_id = arn.rsplit("/", 1)[-1]
    wait_done(bedrock(server.url), arn)
    size = len(http(f"{server.url}/reelforge/jobs/{job_id}/files/output.mp4")[2])
    cases = [
        ("POST", "/async-invoke", b"[]", json_body, 400, "ValidationException"),
        ("POST", "/async-invoke", b"[]", {"Content-Type": "text/plain"}, 415, "ValidationException"),
        ("POST", "/async-invoke", b"[]", {**json_body, "Origin": "http://evil.example"}, 403, "AccessDeniedException"),
        ("GET", "/async-invoke?maxResults=0", None, {}, 400, "ValidationException"),
        ("GET", "/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A000000000000%3Aasync-invoke%2F" + bad_id, None, {}, 404, "ResourceNotFoundException"),
        ("GET", "/async-invoke/", None, {}, 400, "ValidationException"),
        ("GET", "/reelforge/jobs?limit=0", None, {}, 400, "ValidationException"),
        ("GET", "/reelforge/jobs?status=DONE", None, {}, 400, "ValidationException"),
        ("GET", f"/reelforge/jobs/{bad_id}", None, {}, 404, "ResourceNotFoundException"),
        ("POST", f"/reelforge/jobs/{bad_id}/cancel", b"", {}, 404, "ResourceNotFoundException"),
        ("GET", f"/reelforge/jobs/{bad_id}/events", None, {}, 404, "ResourceNotFoundException"),
        ("GET", f"/reelforge/jobs/{bad_id}/files/output.mp4", None, {}, 404, "ResourceNotFoundException"),
        ("GET", f"/reelforge/jobs/{job_id}/files/output.mp4", None, {"Range": "bytes=abc"}, 400, "ValidationException"),
        ("GET", f"/reelforge/jobs/{job_id}/files/output.mp4", None, {"Range": "items=0-1"}, 400, "ValidationException"),
        ("GET", f"/reelforge/jobs/{job_id}/files/output.mp4", None, {"Range": f"bytes={size + 10}-"}, 416, "ValidationException"),
        ("GET", "/gallery/events?ids=not-an-id", None, {}, 400, "ValidationException"),
        ("GET", "/gallery/static/nothing.css", None, {}, 404, "UnknownOperationException"),
        ("GET", "/no/such/route", None, {}, 404, "UnknownOperationException"),
        ("DELETE", "/async-invoke", None, {}, 405, "UnknownOperationException"),
        ("PUT", f"/async-invoke/{arn}", b"{}", json_body, 405, "UnknownOperationException"),
        ("POST", "/reelforge/health", b"", {}, 405, "UnknownOperationException"),
        ("DELETE", f"/reelforge/jobs/{job_id}", None, {}, 405, "UnknownOperationException"),
    ]
    for method, path, body, headers, want_status, want_code in cases:
        status, got, raw = http(server.url + path, method, body, headers)
        _assert_bedrock_shape(status, got, raw, want_status, want_code, (method, path, headers))
    status, got, _ = http(f"{server.url}/reelforge/jobs/{job_id}/files/output.mp4", headers={"Range": f"bytes={size + 10}-"})
    assert got["content-range"] == f"bytes */{size}"  # the 416 still says how long the file is
    for name in ("..%2Fsecret", ".hidden", "%2Fetc%2Fpasswd"):  # nothing outside the job's own files
        status, code, _ = error_of(http(f"{server.url}/reelforge/jobs/{job_id}/files/{name}"))
        assert status == 404 and code in ("ResourceNotFoundException", "UnknownOperationException")

    # the replies uvicorn's protocol writes itself: bad HTTP, headers too large, a request that never completes
    port = server.settings.port
    raws = [
        (b"GARBAGE\r\n\r\n", 400, "ValidationException"),
        (b"GET /reelforge/health HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n", 400, "ValidationException"),
        (b"GET /reelforge/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431, "ValidationException"),
        (b"GET /reelforge/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000, 431, "ValidationException"),
    ]
    for data, want_status, want_code in raws:
        status, got, raw = parse_reply(raw_exchange(port, data))
        _assert_bedrock_shape(status, got, raw, want_status, want_code, data[:40])


def test_error_shape_of_timeouts_and_overload(tmp_path):
    settings = ServerSettings(workers=0, bucket_dir=tmp_path / "b", data_dir=tmp_path / "h", read_timeout=0.5, max_connections=1)
    with ServerThread(settings) as s:
        port = s.settings.port
        status, got, raw = parse_reply(raw_exchange(port, b"GET /reelforge/health HTTP/1.1\r\nHost: 127.0.0"))
        _assert_bedrock_shape(status, got, raw, 408, "RequestTimeoutException", "slow headers")
        job_id = start_tiny(bedrock(s.url)).rsplit("/", 1)[-1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as busy:  # the one connection, busy with a stream
            busy.sendall(f"GET /reelforge/jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            assert busy.recv(65536).startswith(b"HTTP/1.1 200")
            _assert_bedrock_shape(*http(s.url + "/reelforge/health"), 503, "ServiceUnavailableException", "overload")


def test_gallery_form_errors_are_pages(server):
    """A form the server cannot read, or a post no form makes, gets a page, not an API error."""
    page = {"Accept": "text/html"}
    broken = http(server.url + "/gallery/new", "POST", b"--x\r\nbroken", {"Content-Type": "multipart/form-data", **page})
    nowhere = http(server.url + "/gallery/jobs/zzzzzzzzzzzz/image", "POST", b"a=b", {"Content-Type": "application/x-www-form-urlencoded"})
    for (status, headers, body), want in ((broken, 400), (nowhere, 405)):
        lower = {k.lower(): v for k, v in headers.items()}
        assert status == want and lower["content-type"].startswith("text/html") and "x-amzn-errortype" not in lower
        assert "Nothing was started" in body.decode() or "nothing was started" in body.decode()
        assert "UnknownOperationException" not in body.decode()

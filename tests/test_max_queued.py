"""`reelforge serve --max-queued N`: beyond N queued jobs each wire answers with its own quota error.

Driven with the unmodified clients at their default retry settings (what a user sees): boto3 does not
retry Bedrock's 400 ServiceQuotaExceededException, openai retries its 429 (honouring Retry-After)
before raising RateLimitError, google-genai raises a ClientError 429 RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import boto3
import openai
import pytest
from click.testing import CliRunner
from google import genai
from google.genai import errors, types

from reelforge.cli.main import cli
from reelforge.server.app import ServerSettings
from server_fixtures import TEST_KEYS, TINY, TINY_MODEL, ServerThread, http
from wire_fixtures import job_count

LIMIT = 2


@pytest.fixture
def full(tmp_path):
    """A server with no workers (jobs stay queued) and --max-queued 2, already holding two queued jobs."""
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "b", data_dir=tmp_path / "h", max_queued=LIMIT)) as s:
        client = default_boto3(s.url)
        s.arns = [start(client, token=f"tok-{i}") for i in range(LIMIT)]
        yield s


def default_boto3(url: str):
    return boto3.client("bedrock-runtime", endpoint_url=url, region_name="us-east-1", **TEST_KEYS)  # default retries


def start(client, token: str | None = None) -> str:
    kw = {"clientRequestToken": token} if token else {}
    return client.start_async_invoke(modelId=TINY_MODEL, modelInput=TINY, outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://b-1/out"}}, **kw)["invocationArn"]


def test_bedrock_gets_service_quota_exceeded_and_a_repeated_token_still_answers(full):
    client = default_boto3(full.url)
    with pytest.raises(client.exceptions.ServiceQuotaExceededException) as info:
        start(client)
    reply = info.value.response
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 400 and reply["ResponseMetadata"]["RetryAttempts"] == 0
    assert "--max-queued" in reply["Error"]["Message"] and "2 jobs" in reply["Error"]["Message"]
    assert job_count(full) == LIMIT
    # a retry of an accepted request (same token) records nothing new, so it is answered as before
    assert start(client, token="tok-0") == full.arns[0]
    # a canceled job no longer waits: there is room for one more
    status, _, _ = http(f"{full.url}/reelforge/jobs/{full.arns[1].rsplit('/', 1)[1]}/cancel", "POST")
    assert status == 200
    start(client)
    assert job_count(full) == LIMIT + 1


def test_openai_gets_429_rate_limit_error_after_its_retries(full):
    c = openai.OpenAI(base_url=full.url + "/v1", api_key="sk-test", max_retries=1)
    with pytest.raises(openai.RateLimitError) as info:
        c.videos.create(prompt="a lighthouse at dusk", seconds="1", size="1280x720")
    err = info.value
    assert err.status_code == 429 and err.response.headers["retry-after"] == "1"
    assert err.body["type"] == "rate_limit_error" and err.body["code"] == "rate_limit_exceeded" and "--max-queued" in err.body["message"]
    assert job_count(full) == LIMIT


def test_google_gets_429_resource_exhausted(full):
    c = genai.Client(vertexai=True, api_key="vx-key", http_options=types.HttpOptions(base_url=full.url))
    with pytest.raises(errors.ClientError) as info:
        c.models.generate_videos(model="veo-3.1-generate-001", source=types.GenerateVideosSource(prompt="a kite"),
                                 config=types.GenerateVideosConfig(duration_seconds=1, fps=8))
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED" and "--max-queued" in info.value.message
    assert job_count(full) == LIMIT


def test_without_the_option_nothing_is_refused(tmp_path):
    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "b", data_dir=tmp_path / "h")) as s:
        client = default_boto3(s.url)
        for _ in range(LIMIT + 2):
            start(client)
        assert job_count(s) == LIMIT + 2


def test_the_option_takes_a_positive_number():
    result = CliRunner().invoke(cli, ["serve", "--max-queued", "0"])
    assert result.exit_code == 2 and "--max-queued" in result.output and "0" in result.output


def test_a_full_queue_still_answers_the_token_of_a_pruned_job(tmp_path):
    """Admission's token check reads the retention tombstones too: the repeat is answered with the old job, not a quota error."""
    import time

    from reelforge.jobs.retention import prune

    with ServerThread(ServerSettings(workers=0, bucket_dir=tmp_path / "b", data_dir=tmp_path / "h", max_queued=LIMIT)) as s:
        client = default_boto3(s.url)
        old = start(client, token="tok-old")
        assert http(f"{s.url}/reelforge/jobs/{old.rsplit('/', 1)[1]}/cancel", "POST")[0] == 200
        assert prune(s.runtime.store, 1, now=time.time() + 60).ids == [old.rsplit("/", 1)[1]]
        [start(client, token=f"tok-{i}") for i in range(LIMIT)]
        with pytest.raises(client.exceptions.ServiceQuotaExceededException):
            start(client, token="tok-new")
        assert start(client, token="tok-old") == old

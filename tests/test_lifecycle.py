"""Model lifecycle of forwarded Bedrock ids, read through botocore's Stubber: ACTIVE, LEGACY with a date, end of life."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import Stubber
from click.testing import CliRunner

from reelforge.cli.main import cli
from reelforge.errors import RequestError
from reelforge.engines.forward import Forwards
from reelforge.server.gallery.views import detail
from reelforge.jobs.open import open_store
from reelforge.jobs.lifecycle import LifecycleReader
from reelforge.jobs.runtime import Runtime

LUMA = {"prompt": "a paper boat on a pond", "duration": "5s", "resolution": "540p"}
FORWARD = "luma.ray-v2:0=bedrock:aws;region=us-west-2;output=s3://my-videos/luma"


class StubbedBedrock:
    """A client factory whose boto3 ``bedrock`` client answers GetFoundationModel from queued replies."""

    def __init__(self, *lifecycles: dict):
        self.client = boto3.client("bedrock", region_name="us-west-2", aws_access_key_id="AKID", aws_secret_access_key="secret")
        self.stub = Stubber(self.client)
        for life in lifecycles:
            self.stub.add_response(
                "get_foundation_model",
                {"modelDetails": {"modelArn": "arn:aws:bedrock:us-west-2::foundation-model/luma.ray-v2:0", "modelId": "luma.ray-v2:0", "modelLifecycle": life}},
                {"modelIdentifier": "luma.ray-v2:0"},
            )
        self.stub.activate()
        self.calls = 0

    def __call__(self, forward):
        self.calls += 1
        assert forward.region == "us-west-2" and forward.url == "aws"
        return self.client


def runtime(tmp_path, factory, entry=FORWARD) -> Runtime:
    reader = LifecycleReader(client_factory=factory, cache_path=tmp_path / "lifecycle.json")
    return Runtime(open_store(str(tmp_path / "jobs.sqlite3")), forwards=Forwards.parse([entry]), lifecycle=reader)


def days(n: int) -> datetime:
    return datetime.now(timezone.utc) + timedelta(days=n)


def test_active_records_no_warning_and_the_reading_is_cached(tmp_path):
    factory = StubbedBedrock({"status": "ACTIVE", "startOfLifeTime": days(-300)})
    rt = runtime(tmp_path, factory)
    job, _ = rt.submit("luma.ray-v2:0", LUMA, tmp_path / "out")
    assert "lifecycle" not in job.metadata and job.engine == "bedrock" and job.engine_options["url"] == "aws"
    rt.submit("luma.ray-v2:0", LUMA, tmp_path / "out")  # within the cache's time: no second read
    assert factory.calls == 1
    factory.stub.assert_no_pending_responses()
    cached = json.loads((tmp_path / "lifecycle.json").read_text())
    assert [v["status"] for v in cached.values()] == ["ACTIVE"]


def test_legacy_with_a_date_warns_in_the_jobs_metadata_and_the_gallery(tmp_path):
    eol = days(40)
    rt = runtime(tmp_path, StubbedBedrock({"status": "LEGACY", "legacyTime": days(-5), "endOfLifeTime": eol}))
    job, _ = rt.submit("luma.ray-v2:0", LUMA, tmp_path / "out")
    life = job.metadata["lifecycle"]
    assert life["status"] == "LEGACY" and life["endOfLife"] == eol.date().isoformat()
    assert eol.date().isoformat() in life["warning"] and "GetFoundationModel at Amazon Bedrock" in life["source"]
    assert rt.get(job.id).metadata["lifecycle"] == life  # recorded with the job
    assert life["warning"] in detail(rt.get(job.id)).warnings


def test_past_end_of_life_is_refused_naming_the_local_model(tmp_path):
    rt = runtime(tmp_path, StubbedBedrock({"status": "LEGACY", "legacyTime": days(-200), "endOfLifeTime": days(-1)}))
    with pytest.raises(RequestError) as info:
        rt.submit("luma.ray-v2:0", LUMA, tmp_path / "out")
    assert info.value.field == "modelId"
    assert "reached end of life" in info.value.message and "reelforge.animatic-v1" in info.value.message and days(-1).date().isoformat() in info.value.message
    assert rt.store.list() == []  # refused before anything was recorded


def test_nova_reel_forwarded_to_aws_without_a_live_reading_uses_the_documented_end_of_life(tmp_path):
    def unreachable(forward):
        raise ConnectionError("no network in tests")

    rt = runtime(tmp_path, unreachable, "amazon.nova-reel-v1:1=bedrock:aws;output=s3://my-videos/nova")
    nova = {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a kite"},
            "videoGenerationConfig": {"durationSeconds": 6, "fps": 24, "dimension": "1280x720"}}
    with pytest.raises(RequestError, match="end of life on Bedrock on 2026-09-30"):
        rt.submit("amazon.nova-reel-v1:1", nova, tmp_path / "out")


def test_models_shows_nova_reel_end_of_life_with_its_source():
    rows = {r["model"]: r for r in json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)}
    for mid in ("amazon.nova-reel-v1:0", "amazon.nova-reel-v1:1"):
        life = rows[mid]["lifecycle"]
        assert life["state"] == "end_of_life" and life["endOfLife"] == "2026-09-30" and "docs.aws.amazon.com" in life["source"]
    text = CliRunner().invoke(cli, ["models"]).output
    assert "end of life since 2026-09-30" in text
    assert "lifecycle" not in rows["reelforge.animatic-v1"]


def test_the_cli_warns_after_submitting_to_a_legacy_model(monkeypatch, reelforge_home):
    """The last reading (lifecycle.json in the data dir) is LEGACY: `generate` prints the warning; nothing is sent anywhere (--no-wait, no worker)."""
    import time

    from reelforge.jobs.lifecycle import Lifecycle, LifecycleReader
    from reelforge.engines.forward import parse_entry

    forward = parse_entry(FORWARD)
    eol = days(30).date().isoformat()
    reader = LifecycleReader(client_factory=lambda f: pytest.fail("read live despite a fresh reading"), cache_path=reelforge_home / "lifecycle.json")
    reader._store(reader._key(forward), Lifecycle("luma.ray-v2:0", "LEGACY", eol, None, "GetFoundationModel at Amazon Bedrock", time.time()))
    monkeypatch.setenv("REELFORGE_FORWARD", FORWARD)
    result = CliRunner().invoke(cli, ["generate", "a kite", "--model", "luma.ray-v2:0", "--duration", "5", "--no-wait"])
    assert result.exit_code == 0, result.output
    assert f"warning: luma.ray-v2:0 is LEGACY on Bedrock, end of life {eol}" in result.stderr

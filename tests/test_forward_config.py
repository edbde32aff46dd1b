"""Forward configuration: --forward / REELFORGE_FORWARD entries, where they are shown, and dry-run prices."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from reelforge.cli.main import cli
from reelforge.errors import ConfigError
from reelforge.engines.forward import Forward, Forwards, parse_entry
from reelforge.server.app import ServerSettings
from server_fixtures import ServerThread, http


def test_both_forms_and_their_options():
    b = parse_entry("luma.ray-v2:0=bedrock:aws;region=us-west-2;output=s3://my-bucket/videos/;concurrency=3")
    assert (b.kind, b.url, b.upstream_model, b.region, b.output, b.concurrency) == ("bedrock", "aws", "luma.ray-v2:0", "us-west-2", "s3://my-bucket/videos", 3)
    o = parse_entry("wan=openai-videos:http://gpu-1:8000/v1/#Wan-AI/Wan2.2-T2V-A14B;key-env=GPU_KEY;usd-per-s=0.012@2026-11-30")
    assert (o.kind, o.url, o.upstream_model, o.key_env, o.usd_per_s) == ("openai-videos", "http://gpu-1:8000/v1", "Wan-AI/Wan2.2-T2V-A14B", "GPU_KEY", (0.012, "2026-11-30"))
    assert parse_entry(o.entry) == o and parse_entry(b.entry) == b  # an entry as written reads back the same
    assert parse_entry("x=openai-videos:https://h").upstream_model == "x"  # no #UPSTREAM_MODEL: the id itself


@pytest.mark.parametrize(
    "entry, needle",
    [
        ("luma.ray-v2:0", "is not MODEL_ID=KIND:URL"),
        ("m=comfy:http://h", "allowed kinds: bedrock, openai-videos"),
        ("m=openai-videos:aws", "only bedrock takes"),
        ("m=bedrock:ftp://h", "write aws or http(s)://"),
        ("m=bedrock:http://h#other", "only openai-videos takes"),
        ("m=bedrock:http://h;speed=9", "allowed options:"),
        ("m=bedrock:http://h;concurrency=0", "1 to 1000"),
        ("m=bedrock:http://h;usd-per-s=0.1", "PRICE@YYYY-MM-DD"),
        ("m=bedrock:aws;output=bucket", "s3://bucket/prefix"),
    ],
)
def test_bad_entries_name_the_flag_and_the_allowed_forms(entry, needle):
    with pytest.raises(ConfigError) as info:
        parse_entry(entry, "--forward")
    text = str(info.value)
    assert text.startswith("--forward: ") and needle in text and "allowed forms: MODEL_ID=bedrock:URL or MODEL_ID=openai-videos:URL#UPSTREAM_MODEL" in text


def test_the_variable_is_space_separated_and_flags_win(monkeypatch):
    monkeypatch.setenv("REELFORGE_FORWARD", "a=bedrock:http://one  b=openai-videos:http://two#B")
    f = Forwards.from_env(["a=bedrock:http://three"])
    assert f.get("a").url == "http://three" and f.get("b").upstream_model == "B"
    monkeypatch.setenv("REELFORGE_FORWARD", "a=bedrock")
    with pytest.raises(ConfigError, match="^REELFORGE_FORWARD: "):
        Forwards.from_env()


def test_a_workers_entry_adds_credentials_and_limits_only():
    recorded = Forward.from_route("m", parse_entry("m=openai-videos:http://up#M").route())
    own = parse_entry("m=openai-videos:http://up#M;key-env=K;concurrency=9")
    merged = recorded.overlay(own)
    assert (merged.url, merged.upstream_model, merged.key_env, merged.concurrency) == ("http://up", "M", "K", 9)
    assert not recorded.same_place(parse_entry("m=openai-videos:http://elsewhere#M"))
    assert "key" not in json.dumps(parse_entry("m=openai-videos:http://up#M;key-env=K").route())  # credentials are never recorded


def test_serve_and_worker_refuse_a_bad_entry_naming_the_flag():
    for command in (["serve", "--port", "0"], ["worker", "--until-idle"]):
        result = CliRunner().invoke(cli, [*command, "--forward", "m=bedrock:nope"])
        assert result.exit_code == 2 and "--forward" in result.output and "allowed forms" in result.output, result.output


def test_models_shows_forwarded_ids_and_their_engine_kind(monkeypatch):
    monkeypatch.setenv("REELFORGE_FORWARD", "cfg.test-wan=openai-videos:http://127.0.0.1:9#Wan2.2")
    rows = {r["model"]: r for r in json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)}
    row = rows["cfg.test-wan"]
    assert row["engine"] == "openai-videos" and row["forward"]["url"] == "http://127.0.0.1:9" and row["ready"]
    text = CliRunner().invoke(cli, ["models"]).output
    assert "forwarded to http://127.0.0.1:9 as Wan2.2" in text


def test_health_names_ids_and_kinds_and_urls_only_to_authenticated_callers(tmp_path):
    fw = Forwards.parse(["cfg.h=openai-videos:http://127.0.0.1:9#H"])
    with ServerThread(ServerSettings(workers=0, data_dir=tmp_path / "h", forwards=fw, auth_keys={"AKID": "s3cret"})) as s:
        anonymous = json.loads(http(s.url + "/reelforge/health")[2])
        assert anonymous["forwards"] == [{"modelId": "cfg.h", "engine": "openai-videos"}]
        wrong = json.loads(http(s.url + "/reelforge/health", headers={"Authorization": "Bearer nope"})[2])
        assert "url" not in wrong["forwards"][0]
        keyed = json.loads(http(s.url + "/reelforge/health", headers={"Authorization": "Bearer s3cret"})[2])
        assert keyed["forwards"][0]["url"] == "http://127.0.0.1:9" and keyed["forwards"][0]["upstreamModel"] == "H"


@pytest.mark.parametrize(
    "entry, model, cost, basis",
    [
        ("cfg.priced=openai-videos:http://127.0.0.1:9;usd-per-s=0.05@2026-11-30", "cfg.priced", 0.3, "as of 2026-11-30"),
        ("cfg.unpriced=openai-videos:http://127.0.0.1:9", "cfg.unpriced", None, "price unknown"),
        ("luma.ray-v2:0=bedrock:aws;output=s3://b-1/v", "luma.ray-v2:0", None, "price unknown"),
    ],
)
def test_dry_run_prices_forwarded_jobs_where_a_price_is_known(monkeypatch, entry, model, cost, basis):
    monkeypatch.setenv("REELFORGE_FORWARD", entry)
    duration = "5" if model.startswith("luma") else "6"
    out = CliRunner().invoke(cli, ["generate", "a kite", "--model", model, "--duration", duration, "--resolution", "1280x720", "--dry-run", "--json"])
    assert out.exit_code == 0, out.output
    row = json.loads(out.output)["estimates"][0]
    assert row["where"].startswith("forwarded (") and row["cost_usd"] == (None if cost is None else pytest.approx(cost))
    assert basis in row["cost_basis"]
    assert json.loads(out.output)["submitted"] == 0

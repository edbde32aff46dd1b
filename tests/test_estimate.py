"""Dry-run estimates: Nova Reel's price per second, local timings measured or learned, nothing recorded."""

import json
import time
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from reelforge.cli.main import cli
from reelforge.errors import RequestError
from reelforge.workflows.estimate import MEASURED, bedrock_latency_s, estimate, local_rate, makespan_s
from reelforge.jobs.record import JobStatus
from reelforge.request.model import VideoRequest

THREE_NOVA_SHOTS = "shots:\n  - A harbour at dawn.\n  - A boat leaves the harbour.\n  - The boat on the open sea.\n"


def run(*args, ok=True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_generate_dry_run_prices_6_s_of_nova_reel_at_48_cents_and_records_no_job(reelforge_home):
    result = run("generate", "A seashell on the sand. Camera zoom in.", "--dry-run")
    assert "Amazon Bedrock" in result.stdout and "$0.48" in result.stdout
    assert "third-party figure as of 2026-07-10" in result.stdout
    assert "dry run: nothing was submitted" in result.stdout
    assert not (reelforge_home / "jobs.sqlite3").exists() and not (reelforge_home / "outputs").exists()


def test_shots_dry_run_prices_18_s_at_1_44(tmp_path, reelforge_home):
    board = tmp_path / "b.yaml"
    board.write_text(THREE_NOVA_SHOTS)
    doc = json.loads(run("shots", str(board), "--dry-run", "--json").stdout)
    bedrock, here = doc["estimates"]
    assert (bedrock["where"], bedrock["shots"], bedrock["seconds"], bedrock["cost_usd"]) == ("Amazon Bedrock", 3, 18, 1.44)
    assert (here["where"], here["cost_usd"], here["frames"]) == ("here (animatic-v2)", 0.0, 432)
    assert doc["submitted"] == 0 and not (reelforge_home / "jobs.sqlite3").exists()


def test_batch_dry_run_sums_lines_and_records_no_job(tmp_path, reelforge_home):
    path = tmp_path / "b.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"A kite number {i}."}) + "\n" for i in range(3)))
    result = run("batch", str(path), "--dry-run", "-c", "2")
    assert "$1.44" in result.stdout and "2 at a time" in result.stdout
    assert not (reelforge_home / "jobs.sqlite3").exists()
    assert not (tmp_path / "b.jsonl.report.csv").exists() and list(tmp_path.glob("*.report.*")) == []


@pytest.mark.parametrize("model,seconds,usd", [
    ("amazon.nova-reel-v1:0", 6, 0.48), ("amazon.nova-reel-v1:1", 6, 0.48), ("amazon.nova-reel-v1:1", 120, 9.60),
])
def test_nova_price_per_second(model, seconds, usd):
    task = {} if seconds == 6 else {"task_type": "MULTI_SHOT_AUTOMATED"}
    rows = estimate(VideoRequest(text="A harbour at dawn.", duration_s=seconds, **task), model)
    assert rows[0].where == "Amazon Bedrock" and rows[0].cost_usd == usd
    assert rows[1].cost_usd == 0.0  # rendered here: no charge


def test_on_an_aws_endpoint_only_bedrock_counts():
    aws = "https://bedrock-runtime.us-east-1.amazonaws.com"
    rows = estimate(VideoRequest(text="A harbour."), "amazon.nova-reel-v1:1", endpoint=aws)
    assert [r.where for r in rows] == ["Amazon Bedrock"]
    assert rows[0].time_s == pytest.approx(90) and bedrock_latency_s(120) == pytest.approx(930)
    with pytest.raises(RequestError, match="not an Amazon Bedrock model id"):
        estimate(VideoRequest(text="A harbour.", fps=8, width=128, height=72), "reelforge.animatic-v1", endpoint=aws)


def test_local_time_comes_from_the_measured_figure_then_from_the_job_log(monkeypatch):
    req = VideoRequest(text="A harbour.", duration_s=6, fps=24)
    row = estimate(req, "reelforge.animatic-v1")[0]
    rate = MEASURED["animatic"]
    assert row.time_s == pytest.approx(rate.overhead_s + 144 * rate.seconds_per_frame(1280, 720))
    assert row.time_basis.startswith("measured: bench/bench_estimate.py")

    # completed jobs at a similar size that took twice the measured time teach a factor of 2
    slow = 2 * 144 * rate.seconds_per_frame(1280, 720)
    store = FakeStore([job(req, {"engine": "animatic", "timings": {"render_encode_s": slow}}),
                       job(req, {"engine": "animatic", "render_encode_s": slow}),
                       job(req.model_copy(update={"width": 160, "height": 90}), {"engine": "animatic", "render_encode_s": 50.0})])
    row = estimate(req, "reelforge.animatic-v1", store=store)[0]
    assert row.time_s == pytest.approx(rate.overhead_s + slow)
    assert row.time_basis == "learned from 2 completed jobs in the job log"  # the 160x90 job is too small to count

    monkeypatch.setenv("REELFORGE_S_PER_FRAME", "animatic=0.5")
    assert estimate(req, "reelforge.animatic-v1", store=store)[0].time_s == pytest.approx(72.0)
    monkeypatch.setenv("REELFORGE_S_PER_FRAME", "diffusers=3")
    rate_d, basis = local_rate("diffusers")
    assert rate_d.base_s == 3 and basis == "3 s/frame (override)"
    monkeypatch.delenv("REELFORGE_S_PER_FRAME")
    assert local_rate("diffusers") == (None, "unknown: no measurement for the diffusers engine yet (a completed job teaches it)")


def test_learned_from_a_real_completed_job(reelforge_home):
    run("generate", "A red kite.", "--model", "reelforge.animatic-v1", "--duration", "1", "--fps", "8", "--resolution", "128x72")
    result = run("generate", "A blue kite.", "--model", "reelforge.animatic-v1", "--duration", "2", "--fps", "8", "--resolution", "128x72", "--dry-run", "--json")
    (row,) = json.loads(result.stdout)["estimates"]
    assert row["time_basis"] == "learned from 1 completed job in the job log" and row["time_s"] > 0


def test_makespan_of_a_batch():
    assert makespan_s([1.0] * 10, 4) == 3.0
    assert makespan_s([5.0, 1.0, 1.0], 2) == 5.0
    assert makespan_s([], 3) == 0.0


class FakeStore:
    def __init__(self, records):
        self.records = records

    def list(self, statuses=None, limit=100):
        return [r for r in self.records if statuses is None or r.status in statuses][:limit]


def job(request, metadata):
    return SimpleNamespace(model_id="reelforge.animatic-v1", model_input=request.to_model_input(), metadata=metadata,
                           status=JobStatus.COMPLETED, start_time=time.time() - 1, end_time=time.time())

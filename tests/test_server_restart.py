"""kill -9 of the server in the middle of a job, then a restart on the same data dir."""

from __future__ import annotations

import json
import time

from reelforge.media.video import probe
from server_fixtures import TINY_MODEL, ServerProcess, bedrock, http, wait_done

SLOW = {  # a few seconds of work, so the kill lands mid-job
    "taskType": "TEXT_VIDEO",
    "textToVideoParams": {"text": "a slow dolly shot along a foggy pier"},
    "videoGenerationConfig": {"durationSeconds": 12, "fps": 24, "dimension": "1280x720", "seed": 5},
}


def test_kill_9_mid_job_then_restart(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    buckets = tmp_path / "buckets"
    first = ServerProcess(home, "--workers", "1", "--bucket-dir", str(buckets)).start()
    try:
        client = bedrock(first.url)
        arn = client.start_async_invoke(modelId=TINY_MODEL, modelInput=SLOW, outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://restart-bucket"}})["invocationArn"]
        job_id = arn.rsplit("/", 1)[-1]
        deadline = time.monotonic() + 60
        while True:
            d = json.loads(http(f"{first.url}/reelforge/jobs/{job_id}")[2])
            if d["status"] == "RUNNING" and d["progress"] > 0.05:
                break
            assert d["status"] in ("QUEUED", "RUNNING") and time.monotonic() < deadline, d
            time.sleep(0.05)
        first.kill9()
    finally:
        first.stop()

    second = ServerProcess(home, "--workers", "1", "--bucket-dir", str(buckets)).start()
    try:
        client = bedrock(second.url)
        final = wait_done(client, arn, timeout=120)
        d = json.loads(http(f"{second.url}/reelforge/jobs/{job_id}")[2])
        assert final["status"] == "Completed", final.get("failureMessage")
        assert d["attempts"] == 2 and d["status"] == "COMPLETED"
        assert final["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"] == f"s3://restart-bucket/{job_id}"
        assert (buckets / "restart-bucket" / job_id / "output.mp4").is_file()
        assert probe(buckets / "restart-bucket" / job_id / "output.mp4").frames == 12 * 24
        assert list((buckets / "restart-bucket" / job_id).glob(".*")) == []  # the killed attempt's temp files are gone
    finally:
        second.stop()

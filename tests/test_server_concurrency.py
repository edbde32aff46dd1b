"""100 starts from 8 threads at once: 100 distinct jobs, every one completes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from reelforge.server.app import ServerSettings
from server_fixtures import ServerThread, bedrock, start_tiny


def test_100_concurrent_starts(tmp_path):
    settings = ServerSettings(workers=2, bucket_dir=tmp_path / "buckets", data_dir=tmp_path / "home")
    with ServerThread(settings) as server:
        clients = [bedrock(server.url) for _ in range(8)]  # made here: boto3 client creation is not thread-safe

        def start(i: int) -> str:
            return start_tiny(clients[i % 8], f"s3://load-bucket/run/{i % 3}")

        with ThreadPoolExecutor(8) as pool:
            arns = list(pool.map(start, range(100)))
        assert len(set(arns)) == 100

        client = clients[0]
        deadline = time.monotonic() + 120
        while True:
            pages = client.get_paginator("list_async_invokes").paginate(PaginationConfig={"PageSize": 30})
            summaries = [s for p in pages for s in p["asyncInvokeSummaries"]]
            done = [s for s in summaries if s["status"] != "InProgress"]
            if len(done) == 100 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert {s["invocationArn"] for s in summaries} == set(arns)
        assert [s["status"] for s in summaries].count("Completed") == 100, [s.get("failureMessage") for s in done if s["status"] == "Failed"][:3]
        for arn in arns[:5]:
            s3_uri = client.get_async_invoke(invocationArn=arn)["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
            bucket_path = s3_uri.removeprefix("s3://")
            assert (settings.bucket_dir / bucket_path / "output.mp4").is_file()

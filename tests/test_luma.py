"""Luma Ray2 (`luma.ray-v2:0`) on reelforge serve with unmodified boto3: served by the local model, bad input refused before recording."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from reelforge.engines import luma
from reelforge import media
from reelforge.server.app import ServerSettings
from server_fixtures import ServerThread, bedrock, expect, wait_done
from wire_fixtures import gradient, job_count, png

OUT = {"s3OutputDataConfig": {"s3Uri": "s3://luma-bucket/out"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("luma")
    with ServerThread(ServerSettings(workers=1, bucket_dir=root / "buckets", data_dir=root / "home")) as s:
        yield s


def start(client, model_input: dict) -> str:
    return client.start_async_invoke(modelId=luma.MODEL_ID, modelInput=model_input, outputDataConfig=OUT)["invocationArn"]


def output(server, arn: str) -> media.VideoInfo:
    job_id = arn.rsplit("/", 1)[1]
    return media.probe(server.settings.bucket_dir / "luma-bucket" / "out" / job_id / "output.mp4")


def test_a_luma_request_runs_on_the_local_model(server):
    client = bedrock(server.url)
    arn = start(client, {"prompt": "a paper boat on a pond", "aspect_ratio": "9:16", "duration": "5s", "resolution": "540p", "loop": True})
    done = wait_done(client, arn)
    assert done["status"] == "Completed", done
    assert done["modelArn"].endswith("foundation-model/luma.ray-v2:0")
    info = output(server, arn)
    assert (info.width, info.height, info.fps, info.frames) == (540, 960, 24.0, 5 * 24)
    job = server.runtime.get(arn.rsplit("/", 1)[1])
    assert job.wire_request["modelInput"]["aspect_ratio"] == "9:16"  # the Luma request as sent, for forwarding and the manifest
    assert any(n.startswith("loop:") for n in job.metadata["notes"])  # what the local model could not honour is said


def test_defaults_are_lumas(server):
    client = bedrock(server.url)
    job = server.runtime.get(start(client, {"prompt": "a kite"}).rsplit("/", 1)[1])
    cfg = job.model_input["videoGenerationConfig"]
    assert (cfg["dimension"], cfg["durationSeconds"], cfg["fps"]) == ("1280x720", 5, 24)
    assert "notes" not in job.metadata


def test_keyframe_frame0_is_the_first_frame(server):
    client = bedrock(server.url)
    img = gradient(960, 540)
    url = "data:image/png;base64," + base64.b64encode(png(img)).decode()
    arn = start(client, {"prompt": "a gradient", "resolution": "540p", "keyframes": {"frame0": {"type": "image", "url": url}}})
    assert wait_done(client, arn)["status"] == "Completed"
    first = media.read_frame(server.settings.bucket_dir / "luma-bucket" / "out" / arn.rsplit("/", 1)[1] / "output.mp4", 0)
    assert np.abs(first.astype(int) - np.asarray(img, dtype=int)).mean() < 12


@pytest.mark.parametrize(
    "model_input, field, needle",
    [
        ({}, "prompt", "is required"),
        ({"prompt": ""}, "prompt", "1 to 5000"),
        ({"prompt": "x" * 5001}, "prompt", "1 to 5000"),
        ({"prompt": "a", "aspect_ratio": "2:1"}, "aspect_ratio", '"16:9"'),
        ({"prompt": "a", "duration": 5}, "duration", '"5s", "9s"'),
        ({"prompt": "a", "duration": "6s"}, "duration", '"5s", "9s"'),
        ({"prompt": "a", "resolution": "1080p"}, "resolution", '"540p", "720p"'),
        ({"prompt": "a", "loop": "yes"}, "loop", "true or false"),
        ({"prompt": "a", "seed": 3}, "seed", "allowed: prompt, aspect_ratio"),
        ({"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a"}}, "taskType", "Nova Reel"),
        ({"prompt": "a", "keyframes": {"frame2": {"type": "image", "url": "s3://b/x.png"}}}, "keyframes.frame2", "frame0, frame1"),
        ({"prompt": "a", "keyframes": {"frame0": {"type": "image", "url": "http://x/y.png"}}}, "keyframes.frame0.url", "s3://"),
        ({"prompt": "a", "keyframes": {"frame0": {"type": "video", "url": "s3://b/x.png"}}}, "keyframes.frame0.type", '"image"'),
        ({"prompt": "a", "keyframes": {"frame1": {"type": "image", "url": "s3://b/x.png"}}}, "keyframes.frame1", "local model"),
    ],
)
def test_bad_luma_input_is_a_validation_exception_naming_the_field(server, model_input, field, needle):
    client = bedrock(server.url)
    before = job_count(server)
    message = expect("ValidationException", start, client, model_input)
    assert message.startswith(f"{field}: ") and needle in message, message
    assert job_count(server) == before


def test_every_size_is_even_and_the_short_side_is_the_resolution():
    for ratio in luma.ASPECT_RATIOS:
        for res, lines in luma.RESOLUTIONS.items():
            w, h = luma.size(ratio, res)
            a, b = (int(p) for p in ratio.split(":"))
            assert w % 2 == 0 and h % 2 == 0 and min(w, h) == lines and abs(w / h - a / b) < 0.01, (ratio, res, w, h)

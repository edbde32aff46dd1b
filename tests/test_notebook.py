"""The seed notebook's four functions, copied verbatim, against `reelforge serve` with outputs in S3.

Changes from the notebook, as the issue allows: `endpoint_url` on both clients and a 1 s sleep
in `monitor_video_generation` instead of 60 s. S3 is moto's server on loopback; the reelforge
server writes there through plain boto3 because AWS_ENDPOINT_URL_S3 points at it.
"""

from __future__ import annotations

import time

import boto3
import pytest

from reelforge.media.video import probe
from reelforge.server.app import ServerSettings
from server_fixtures import ServerThread, moto_s3

try:
    from IPython.display import Video
except ImportError:  # IPython is not a dependency; the notebook only hands the path to it

    class Video:  # noqa: D101 - a stand-in with the same constructor
        def __init__(self, data=None, **kw):
            self.filename = data


# ---- copied verbatim from seed/text-to-video-notebook.md (only the sleep shortened) ----------


def build_model_input(prompt, image_base64=None, duration=6, fps=24, resolution="1280x720", seed=0):
    """
    Constructs the input payload for the Bedrock video generation model.

    Args:
        prompt (str): Text prompt for video generation.
        image_base64 (str): Base64 encoded image data.
        duration (int): Duration of the video in seconds.
        fps (int): Frames per second for the video.
        resolution (str): Resolution of the video.
        seed (int): Seed for deterministic generation.
    
    Returns:
        dict: The formatted model input payload.
    """
    output = {
        "taskType": "TEXT_VIDEO",
        "textToVideoParams": {
            "text": prompt,
            # "images": image_parameter
        },
        "videoGenerationConfig": {
            "durationSeconds": duration,
            "fps": fps,
            "dimension": resolution,
            "seed": seed
        },
    }
    if image_base64:
        output['textToVideoParams']['images'] = [{"format": "png", "source": {"bytes": image_base64}}]
    return output


def start_video_generation(bedrock_runtime, bucket, model_input):
    """
    Starts a video generation job using Bedrock's Text-to-Video model.

    Args:
        bedrock_runtime: Initialized Bedrock Runtime client.
        bucket (str): S3 bucket for storing output video.
        prompt (str): Text prompt for video generation.

    Returns:
        dict: Invocation response from the Bedrock API.
    """

    try:
        # Start the asynchronous video generation job
        invocation = bedrock_runtime.start_async_invoke(
            modelId="amazon.nova-reel-v1:0",
            modelInput=model_input,
            outputDataConfig={
                "s3OutputDataConfig": {"s3Uri": f"s3://{bucket}"}
            }
        )
        print("Video generation job started successfully.")
        return invocation
    except Exception as e:
        error_message = e.response["Error"]["Message"] if "Error" in e.response else str(e)
        print(f"Error starting video generation: {error_message}")
        raise


def monitor_video_generation(bedrock_runtime, invocation_arn):
    """
    Monitors the status of the video generation job until completion.

    Args:
        bedrock_runtime: Initialized Bedrock Runtime client.
        invocation_arn (str): ARN of the video generation invocation.

    Returns:
        str: S3 URI of the generated video.
    """
    status = "InProgress"
    while status not in ["Completed", "Failed"]:
        response = bedrock_runtime.get_async_invoke(invocationArn=invocation_arn)
        status = response["status"]

        if status == "Completed":
            s3_uri = response["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
            print(f"Video generation completed. Video available at: {s3_uri}/output.mp4")
            return f"{s3_uri}/output.mp4"
        elif status == "InProgress":
            print(f"Job {invocation_arn} is in progress. Started at: {response['submitTime']}")
        elif status == "Failed":
            print(f"Job {invocation_arn} failed. Reason: {response['failureMessage']}")
            raise RuntimeError("Video generation failed.")
        time.sleep(1)  # the notebook: time.sleep(60)


def download_and_display_video(s3_client, bucket, video_uri, output_dir):
    """
    Downloads the generated video from S3 and displays it in the notebook.

    Args:
        s3_client: Initialized S3 client.
        bucket (str): S3 bucket containing the video.
        video_uri (str): URI of the video in S3.

    Returns:
        Video: IPython Video object for display.
    """
    local_path = f"{output_dir}/{video_uri.split('/')[3]}.mp4"
    print(local_path)
    s3_client.download_file(bucket, "/".join(video_uri.split("/")[3:]), local_path)
    print(f"Video downloaded to {local_path}.")
    return Video(local_path)


# ---- the notebook's workflow -------------------------------------------------------------------


@pytest.fixture
def s3_and_server(tmp_path):
    with moto_s3() as s3_url:
        with ServerThread(ServerSettings(workers=1, data_dir=tmp_path / "home")) as server:
            yield s3_url, server


@pytest.mark.slow
def test_notebook_runs_unchanged(s3_and_server, tmp_path, capsys):
    s3_url, server = s3_and_server
    BUCKET = "notebook-videos"
    OUTPUT_DIR = str(tmp_path / "videos")

    bedrock_runtime = boto3.client("bedrock-runtime", endpoint_url=server.url)
    s3_client = boto3.client("s3", endpoint_url=s3_url)
    s3_client.create_bucket(Bucket=BUCKET)  # the notebook's bucket exists before it runs
    from pathlib import Path

    Path(OUTPUT_DIR).mkdir(parents=True, exist_ok=True)

    PROMPT = "Closeup of a large seashell in the sand, gentle waves flow around the shell. Camera zoom in."
    model_input = build_model_input(PROMPT)
    invocation_response = start_video_generation(bedrock_runtime, BUCKET, model_input)
    invocation_arn = invocation_response["invocationArn"]
    video_s3_uri = monitor_video_generation(bedrock_runtime, invocation_arn)
    local_path = download_and_display_video(s3_client, BUCKET, video_s3_uri, OUTPUT_DIR)

    job_id = invocation_arn.rsplit("/", 1)[-1]
    assert video_s3_uri == f"s3://{BUCKET}/{job_id}/output.mp4"
    assert local_path.filename == f"{OUTPUT_DIR}/{job_id}.mp4"
    info = probe(local_path.filename)
    assert (info.frames, info.width, info.height, round(info.fps)) == (144, 1280, 720, 24)
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {f"{job_id}/{n}" for n in ("output.mp4", "manifest.json", "video-generation-status.json")} <= keys
    out = capsys.readouterr().out
    assert "Video generation job started successfully." in out and "Video downloaded to" in out

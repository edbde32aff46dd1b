"""`reelforge generate PROMPT`: one video from a prompt."""

from __future__ import annotations

from pathlib import Path

import click

from reelforge import config
from reelforge.cli.common import OUTPUT_HELP, TOKEN_HELP, endpoint_option
from reelforge.cli.estimate import print_estimate
from reelforge.cli.follow import submit_and_follow
from reelforge.errors import ReelforgeError


@click.command()
@click.argument("prompt")
@click.option("--image", type=click.Path(dir_okay=False), help="Starting image (PNG or JPEG), the video's first frame [default: none].")
@click.option("--fit", type=click.Choice(["crop", "pad"]), help="Bring an image of another size to the video size: crop fills, pad adds bars [default: none, a wrong size is refused].")
@click.option("--seed", type=int, help="Seed (0-2147483646); same prompt and seed, same video [default: 42, Nova Reel's].")
@click.option("--duration", "duration", type=int, help="Seconds [default: 6, or the model's longest shot if shorter].")
@click.option("--fps", type=int, default=24, show_default=True, help="Frames per second (`reelforge models` lists each model's).")
@click.option("--resolution", default="1280x720", show_default=True, help="WIDTHxHEIGHT.")
@click.option("--model", default=config.DEFAULT_MODEL, show_default=True, help="Model id (`reelforge models`).")
@click.option("-o", "--output", help=OUTPUT_HELP)
@click.option("--token", help=TOKEN_HELP)
@endpoint_option
@click.option("--no-wait", is_flag=True, help="Print the job id and return; the job runs on.")
@click.option("--json", "as_json", is_flag=True, help="Print the finished job as JSON.")
@click.option("--dry-run", is_flag=True, help="Check the request and estimate cost and time; submit nothing.")
@click.option("--webhook", metavar="URL|NAME", help="Notify this URL of the job's events, signed with REELFORGE_WEBHOOK_SECRET (docs/webhooks.md); with --endpoint, the name of an endpoint the server registered [default: none].")
@click.option("--webhook-events", metavar="EVENTS", help="What --webhook hears, comma-separated: job.started, job.completed, job.failed, job.canceled, job.progress [default: all but job.progress].")
@click.option("--no-audio", is_flag=True, help="A silent video, even from a model that makes sound [default: keep the model's sound].")
def generate(prompt, image, fit, seed, duration, fps, resolution, model, output, token, endpoint, no_wait, as_json, dry_run, webhook, webhook_events, no_audio):
    """Make a video from PROMPT (the text of the video) and print where it is."""
    from reelforge.request.model import ImageInput, VideoRequest, parse_dimension

    width, height = parse_dimension(resolution, "--resolution")
    if duration is None:
        duration = default_duration(model)
    fields = dict(text=prompt, duration_s=duration, fps=fps, width=width, height=height, seed=seed, fit=fit)
    if image:
        fields["image"] = ImageInput.from_source(Path(image), "--image")
    request = VideoRequest(**fields)
    if dry_run:
        return print_estimate([(model, request)], endpoint, as_json)
    submit_and_follow(request, model, output, token, endpoint, no_wait, as_json, webhook=webhook, webhook_events=webhook_events, audio=not no_audio)


def default_duration(model: str) -> int:
    """6 s, Nova Reel's length, unless the model's shots are shorter (Wan 2.1: 5 s)."""
    from reelforge.engines.catalog import get_model

    try:
        allowed = get_model(model).limits.text_video_durations
    except ReelforgeError:
        return 6  # an unknown id is reported by the request check, with the known ones
    return 6 if allowed is None or 6 in allowed else max(d for d in allowed if d <= 6)

"""What every command group shares: the one-line error, --endpoint and other option texts, clients, consoles, job JSON."""

from __future__ import annotations

import click

from reelforge.jobs.record import JobRecord


class CLIError(click.ClickException):
    """One readable line on stderr and exit status 1."""


ENDPOINT_HELP = (
    "URL of a reelforge server (or 'bedrock' for Amazon Bedrock itself) to send the command to "
    "[default: run here, with this machine's job log; env REELFORGE_ENDPOINT]."
)
OUTPUT_HELP = "Output folder or s3://bucket/prefix [default: the data dir's outputs; with --endpoint, the server's default output]."
TOKEN_HELP = "Client request token: the same token never starts a second job [default: none, every run starts a job]."


def endpoint_option(command):
    """--endpoint, worded the same on every command that takes it."""
    return click.option("--endpoint", envvar="REELFORGE_ENDPOINT", metavar="URL", help=ENDPOINT_HELP)(command)


def client_for(endpoint: str | None, workers: int | None = None):
    """A Client for --endpoint, or for this machine's job log (``workers``: threads here; 0: the background worker)."""
    from reelforge.client.client import Client

    return Client(endpoint) if endpoint else Client(workers=workers)


def console():
    from rich.console import Console

    return Console()


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def engine_note(model: str) -> str | None:
    """A note when a Nova Reel id, which asks for a generative model, is served here by one that is not.

    Nothing is said when the model id was picked for its engine (reelforge.animatic-v1): the user chose it.
    """
    from reelforge.engines import get_engine_class
    from reelforge.engines.catalog import engine_for, get_model

    spec = get_model(model)
    engine_id, _ = engine_for(spec)
    engine = get_engine_class(engine_id)
    if engine.generative or not spec.bedrock_id:
        return None
    what = f"the {engine_id} engine" + (f", a {engine.summary}" if engine.summary else ", which is not a generative model")
    return (
        f"Note: {model} is rendered here by {what}. For generated video set REELFORGE_NOVA_BACKEND or use "
        "--model reelforge.ltx-video (pip install 'reelforge[diffusers]'); `reelforge models` lists them."
    )


def lint_request(request, *, errors: bool = True) -> list[str]:
    """Lint warnings for a request, by its task type, as lines to print.

    ``errors=False`` leaves out what the request check itself refuses (length), so a bad
    prompt gives one line, not two.
    """
    from reelforge.request.prompts import lint_prompt, lint_shots

    if request.task_type == "MULTI_SHOT_MANUAL":
        texts = request.shot_texts()
        found = [(f"shot {i + 1} " if len(texts) > 1 else "", w) for i, w in lint_shots(texts)]
    else:
        found = [("", w) for w in lint_prompt(request.text or "", task_type=request.task_type, duration_s=request.duration_s)]
    return [f"{where}{w}" for where, w in found if errors or w.severity != "error"]


def job_dict(rec: JobRecord) -> dict:
    """A job as the JSON that `--json` prints."""
    from reelforge.client.client import iso

    return {
        "id": rec.id,
        "arn": rec.arn,
        "status": rec.status.value,
        "progress": round(rec.progress, 3),
        "stage": rec.stage,
        "model": rec.model_id,
        "submitted": iso(rec.submit_time),
        "started": iso(rec.start_time),
        "ended": iso(rec.end_time),
        "output": rec.output_uri,
        "failure": rec.failure_message,
        "attempts": rec.attempts,
        "audio": rec.metadata.get("audio"),  # the video's sound track (codec, sampleRate, channels), null when silent
        "keepAudio": rec.audio,  # false: asked for a silent video (--no-audio)
        "request": rec.model_input,
        "metadata": rec.metadata,
    }

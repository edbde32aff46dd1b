"""`reelforge lint PROMPT`: a prompt against Nova Reel's prompting rules."""

from __future__ import annotations

import sys

import click

from reelforge import config


@click.command()
@click.argument("prompt")
@click.option("--task-type", type=click.Choice(["TEXT_VIDEO", "MULTI_SHOT_AUTOMATED", "MULTI_SHOT_MANUAL"]), default="TEXT_VIDEO",
              show_default=True, help="The request the prompt is for; a long MULTI_SHOT_AUTOMATED prompt has rules of its own.")
@click.option("--duration", type=int, help="Seconds of a MULTI_SHOT_AUTOMATED video [default: none given].")
@click.option("--model", default=config.DEFAULT_MODEL, show_default=True,
              help="The model the prompt is for; on the previz (reelforge.animatic-v2) it also says what the previz will show.")
def lint(prompt, task_type, duration, model):
    """Check PROMPT against Nova Reel's prompting rules; exit 1 on an error."""
    from reelforge.request.prompts import lint_prompt
    from reelforge.workflows.lint import previz_notes

    warnings = lint_prompt(prompt, task_type=task_type, duration_s=duration)
    for w in warnings:
        click.echo(str(w))
    if not warnings:
        click.echo("no warnings")
    for line in previz_notes(model, [prompt]):
        click.echo(line)
    if any(w.severity == "error" for w in warnings):
        sys.exit(1)

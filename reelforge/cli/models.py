"""`reelforge models`: the model ids, their engines, and what each still needs to run here."""

from __future__ import annotations

import json

import click

from reelforge.errors import ReelforgeError


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def models(as_json):
    """Model ids, the engine behind each, and what each still needs to run here (an extra, weights).

    Forwarded ids (--forward / REELFORGE_FORWARD) show where they go; Bedrock ids show their lifecycle
    (documented dates, or the live reading for a forwarded id, read with AWS credentials).
    """
    from reelforge.engines import get_engine_class
    from reelforge.engines.forward import Forwards
    from reelforge.jobs.lifecycle import DOCUMENTED, LifecycleReader
    from reelforge.engines.catalog import add_forwarded, all_models, engine_for

    forwards = Forwards.from_env()
    for f in forwards.entries.values():
        add_forwarded(f.model_id, f.kind)
    reader = LifecycleReader() if forwards else None
    rows = []
    for spec in all_models():
        forward = forwards.get(spec.model_id)
        engine_id, options = (forward.kind, {}) if forward else engine_for(spec)
        try:  # looks for packages and files; loads nothing
            get_engine_class(engine_id).check_available(options)
            missing = None
        except ReelforgeError as exc:
            missing = str(exc)
        lim = spec.limits
        sizes = lim.allowed_sizes_text()
        fps = ",".join(map(str, lim.fps))
        row = dict(model=spec.model_id, engine=engine_id, sizes=sizes, fps=fps, about=spec.summary, ready=missing is None, needs=missing)
        if forward:
            row["forward"] = {"url": forward.url, "upstreamModel": forward.upstream_model, "concurrency": forward.concurrency}
        found = reader.read(forward) if forward and forward.kind == "bedrock" else None
        found = found or DOCUMENTED.get(spec.model_id)
        if found:
            row["lifecycle"] = {"state": found.state(), "status": found.status, "endOfLife": found.end_of_life,
                                "source": found.source, "text": found.describe(), "servedHere": forward is None}
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['model']}  ({r['engine']} engine; {r['sizes']}; fps {r['fps']})")
        click.echo(f"    {r['about']}")
        if r.get("forward"):
            click.echo(f"    forwarded to {r['forward']['url']} as {r['forward']['upstreamModel']} (up to {r['forward']['concurrency']} at once)")
        if r.get("lifecycle"):
            life = r["lifecycle"]
            here = "; served here by a local model, which has no end of life" if life["servedHere"] and life["state"] != "active" else ""
            click.echo(f"    {'warning: ' if life['state'] != 'active' else ''}on Amazon Bedrock: {life['text']}{here}")
        if r["needs"]:
            click.echo(f"    not ready here: {r['needs']}")

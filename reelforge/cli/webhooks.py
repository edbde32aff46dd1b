"""`reelforge webhooks ...`: retry deliveries and make signing secrets."""

from __future__ import annotations

import click


@click.group()
def webhooks() -> None:
    """Signed webhook notifications (docs/webhooks.md)."""


@webhooks.command("retry")
@click.argument("ref", metavar="DELIVERY_ID|JOB_ID")
def webhooks_retry(ref):
    """Send DELIVERY_ID|JOB_ID again now: one delivery (msg_..., whatever its state), or every failed
    delivery of a job; same webhook-id, same body. A running serve or worker on this job log sends them."""
    from reelforge.client.embedded import embedded_runtime
    from reelforge.errors import JobNotFoundError

    runtime = embedded_runtime()
    ids = runtime.store.retry_deliveries(ref)
    if not ids:
        if not ref.startswith("msg_"):
            runtime.get(ref)  # JobNotFoundError for no such job
            click.echo(f"job {ref} has no failed deliveries", err=True)
            return
        if runtime.store.delivery(ref) is None:
            raise JobNotFoundError(ref)
    for delivery_id in ids:
        click.echo(delivery_id)
    click.echo(f"{len(ids)} deliver{'y' if len(ids) == 1 else 'ies'} due now; a running serve or worker sends them", err=True)


@webhooks.command("secret")
def webhooks_secret():
    """Print a new signing secret (whsec_ and 32 random bytes) for --webhook-secret / REELFORGE_WEBHOOK_SECRET."""
    from reelforge.jobs.webhooks import new_secret

    click.echo(new_secret())

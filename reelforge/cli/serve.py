"""The `reelforge serve` command: Bedrock's async-invoke API on uvicorn."""

from __future__ import annotations

import errno
import re
import socket
from pathlib import Path

import click

from reelforge import config
from reelforge.errors import ReelforgeError

_SIZE = re.compile(r"\s*(\d+)\s*([kmg]i?b?|b)?\s*", re.IGNORECASE | re.ASCII)
RESERVED_FDS = 256  # descriptors kept for the job log, threads' SQLite connections, files and logs


def parse_size(text: str) -> int:
    """``33554432``, ``32MiB``, ``32M``, ``512k`` as bytes (binary units)."""
    m = _SIZE.fullmatch(str(text))
    if not m:
        raise click.BadParameter(f"{text!r} is not a size; write e.g. 32MiB or 1048576")
    unit = (m.group(2) or "b")[0].lower()
    return int(m.group(1)) * {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]


def bind_listener(host: str, port: int) -> socket.socket:
    """The listening socket uvicorn will serve on, bound here so a busy port is one readable error.

    Binds the way uvicorn does (SO_REUSEADDR; IPv6 when the host has a ':'); ``port`` 0 takes a free one.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
    # listener says TCP, and without it every kept-alive reply waits for the delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(f"port {port} on {host} is in use (another reelforge serve?); pick another with --port") from None
        if exc.errno == errno.EACCES:
            raise click.ClickException(f"no permission to listen on port {port} on {host}; pick a port above 1023 with --port") from None
        reason = exc.strerror or str(exc)
        raise click.ClickException(f"cannot listen on {host} port {port}: {reason}; check --host and --port") from None
    sock.set_inheritable(True)
    return sock


def connection_budget(max_connections: int) -> tuple[int, str | None]:
    """``max_connections`` fitted to this process's descriptor limit (raised towards it first), and a warning when lowered.

    Python leaves the soft RLIMIT_NOFILE where the shell set it (often 1,024); at that limit
    accept() fails and the server cannot be reached at all, so the soft limit is raised up to
    the hard one, and connections are capped below what is left after RESERVED_FDS.
    """
    try:
        import resource
    except ImportError:  # not on this platform
        return max_connections, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= want:
        return max_connections, None
    fitted = max(soft - RESERVED_FDS, 16)
    return fitted, f"the descriptor limit is {soft} (ulimit -n), so at most {fitted} connections are held, not {max_connections}"


def parse_forwards(flags):
    """``--forward`` entries with REELFORGE_FORWARD's, or a usage error naming the flag (or variable) and the allowed forms."""
    from reelforge.errors import ConfigError
    from reelforge.engines.forward import Forwards

    try:
        return Forwards.from_env(flags)
    except ConfigError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[1] if str(exc).startswith("--forward") else str(exc), param_hint="--forward") from None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; loopback unless you mean it.")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True, help="TCP port; 0 takes a free one and prints it.")
@click.option("--workers", type=click.IntRange(0, 64), default=1, show_default=True, help="Worker threads running jobs in this process.")
@click.option("--bucket-dir", type=click.Path(file_okay=False, path_type=Path), help="Write s3://BUCKET/PREFIX outputs to DIR/BUCKET/PREFIX instead of S3 [default: none, outputs go to S3].")
@click.option("--default-output", metavar="S3_URI", help="s3://bucket/prefix for requests from reelforge clients that name no output (advertised on /reelforge/health) [default with --bucket-dir: s3://reelforge-outputs/videos; else none].")
@click.option("--auth-keys", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="File of ACCESS_KEY_ID:SECRET lines; Bedrock requests must be SigV4-signed with one, OpenAI and Google clients send a SECRET as their API key (also REELFORGE_AUTH_KEYS) [default: none, nothing is checked].")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME", help="On a loopback --host, also answer requests with this Host name (a reverse proxy's public name); repeatable [default: loopback names only].")
@click.option("--max-body", default="32MiB", show_default=True, help="Largest request body accepted; a larger one gets 413 at once.")
@click.option("--read-timeout", type=click.FloatRange(0.1, 3600), default=config.SERVER_READ_TIMEOUT, show_default=True, help="Seconds a request's headers may take to arrive (its body: this plus 1 s per 32 KiB); slower clients get 408 and are disconnected.")
@click.option("--max-connections", type=click.IntRange(1, 1_000_000), default=config.SERVER_MAX_CONNECTIONS, show_default=True, help="Connections held at once; beyond it the one idle longest is closed, and requests get 503 when none is idle.")
@click.option("--max-queued", type=click.IntRange(1), default=None, help="Refuse new jobs while this many wait in the queue: Bedrock clients get 400 ServiceQuotaExceededException, OpenAI clients 429, Google clients 429 RESOURCE_EXHAUSTED; nothing is recorded [default: no limit].")
@click.option("--forward", "forwards", multiple=True, metavar="ENTRY", help="Run a model id upstream: 'MODEL_ID=bedrock:URL' or 'MODEL_ID=openai-videos:URL#UPSTREAM_MODEL' (URL aws: Amazon's endpoint); repeatable; also REELFORGE_FORWARD, space-separated (docs/remote.md) [default: none, every model runs here].")
@click.option("--region", default=None, help=f"Region for ARNs when a request carries none [default: {config.DEFAULT_REGION}].")
@click.option("--account", default=None, help=f"12-digit account id in ARNs [default: {config.DEFAULT_ACCOUNT}].")
@click.option("--retain", metavar="DURATION", help="Prune finished jobs (records and files, keeping tombstones) once they ended this long ago, e.g. 12h, 30d, 2w; checked every hour (REELFORGE_PRUNE_EVERY_S) [default: REELFORGE_RETAIN, else keep every job].")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info", show_default=True, help="What uvicorn prints on stderr.")
@click.option("--webhook", "webhook_urls", multiple=True, metavar="URL", help="Notify this URL of every job's events, signed (docs/webhooks.md); repeatable (also REELFORGE_WEBHOOKS, space-separated) [default: none].")
@click.option("--webhook-endpoint", "webhook_endpoints", multiple=True, metavar="NAME=URL", help="An endpoint notified only for the jobs that name it (Bedrock tag reelforge:webhook=NAME); repeatable (also REELFORGE_WEBHOOK_ENDPOINTS) [default: none].")
@click.option("--webhook-secret", metavar="whsec_...", help="Standard Webhooks signing secret (also REELFORGE_WEBHOOK_SECRET; make one with `reelforge webhooks secret`) [default: none, webhooks off].")
@click.option("--webhook-events", metavar="EVENTS", help="What the server's endpoints hear, comma-separated: job.started, job.completed, job.failed, job.canceled, job.progress (also REELFORGE_WEBHOOK_EVENTS) [default: all but job.progress].")
@click.option("--allow-private-webhooks", is_flag=True, default=None, help="Let webhooks reach loopback, private and link-local addresses, and plain http (also REELFORGE_ALLOW_PRIVATE_WEBHOOKS=1).")
@click.option("--public-url", metavar="URL", help="This server's address as receivers reach it, for the file links in webhooks [default: http://HOST:PORT].")
def serve(host, port, workers, bucket_dir, default_output, auth_keys, allowed_hosts, max_body, read_timeout, max_connections, max_queued, forwards, region, account, retain, log_level,
          webhook_urls, webhook_endpoints, webhook_secret, webhook_events, allow_private_webhooks, public_url):
    """Serve Bedrock's async-invoke API, OpenAI's Videos API and Google's Veo API over one job log.

    Point boto3 at it with endpoint_url="http://HOST:PORT" (any credentials, a region), the openai
    client with base_url="http://HOST:PORT/v1", google-genai with
    HttpOptions(base_url="http://HOST:PORT") (docs/wires.md). Outputs go to S3
    (AWS_ENDPOINT_URL_S3 picks an S3-compatible server) or, with --bucket-dir, to a folder.
    """
    import os

    from reelforge.server.locations import check_default_output
    from reelforge.server.sigv4 import load_keys

    if region is not None and not re.fullmatch(r"[a-z0-9-]{1,20}", region):
        raise click.BadParameter("must be 1 to 20 lowercase letters, digits and '-' (it goes into ARNs), e.g. us-east-1", param_hint="--region")
    if account is not None and not re.fullmatch(r"[0-9]{12}", account):
        raise click.BadParameter("must be 12 digits", param_hint="--account")
    from reelforge.jobs.retention import parse_duration, retain_from_env

    try:
        retain_s = parse_duration(retain, "--retain") if retain is not None else retain_from_env()
    except (ValueError, ReelforgeError) as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1], param_hint="--retain" if retain is not None else "REELFORGE_RETAIN") from None
    try:
        keys = load_keys(auth_keys, os.environ.get("REELFORGE_AUTH_KEYS"))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    overrides = dict(
        forwards=parse_forwards(forwards),
        host=host, port=port, workers=workers, auth_keys=keys, max_body=parse_size(max_body),
        allowed_hosts=tuple(h.strip().lower() for h in allowed_hosts), read_timeout=read_timeout, max_queued=max_queued, retain_s=retain_s,
    )
    overrides["webhooks"] = webhook_settings(webhook_urls, webhook_endpoints, webhook_secret, webhook_events, allow_private_webhooks)
    if public_url:
        overrides["public_url"] = public_url.rstrip("/")
    overrides["max_connections"], warning = connection_budget(max_connections)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    if default_output is not None:
        try:
            overrides["default_output"] = check_default_output(default_output)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--default-output") from None
    sock = bind_listener(host, port)  # before anything else: a busy port is the first and only message
    try:
        _serve_on(sock, host, overrides, bucket_dir, region, account, log_level)
    finally:
        sock.close()


def webhook_settings(urls=(), endpoints=(), secret=None, events=None, allow_private=None):
    """The webhook settings of the environment with these flags applied; ClickException naming what cannot be used."""
    from reelforge.jobs.webhooks import RequestError, Settings, parse_kinds, parse_named

    overrides = dict(secret=secret, allow_private=allow_private or None)
    try:
        if urls:
            overrides["urls"] = tuple(urls)
        if endpoints:
            overrides["named"] = parse_named(endpoints, "--webhook-endpoint")
        if events:
            overrides["kinds"] = parse_kinds(events, "--webhook-events")
        return Settings.from_env(**overrides)
    except RequestError as exc:
        raise click.BadParameter(exc.message, param_hint="--webhook-events") from None
    except ReelforgeError as exc:
        raise click.ClickException(str(exc)) from None


def _webhooks_note(hooks) -> str:
    """What the start line says of webhooks: how many endpoints, never the secret."""
    if hooks is None or not hooks.secret:
        return ""
    private = ", private addresses allowed" if hooks.allow_private else ""
    return f", webhooks to {len(hooks.urls)} endpoint(s) for every job and {len(hooks.named)} named{private}"


def _serve_on(sock: socket.socket, host: str, overrides: dict, bucket_dir: Path | None, region, account, log_level) -> None:
    import os

    import uvicorn

    from reelforge.server.app import create_app, settings_from_env
    from reelforge.server.hosts import is_loopback
    from reelforge.jobs.retention import describe
    from reelforge.server.protocol import uvicorn_config

    port = overrides["port"] = sock.getsockname()[1]  # the real one for --port 0
    if bucket_dir is not None:
        bucket_dir.mkdir(parents=True, exist_ok=True)
        overrides["bucket_dir"] = bucket_dir.resolve()
    if region:
        overrides["region"] = region
    if account:
        overrides["account"] = account
    settings = settings_from_env(**overrides)
    if not is_loopback(host) and not settings.auth_keys:
        click.echo(f"warning: listening on {host} without --auth-keys: anyone who can reach it can start jobs", err=True)
    try:
        app = create_app(settings)
    except ReelforgeError as exc:  # a setting it reads at start (REELFORGE_WIRE_MODELS, the job log)
        raise click.ClickException(str(exc)) from None
    where = f"folder {settings.bucket_dir}" if settings.bucket_dir else "S3" + (f" at {os.environ['AWS_ENDPOINT_URL_S3']}" if os.environ.get("AWS_ENDPOINT_URL_S3") else "")
    default = f", default output {settings.advertised_output}" if settings.advertised_output else ""
    click.echo(
        f"reelforge serving Bedrock async-invoke, OpenAI Videos (/v1/videos) and Google Veo (/v1beta1, /v1beta) on http://{_url_host(host)}:{port} "
        f"(job log {config.job_store_location()}, {settings.workers} worker(s), outputs to {where}{default}, "
        f"SigV4 and API keys {'checked' if settings.auth_keys else 'not checked'}, "
        f"{'finished jobs pruned after ' + describe(settings.retain_s) if settings.retain_s else 'every job kept'}{_webhooks_note(settings.webhooks)})",
        err=True,
    )
    server = uvicorn.Server(uvicorn_config(app, settings, log_level))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # as uvicorn.run: Ctrl-C after a graceful shutdown is a normal end
        pass
    if not server.started:
        raise click.ClickException("the server did not start; the messages above say why")

"""`reelforge worker`: run queued jobs from the job log in this process, or one worker process per GPU."""

from __future__ import annotations

import logging
import os

import click

from reelforge import config
from reelforge.cli.common import CLIError

log = logging.getLogger("reelforge.cli")


@click.command()
@click.option("--until-idle", is_flag=True, help="Exit as soon as no job is queued.")
@click.option("--idle-exit", type=click.FloatRange(min=0), metavar="SECONDS", help="Exit once no job has been queued for this long [default: run until stopped].")
@click.option("--background", is_flag=True, help="Run as the data dir's background worker, the one Client.start starts: at most one runs; it exits REELFORGE_WORKER_IDLE_S seconds (default 120) after the queue empties.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True, help="Units of work run at once by this process.")
@click.option("--forward", "forwards", multiple=True, metavar="ENTRY", help="Credentials and limits for forwarded model ids (same form as serve --forward); where a job goes was fixed when it was recorded [default: REELFORGE_FORWARD's entries].")
@click.option("--gpus", metavar="DEVICES", help="Run one worker process per GPU, each with CUDA_VISIBLE_DEVICES set to its device (torch sees it as cuda:0) and the other options: 'all' (every GPU torch sees) or a list such as 0,1 or GPU-UUIDs; indexes count within this process's CUDA_VISIBLE_DEVICES when it is set. A worker that exits is reported, not restarted [default: one worker, on the GPUs this process sees].")
def worker(until_idle, idle_exit, background, threads, forwards, gpus):
    """Run queued jobs from the job log. Ctrl-C or SIGTERM puts running jobs back in the queue at once.

    Each worker keeps the models it has loaded and prefers jobs for them; a new job whose model an
    idle worker holds is left to that worker for REELFORGE_AFFINITY_S (10 s). See docs/scale-out.md.
    """
    import signal

    from reelforge.jobs.background import SINGLETON, FileLock
    from reelforge.cli.serve import parse_forwards
    from reelforge.client.embedded import embedded_runtime
    from reelforge.engines.forward import ENV

    if gpus is not None:
        _gpu_workers(gpus, until_idle=until_idle, idle_exit=idle_exit, background=background, threads=threads, forwards=forwards)
        return
    if forwards:
        os.environ[ENV] = " ".join(f.entry for f in parse_forwards(forwards).entries.values())
    runtime = embedded_runtime()
    if background:
        singleton = FileLock(runtime.folder / SINGLETON, shared=False) if runtime.folder is not None else None
        if singleton is None or not singleton.acquire():
            return  # another background worker has this data dir (the lock stays held until we exit)
        singleton.write_pid()
        idle_exit = runtime.timings.idle_exit_s
    if until_idle:
        idle_exit = 0.0

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    if not background:
        more = "" if idle_exit is None else f"; exits after {idle_exit:g} s with nothing queued"
        device = f" on GPU {config.gpu()}" if config.gpu() else ""
        click.echo(f"worker {runtime.worker_id} running {threads} thread(s){device}{more}; Ctrl-C stops", err=True)
    try:
        if threads > 1:
            runtime.start_workers(threads - 1)
        runtime.run(idle_exit)
        runtime.stop(timeout=None)  # idle: let the other threads end the units they hold
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the release short
            signal.signal(sig, signal.SIG_IGN)
        released = runtime.release()
        runtime.stop(timeout=5)
        if not background:
            click.echo(f"worker stopped; {len(released)} running job unit(s) went back to the queue", err=True)


def _gpu_workers(value: str, *, until_idle, idle_exit, background, threads, forwards) -> None:
    """``worker --gpus``: start one worker per device, watch them, exit 1 when one failed (gpus.py)."""
    from reelforge.cli import gpus

    if background:
        raise CLIError("--gpus cannot be used with --background (the data dir's one background worker); run reelforge worker --gpus yourself")
    devices = gpus.parse_gpus(value, os.environ.get("CUDA_VISIBLE_DEVICES"))
    args = ["--threads", str(threads)] + ["--until-idle"] * until_idle + (["--idle-exit", str(idle_exit)] if idle_exit is not None else [])
    args += [a for f in forwards for a in ("--forward", f)]
    children = gpus.start(devices, args)
    started = ", ".join(c.describe() for c in children)
    log.info("reelforge worker --gpus: %s", started)
    click.echo(f"{len(children)} worker(s), one per GPU: {started}; Ctrl-C or SIGTERM stops them all", err=True)
    code = gpus.supervise(children, lambda line: click.echo(line, err=True))
    if code:
        click.get_current_context().exit(code)

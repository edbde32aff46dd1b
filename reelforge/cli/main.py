"""The `reelforge` command group: logging to the data dir's log file, one-line errors, and the commands' registration.

The cli package is the only part of reelforge that talks to the terminal; each command group has a module.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import cast

import click

from reelforge import config
from reelforge.cli.batch import batch, shots
from reelforge.cli.common import CLIError
from reelforge.cli.generate import generate
from reelforge.cli.jobs import jobs
from reelforge.cli.lint import lint
from reelforge.cli.models import models
from reelforge.cli.serve import serve
from reelforge.cli.webhooks import webhooks
from reelforge.cli.worker import worker
from reelforge.errors import ReelforgeError

log = logging.getLogger("reelforge.cli")


def _setup_logging() -> None:
    """Tracebacks and job history go to the log file, never to the terminal.

    The only place reelforge configures logging (the package itself has a NullHandler); a
    process that runs several commands (tests, embedding) gets the log of the current data dir.
    """
    path = os.path.abspath(config.log_path())
    root = logging.getLogger("reelforge")
    for old in [h for h in root.handlers if getattr(h, "reelforge_cli", False)]:
        if cast(logging.FileHandler, old).baseFilename == path:
            return
        root.removeHandler(old)
        old.close()
    handler = _LogFile(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


class _LogFile(logging.FileHandler):
    """The log file, made on its first record (a command that logs nothing leaves no folder behind)."""

    reelforge_cli = True

    def __init__(self, path: str):
        super().__init__(path, delay=True)

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    # An unusable data dir or a full disk is reported by the command itself, never by a logging traceback.
    def emit(self, record) -> None:
        try:
            super().emit(record)
        except OSError:
            pass

    def handleError(self, record) -> None:
        pass


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return self._invoke(ctx)
        except click.ClickException as exc:  # the line the user reads is kept in the log too
            log.error("reelforge %s: %s", ctx.invoked_subcommand or "", exc.format_message())
            raise

    def _invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ReelforgeError as exc:
            raise CLIError(str(exc)) from None
        except BrokenPipeError:  # `reelforge ... | head`: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None
        except OSError as exc:  # a data dir or output we cannot use: say which, keep the traceback in the log
            log.exception("OS error")
            where = f" ({exc.filename})" if exc.filename else ""
            raise CLIError(f"{exc.strerror or exc}{where}; check REELFORGE_HOME and the output folder") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reelforge")
def cli() -> None:
    """Text-to-video as asynchronous jobs: generate, watch, download, serve."""
    _setup_logging()


for _command in (generate, shots, batch, jobs, models, worker, lint, webhooks, serve):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="reelforge")

"""The ``phoneconfirm`` command line (needs the ``cli`` extra: click and rich).

One module per command group: ``_calls`` (place, verify), ``_confirm``, ``_worker``, ``_batch``,
``_emulator``, ``_bench``; ``_common`` and ``_io`` hold what they share. Progress and
summaries go to stderr, result rows to stdout, so output can be piped. Credentials come from
flags or the environment; with neither a key nor a base URL, the demo commands run against
the built-in emulator on a free loopback port and say so on stderr, while ``worker`` and a
``--store`` refuse to start (their work is a real store's sessions).
"""

from __future__ import annotations

import sys

import click

import phoneconfirm_async
from phoneconfirm_async.cli._batch import batch
from phoneconfirm_async.cli._bench import bench
from phoneconfirm_async.cli._calls import place, verify
from phoneconfirm_async.cli._common import EXIT_INTERRUPTED, EXIT_USAGE
from phoneconfirm_async.cli._confirm import confirm
from phoneconfirm_async.cli._emulator import emulator
from phoneconfirm_async.cli._io import SetupError
from phoneconfirm_async.cli._worker import worker

__all__ = ["main", "run"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(phoneconfirm_async.__version__, prog_name="phoneconfirm")
def main() -> None:
    """Place and verify phone-confirmation calls (XVerify Phone Confirm)."""


for _command in (place, verify, confirm, worker, batch, emulator, bench):
    main.add_command(_command)


def run() -> None:
    """The ``phoneconfirm`` entry point: exit 2 for a configuration error (one line) or a
    usage error (what is wrong, then ``Try 'phoneconfirm COMMAND --help' for help.``)."""
    try:
        main.main(standalone_mode=False, prog_name="phoneconfirm")
    except SetupError as exc:
        click.echo(f"phoneconfirm: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:
        click.echo(f"phoneconfirm: {exc.format_message()}", err=True)
        if exc.ctx is not None:
            click.echo(f"Try '{exc.ctx.command_path} --help' for help.", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("phoneconfirm: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)

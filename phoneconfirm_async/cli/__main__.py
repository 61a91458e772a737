"""``python -m phoneconfirm_async.cli``: the ``phoneconfirm`` command."""

from phoneconfirm_async.cli import run

run()

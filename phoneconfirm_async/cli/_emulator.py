"""``phoneconfirm emulator``: serve the Phone Confirm emulator until Ctrl-C."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from phoneconfirm_async.cli._common import EXIT_FAILED, EXIT_OK, fewer_collections
from phoneconfirm_async.cli._io import SetupError

if TYPE_CHECKING:
    from phoneconfirm_async.emulator import Emulator


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    default=8099,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: a free one).",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    default=(),
    help="An accepted API key (repeatable; default: `emulator-key`).",
)
@click.option(
    "--trusted-domain",
    "trusted_domains",
    multiple=True,
    default=(),
    help="A domain trusted for the keys (repeatable; default: `example.com`).",
)
@click.option(
    "--latency-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Latency added to every answer, in milliseconds.",
)
@click.option(
    "--fault-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Probability per request of a fault: HTTP 500, 503 or 429, a reset, a hang, a "
    "truncated or an HTML answer.",
)
@click.option(
    "--answer-on-attempt",
    default=1,
    type=click.IntRange(min=1),
    show_default=True,
    help="The call (1 = the first) on which the person answers and hears the code.",
)
@click.option(
    "--seed", type=int, default=None, help="Seed for reproducible faults (default: random)."
)
def emulator(
    host: str,
    port: int,
    api_keys: tuple[str, ...],
    trusted_domains: tuple[str, ...],
    latency_ms: float,
    fault_rate: float,
    answer_on_attempt: int,
    seed: int | None,
) -> None:
    """Serve the Phone Confirm emulator until interrupted (Ctrl-C)."""
    from phoneconfirm_async.emulator import Emulator, EmulatorConfig

    fields: dict[str, Any] = {}
    if api_keys:
        fields["api_keys"] = api_keys
    if trusted_domains:
        fields["trusted_domains"] = trusted_domains
    config = EmulatorConfig(
        host=host,
        port=port,
        latency=latency_ms / 1000,
        fault_rate=fault_rate,
        answer_on_attempt=answer_on_attempt,
        seed=seed,
        **fields,
    )
    server = Emulator(config)
    with fewer_collections():  # this process only serves: tune it as the batch commands are
        _serve(server, host, port, api_keys, config.trusted_domains)


def _serve(
    server: Emulator, host: str, port: int, api_keys: tuple[str, ...], trusted: tuple[str, ...]
) -> None:
    try:
        server.start()
    except OSError as exc:
        raise SetupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    keys = "the default key 'emulator-key'" if not api_keys else f"{len(api_keys)} key(s)"
    domains = ", ".join(trusted)
    click.echo(
        f"Phone Confirm emulator serving {server.base_url} ({keys}; trusted: {domains}). "
        "Ctrl-C to stop.",
        err=True,
    )
    try:
        while not server.wait(timeout=0.5):
            pass
    except KeyboardInterrupt:
        server.stop()
        click.echo(f"Emulator stopped after {server.request_count} requests. Goodbye.", err=True)
        sys.exit(EXIT_OK)
    sys.exit(EXIT_FAILED)  # the server thread ended on its own: something went wrong

"""``phoneconfirm bench``: the benchmark suite of a source checkout, as one table."""

from __future__ import annotations

import sys

import click

from phoneconfirm_async.cli._common import EXIT_FAILED, EXIT_OK
from phoneconfirm_async.cli._io import SetupError


@click.command()
@click.option("--quick", is_flag=True, help="A small version of each benchmark (about 4 min).")
@click.option(
    "--json",
    "json_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also write the results to this JSON file.",
)
def bench(quick: bool, json_path: str | None) -> None:
    """Run the benchmark suite (benchmarks/ of a source checkout) and print its table.

    Every figure is a ratio against a baseline measured in the same run. Exits 1 when a
    target was missed on this machine.
    """
    try:
        from benchmarks import suite
        from benchmarks._common import machine, write_json
    except ImportError:
        raise SetupError(
            "phoneconfirm bench runs benchmarks/ from a source checkout: "
            "python -m pip install -e '.[dev]' in the repository"
        ) from None
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    results = suite.run_all(quick, lambda name: console.print(f"running {name}...", style="dim"))
    info = machine()
    table = Table(title=f"phoneconfirm bench{' --quick' if quick else ''}: {info['cores']} cores")
    for column in ("benchmark", "value", "baseline", "ratio", "target", ""):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for r in results:
        table.add_row(
            r.name,
            f"{r.value:,.1f} {r.unit}",
            f"{r.baseline:,.1f}",
            f"{r.ratio:.2f}",
            r.target,
            "met" if r.met else "[bold red]MISSED",
        )
    Console(width=130).print(table)
    if json_path:
        write_json(results, json_path)
    sys.exit(EXIT_OK if all(r.met for r in results) else EXIT_FAILED)

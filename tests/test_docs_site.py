"""The built documentation site reads right for a stranger: the CLI reference shows real
defaults and help for every option, click help is Markdown, docstring sections render,
and every page with samples says how to run them."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import click
import pytest

from phoneconfirm_async import cli
from tests.test_docs import DOCS, ROOT, pages_with_samples

PACKAGE = ROOT / "phoneconfirm_async"


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _commands(
    command: click.Command = cli.main, path: str = "phoneconfirm"
) -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, f"{path} {name}")


@pytest.mark.slow
def test_the_built_site_shows_no_sentinel_and_no_missing_help(tmp_path: Path) -> None:
    """``mkdocs build --strict``, then every page read: no ``Sentinel.`` (click 8.3's
    unset default, as mkdocs-click prints it), no ``N/A`` (an option without help), and the
    CLI reference shows the defaults as the command has them."""
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pages = list(site.rglob("*.html"))
    assert len(pages) > 20
    for page in pages:
        text = page.read_text()
        assert "Sentinel." not in text, page
        assert "N/A" not in text, page
    reference = (site / "reference" / "cli" / "index.html").read_text()
    cells = re.sub(r"<[^>]+>", " ", reference)
    for shown in ("--concurrency", "100", "--redial-interval", "60.0", "_required"):
        assert shown in cells, shown


def test_the_hook_fails_a_page_that_shows_them() -> None:
    hooks = _hooks()
    page = SimpleNamespace(file=SimpleNamespace(src_uri="reference/cli.md"))
    assert hooks.on_post_page("<td>`50`</td>", page=page, config={}) == "<td>`50`</td>"
    for broken in ("<td>`Sentinel.UNSET`</td>", "<td>N/A</td>"):
        with pytest.raises(Exception, match=r"reference/cli\.md"):
            hooks.on_post_page(broken, page=page, config={})


def test_every_option_has_help_in_markdown() -> None:
    """Help for every option of every command; Markdown code spans, not
    reStructuredText's double backticks, in option help and command help alike."""
    for path, command in _commands():
        assert "``" not in (command.help or ""), path
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{path} {param.opts}"
                assert "``" not in param.help, f"{path} {param.opts}"


def _section_items(lines: list[str], start: int) -> list[str]:
    """The lines of a docstring section (``Returns:``) that starts at ``start``."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    items = []
    for line in lines[start + 1 :]:
        if not line.strip() or len(line) - len(line.lstrip()) <= indent:
            break
        items.append(line)
    return items


def test_returns_sections_render_as_one_entry() -> None:
    """In a Google-style ``Returns:`` or ``Yields:`` section, a line at the first line's
    indentation starts another entry (mkdocstrings then renders a broken row): a
    description that goes on must be indented further."""
    broken = []
    for module in PACKAGE.rglob("*.py"):
        lines = module.read_text().splitlines()
        for number, line in enumerate(lines):
            if line.strip() not in ("Returns:", "Yields:"):
                continue
            items = _section_items(lines, number)
            first = len(items[0]) - len(items[0].lstrip()) if items else 0
            if any(len(item) - len(item.lstrip()) == first for item in items[1:]):
                broken.append(f"{module.relative_to(ROOT)}:{number + 1}")
    assert broken == []


def test_every_page_with_samples_says_how_to_run_them() -> None:
    missing = [
        str(page.relative_to(DOCS))
        for page in pages_with_samples()
        if "running-the-samples" not in page.read_text()
    ]
    assert missing == []
    index = (DOCS / "index.md").read_text()
    assert "## Running the samples" in index
    assert "asyncio.run(main())" in index
    assert "## Install" in index
    assert "python -m pip install -e '.[cli,numbers]'" in index
    assert "## Your XVerify account" in index

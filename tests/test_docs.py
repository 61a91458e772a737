"""The documentation site: every page's Python samples run, against the emulator.

A page's ```` ```python ```` blocks run in order in one namespace (top-level ``await`` and
``async with`` allowed, as in the docs), then every ``test_*`` function they defined runs,
on asyncio and on trio, in a fresh working directory with no ``PHONECONFIRM_*`` variable
set. A block is shown but not run only when the line before it is
``<!-- no-run: <why> -->``, and a block that only includes a file (``--8<-- "path"``) is run
by that file's own tests. A page that defines pytest test classes (``Test*``, such as a
``StoreContract`` subclass) or tests that take fixtures (the package's pytest plugin's)
has them run by pytest in a subprocess, from a module made of the page's blocks that are
plain module code. A test without parameters that is not async runs in a worker thread,
where no event loop runs (the blocking client refuses a thread that runs one). The
``phoneconfirm`` commands of console blocks must parse as the real command's, and the
reference pages must name every public name.
"""

from __future__ import annotations

import ast
import inspect
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import click
import pytest

import phoneconfirm_async
from phoneconfirm_async import cli
from tests.conftest import ENV_NAMES

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(
    r"^(?P<before>[^\n]*)\n(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n"
    r"(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
NO_RUN = re.compile(r"<!--\s*no-run:\s*\S.*-->")
INCLUDE = re.compile(r'^\s*--8<--\s+"[^"]+"\s*$')
#: A page's samples get this long, on either backend, before the test fails.
PAGE_TIMEOUT = 120


@dataclass(frozen=True)
class Sample:
    """One fenced Python block of a page."""

    page: Path
    line: int
    code: str
    runs: bool


def samples(page: Path) -> list[Sample]:
    """The page's fenced Python blocks, dedented, in order."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        language = match["info"].strip().split(" ")[0]
        if language not in ("python", "py"):
            continue
        indent = len(match["indent"])
        body = "\n".join(line[indent:] for line in match["body"].splitlines())
        included = all(INCLUDE.match(line) for line in body.splitlines() if line.strip())
        runs = not included and not NO_RUN.search(match["before"])
        line = text.count("\n", 0, match.start("body")) + 1
        found.append(Sample(page, line, body, runs))
    return found


def pages_with_samples() -> list[Path]:
    return sorted(page for page in DOCS.rglob("*.md") if any(s.runs for s in samples(page)))


async def run_page(page: Path) -> None:
    """Run the page's samples in one namespace, then the tests they define."""
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for sample in samples(page):
        if not sample.runs:
            continue
        # Blank lines first, so that a traceback names the line of the page itself.
        source = "\n" * (sample.line - 1) + sample.code
        code = compile(source, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)  # noqa: S307 - our own documentation
        if inspect.iscoroutine(result):
            await result
    for_pytest = []
    for name, value in list(namespace.items()):
        if name.startswith("Test") and isinstance(value, type):
            for_pytest.append(name)
        elif name.startswith("test_") and callable(value):
            if inspect.signature(value).parameters:
                for_pytest.append(name)  # it takes fixtures: pytest (and its plugins) give them
            else:
                await run_test(value)
    if for_pytest:
        await run_with_pytest(page, for_pytest)


async def run_with_pytest(page: Path, tests: list[str]) -> None:
    """pytest on the page's test classes and fixture-taking tests: a module of the page's
    blocks that compile as module code (not those with top-level ``await``), run in a
    subprocess, where the package's pytest plugin is loaded as in any project."""
    blocks = []
    for sample in samples(page):
        if not sample.runs:
            continue
        try:
            compile(sample.code, str(page), "exec")
        except SyntaxError:
            continue  # top-level await: a sample, not module code
        blocks.append(sample.code)
    module = anyio.Path(f"test_{page.stem.replace('-', '_')}.py")
    await module.write_text("\n\n".join(blocks))
    done = await anyio.run_process(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)),
            *("-k", " or ".join(tests)),
        ],
        check=False,
    )
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, output
    assert " passed" in output, output
    assert "skipped" not in output, output


async def run_test(test: Callable[[], Any]) -> None:
    """Run a ``test_*`` function a page defined, as pytest with anyio's plugin would: on
    the backend (and clock) its ``anyio_backend`` parametrization names, in a thread of its
    own, else in the running loop."""
    for mark in getattr(test, "pytestmark", []):
        if mark.name == "parametrize" and mark.args[0] == "anyio_backend":
            for backend, options in mark.args[1]:
                await anyio.to_thread.run_sync(
                    partial(anyio.run, test, backend=backend, backend_options=options)
                )
            return
    if inspect.iscoroutinefunction(test):
        await test()
    else:  # in a thread of its own, as pytest runs it: no event loop there (blocking code)
        await anyio.to_thread.run_sync(test)


@pytest.fixture
def clean_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Samples write their files (SQLite stores, journals) into a fresh directory, with
    the repository importable (``examples``) and no credentials in the environment."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PHONECONFIRM_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    return tmp_path


@pytest.mark.anyio
@pytest.mark.parametrize(
    "page", pages_with_samples(), ids=lambda page: str(page.relative_to(DOCS))
)
@pytest.mark.usefixtures("clean_directory")
async def test_the_pages_samples_run(page: Path) -> None:
    """Each page's Python samples run as written and their assertions hold."""
    with anyio.fail_after(PAGE_TIMEOUT):
        await run_page(page)


def test_every_sample_runs_or_says_why_not() -> None:
    """The docs have samples, and most of them run: a skipped block is the exception."""
    every = [sample for page in DOCS.rglob("*.md") for sample in samples(page)]
    running = [sample for sample in every if sample.runs]
    assert len(running) >= 20
    assert len(running) >= 3 * (len(every) - len(running))


def test_the_tutorial_and_every_how_to_have_running_samples() -> None:
    """The tutorial and each how-to guide show code that the suite runs."""
    wanted = [*(DOCS / "tutorial").glob("*.md"), *(DOCS / "how-to").glob("*.md")]
    assert wanted
    running = set(pages_with_samples())
    without = [str(page.relative_to(DOCS)) for page in wanted if page not in running]
    if "how-to/benchmarks.md" in without:
        without.remove("how-to/benchmarks.md")  # commands only: benchmarks are not tests
    assert without == []


def command_lines(page: Path) -> list[list[str]]:
    """The ``phoneconfirm`` commands of a page's console blocks, split into words."""
    commands = []
    for match in FENCE.finditer(page.read_text()):
        if match["info"].strip() not in ("console", "bash", "shell"):
            continue
        for line in match["body"].replace("\\\n", " ").splitlines():
            words = shlex.split(line.removeprefix("$ "), comments=True)
            while words and "=" in words[0]:  # VARIABLE=value before the command
                words.pop(0)
            if words[:1] == ["phoneconfirm"]:
                commands.append(words[1:])
    return commands


def test_the_pages_commands_are_the_commands() -> None:
    """Every ``phoneconfirm`` command the pages show names a real command, real options
    and the right number of arguments (outputs and effects are the CLI tests' business)."""
    shown = [words for page in DOCS.rglob("*.md") for words in command_lines(page)]
    assert len(shown) >= 5
    for words in shown:
        command: click.Command = cli.main
        context = click.Context(command, info_name="phoneconfirm")
        rest = list(words)
        while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
            found = command.get_command(context, rest.pop(0))
            assert found is not None, words
            command = found
            context = click.Context(command, info_name=command.name, parent=context)
        if rest == ["--version"]:
            continue
        # An unknown option raises; arguments land in ``values``, extra words in ``left``.
        values, left, _ = command.make_parser(context).parse_args(rest)
        assert left == [], words
        for param in command.params:
            if isinstance(param, click.Argument) and param.required:
                assert values.get(param.name) is not None, words


def test_the_reference_names_every_public_name() -> None:
    """Every name in ``phoneconfirm_async.__all__`` is documented from its docstring."""
    text = "\n".join(page.read_text() for page in (DOCS / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: phoneconfirm_async\.(\w+)\s*$", text, re.MULTILINE))
    assert set(phoneconfirm_async.__all__) <= documented


def test_the_mkdocs_nav_holds_every_page() -> None:
    """No page is left out of the site's navigation (mkdocs only warns about that)."""
    nav = (ROOT / "mkdocs.yml").read_text()
    listed = set(re.findall(r":\s+([\w/.-]+\.md)\s*$", nav, re.MULTILINE))
    pages = {str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md")}
    assert pages == listed


def test_the_readme_is_one_screen_with_the_quick_start() -> None:
    """The README stays under 150 lines and keeps the three quick-start commands exactly."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 150
    quick_start = (
        "```console\n"
        "python -m pip install -e '.[dev]'\n"
        "phoneconfirm batch place examples/numbers.csv\n"
        "pytest\n"
        "```\n"
    )
    assert quick_start in readme
    for target in re.findall(r"\]\(((?:docs/|CHANGELOG)[^)#]*)", readme):
        assert (ROOT / target).is_file(), target

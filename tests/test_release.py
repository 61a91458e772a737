"""The release is one version, said the same everywhere (the build itself: .ci/release)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from click.testing import CliRunner

import phoneconfirm_async
from phoneconfirm_async.cli import main

ROOT = Path(__file__).parent.parent


def test_the_version_is_single_sourced() -> None:
    """pyproject takes the version from ``_version.py``; nothing else spells it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["version"]
    assert "version" not in project["project"]
    assert project["tool"]["hatch"]["version"]["path"] == "phoneconfirm_async/_version.py"


def test_the_command_reports_the_version() -> None:
    """``phoneconfirm --version`` prints the package's version."""
    done = CliRunner().invoke(main, ["--version"])
    assert done.exit_code == 0
    assert phoneconfirm_async.__version__ in done.output.split()


def test_the_changelog_dates_this_release() -> None:
    """The newest release in the CHANGELOG is this version, with a date, under Unreleased."""
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", changelog, re.M)
    assert headings[0] == ("Unreleased", "")
    version, date = headings[1]
    assert version == phoneconfirm_async.__version__
    assert date

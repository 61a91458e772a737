"""The pytest plugin as another project sees it: a temporary project outside this
repository, run by pytest in a subprocess, gets the fixtures from the installed package's
``pytest11`` entry point, on asyncio and trio; a project that does not use them pays
nothing; a missing extra fails only the test that asks for a fixture, and says why."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PYTEST_INI = """\
[pytest]
filterwarnings = error
addopts = -p no:cacheprovider
"""

CONFTEST = """
import sys

import pytest

# What the plugins loaded before any of this project's code ran.
AT_START = sorted(
    name for name in sys.modules
    if name.split(".")[0] in ("phoneconfirm_async", "httpx", "starlette", "aiohttp")
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""

TESTS = """
import sniffio
import pytest

from conftest import AT_START


def test_pytest_starts_without_the_library():
    assert AT_START == []


@pytest.mark.anyio
async def test_the_async_client(phoneconfirm_client, phoneconfirm_emulator, anyio_backend):
    assert sniffio.current_async_library() == anyio_backend
    placed = await phoneconfirm_client.place_call("5555550123", country_code="1", code="4821")
    heard = phoneconfirm_emulator.heard_code("5555550123")
    assert (await phoneconfirm_client.verify_code(placed.transaction_number, heard)).verified
    assert len(phoneconfirm_emulator.calls) == 1


def test_the_sync_client(phoneconfirm_sync_client, phoneconfirm_emulator):
    placed = phoneconfirm_sync_client.place_call("5555550123", country_code="1", code="4821")
    assert phoneconfirm_sync_client.verify_code(placed.transaction_number, "4821").verified
    assert [call.phone for call in phoneconfirm_emulator.calls] == ["5555550123"]


def test_a_fresh_emulator_per_test(phoneconfirm_emulator):
    assert phoneconfirm_emulator.calls == []


class TestAPersonWhoAnswersTheSecondCall:
    @pytest.fixture
    def phoneconfirm_emulator_config(self):
        from phoneconfirm_async.emulator import EmulatorConfig

        return EmulatorConfig(answer_on_attempt=2)

    def test_the_first_call_is_not_heard(self, phoneconfirm_sync_client, phoneconfirm_emulator):
        phoneconfirm_sync_client.place_call("5555550123", country_code="1", code="4821")
        assert phoneconfirm_emulator.heard_code("5555550123") is None
        phoneconfirm_sync_client.place_call("5555550123", country_code="1", code="4821")
        assert phoneconfirm_emulator.heard_code("5555550123") == "4821"
"""

WITHOUT_THE_EXTRA = """
import sys

sys.modules["starlette"] = None  # as if the emulator extra were not installed


def test_unrelated():
    assert True


def test_uses_the_emulator(phoneconfirm_sync_client):
    raise AssertionError("never reached: the fixture fails first")
"""


def run_pytest(project: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-rA"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.stdout + done.stderr + f"\nexit status {done.returncode}"


def project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    assert not tmp_path.is_relative_to(ROOT)
    return tmp_path


def test_the_fixtures_in_another_project(elsewhere: Path) -> None:
    app = project(
        elsewhere / "app",
        {"pytest.ini": PYTEST_INI, "conftest.py": CONFTEST, "test_app.py": TESTS},
    )
    output = run_pytest(app)
    assert "exit status 0" in output, output
    for test in (
        "test_pytest_starts_without_the_library",
        "test_the_async_client[asyncio]",
        "test_the_async_client[trio]",
        "test_the_sync_client",
        "test_a_fresh_emulator_per_test",
        "test_the_first_call_is_not_heard",
    ):
        assert f"{test} PASSED" in output, output
    assert " 6 passed" in output, output
    assert "phoneconfirm" in output.split("plugins:")[1].splitlines()[0]


def test_a_missing_extra_fails_only_the_test_that_asks(elsewhere: Path) -> None:
    app = project(
        elsewhere / "bare", {"pytest.ini": PYTEST_INI, "test_bare.py": WITHOUT_THE_EXTRA}
    )
    output = run_pytest(app)
    assert "1 passed, 1 error" in output, output
    assert "test_unrelated PASSED" in output, output
    assert (
        "the phoneconfirm_emulator_config fixture needs phoneconfirm-async's emulator extra "
        "(starlette is not installed): pip install 'phoneconfirm-async[emulator]'"
    ) in output, output
    assert "never reached" not in output
    assert "During handling" not in output  # one line says it all

"""The installed wheel, used as a stranger would (run by .ci/release in a fresh venv).

Checks that the package comes from the virtual environment, that ``phoneconfirm
--version`` reports the release, and that place, verify and confirm work against the
built-in emulator and against an emulator served by the installed package, and that an
international number, without the ``numbers`` extra, is refused with a word on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import phoneconfirm_async
from phoneconfirm_async.emulator import Emulator, EmulatorConfig
from phoneconfirm_async.testing import EmulatorTransport

BIN = Path(sys.executable).parent
PHONE = ["5555550123", "--country-code", "1"]


def phoneconfirm(*args: str, stdin: str = "", expect: int = 0) -> dict[str, Any]:
    """Run the installed command; its one JSON row, after checking the exit status."""
    done = subprocess.run(
        [str(BIN / "phoneconfirm"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != expect:
        sys.exit(f"phoneconfirm {args[0]} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def main() -> None:
    version = sys.argv[1]
    installed = Path(phoneconfirm_async.__file__).resolve()
    assert installed.is_relative_to(BIN.parent.resolve()), f"imported from {installed}"
    assert phoneconfirm_async.__version__ == version

    shown = subprocess.run(
        [str(BIN / "phoneconfirm"), "--version"], capture_output=True, text=True, check=True
    )
    assert version in shown.stdout.split(), shown.stdout

    # The built-in emulator (no credentials): one per command.
    assert phoneconfirm("place", *PHONE, "--code", "4821")["outcome"] == "placed"
    confirmed = phoneconfirm("confirm", *PHONE, "--code", "4821", stdin="0000\n4821\n")
    assert confirmed["outcome"] == "verified", confirmed
    # The cli extra alone has no libphonenumber: an international number names the extra.
    international = phoneconfirm("place", "+15555550123", "--code", "4821", expect=1)
    assert "'numbers' extra" in international["error"]["message"], international

    # Place, then verify in a second command, on one emulator from the installed package.
    emulator = Emulator(EmulatorConfig())
    emulator.start()
    try:
        service = ["--api-key", "emulator-key", "--domain", "example.com"]
        service += ["--base-url", emulator.base_url]
        placed = phoneconfirm("place", *PHONE, "--code", "4821", *service)
        number = placed["transaction_number"]
        wrong = phoneconfirm("verify", number, "--code", "0000", *service, expect=1)
        right = phoneconfirm("verify", number, "--code", "4821", *service)
    finally:
        emulator.stop()
    assert (wrong["outcome"], right["outcome"]) == ("not_verified", "verified")

    # The wheel carries the pytest plugin beside the package, registered for pytest.
    (plugin,) = [e for e in entry_points(group="pytest11") if e.name == "phoneconfirm_async"]
    spec = find_spec(plugin.value)  # not imported: pytest is not installed here
    assert spec is not None, plugin
    assert spec.origin is not None, plugin
    assert Path(spec.origin).resolve().is_relative_to(BIN.parent.resolve()), spec.origin
    assert "def phoneconfirm_sync_client(" in Path(spec.origin).read_text()

    # The blocking face, from the installed package.
    transport = EmulatorTransport()
    with phoneconfirm_async.SyncPhoneConfirmClient(
        "emulator-key", "example.com", base_url=transport.base_url, transport=transport
    ) as client:
        assert client.place_call(PHONE[0], country_code="1", code="4821").placed
    assert [call.phone for call in transport.calls] == [PHONE[0]]


if __name__ == "__main__":
    main()

"""What every emulator has, however requests reach it: its memory and its ASGI app."""

from __future__ import annotations

from phoneconfirm_async.emulator._app import EmulatorApp
from phoneconfirm_async.emulator._config import CallRecord, EmulatorConfig
from phoneconfirm_async.emulator._state import EmulatorState, Fault


class EmulatorBase:
    """The emulator's memory and ASGI app, and what a test reads of them.

    ``Emulator`` serves it on a loopback socket; ``phoneconfirm_async.testing``'s
    ``EmulatorTransport`` drives it in process, without sockets.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._state = EmulatorState(self.config)
        #: The ASGI application (Starlette) that answers the service's endpoints.
        self.app = EmulatorApp(self._state)

    @property
    def calls(self) -> list[CallRecord]:
        """Every call dialed so far, in dialing order (a snapshot)."""
        return self._state.calls

    @property
    def faults(self) -> list[Fault]:
        """Every fault injected so far, in order: endpoint, kind, and phase."""
        return self._state.faults

    @property
    def request_count(self) -> int:
        """How many requests reached the two service endpoints, rejected ones included."""
        return self._state.request_count

    @property
    def verification_count(self) -> int:
        """How many codes were checked (verifycode requests that reached the check)."""
        return self._state.verification_count

    def wait_for_requests(self, count: int, timeout: float | None = None) -> bool:
        """Block until ``count`` requests have arrived (for tests: no polling, no sleeps)."""
        return self._state.wait_for_requests(count, timeout)

    def wait_for_calls(self, count: int, timeout: float | None = None) -> bool:
        """Block until ``count`` calls were dialed (for tests: no polling, no sleeps)."""
        return self._state.wait_for_calls(count, timeout)

    def heard_code(self, phone: str) -> str | None:
        """The code the simulated person heard, or None if they picked up no call yet."""
        return self._state.heard_code(phone)

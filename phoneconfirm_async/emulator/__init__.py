"""A real HTTP server that speaks the Phone Confirm protocol, for tests, demos and benchmarks.

Install the ``emulator`` extra (starlette, uvicorn, uvloop, httptools). The emulator never
imports the client: it is an independent counterpart of the service.
"""

from phoneconfirm_async.emulator._base import EmulatorBase as EmulatorBase
from phoneconfirm_async.emulator._config import (
    DEFAULT_API_KEY as DEFAULT_API_KEY,
)
from phoneconfirm_async.emulator._config import (
    DEFAULT_DOMAIN as DEFAULT_DOMAIN,
)
from phoneconfirm_async.emulator._config import (
    FAULT_KINDS as FAULT_KINDS,
)
from phoneconfirm_async.emulator._config import (
    CallRecord as CallRecord,
)
from phoneconfirm_async.emulator._config import (
    EmulatorConfig as EmulatorConfig,
)
from phoneconfirm_async.emulator._server import Emulator as Emulator
from phoneconfirm_async.emulator._server import run_emulator as run_emulator
from phoneconfirm_async.emulator._state import Fault as Fault

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_DOMAIN",
    "FAULT_KINDS",
    "CallRecord",
    "Emulator",
    "EmulatorBase",
    "EmulatorConfig",
    "Fault",
    "run_emulator",
]

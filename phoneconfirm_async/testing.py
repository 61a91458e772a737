"""Test doubles and checks for applications and store authors.

- ``MockTransport(handler)``: answers from a function of yours; the core install is all
  it needs.
- ``EmulatorTransport``: the emulator's whole behaviour in process, no socket (the
  ``emulator`` extra):

      from phoneconfirm_async.emulator import EmulatorConfig
      from phoneconfirm_async.testing import EmulatorTransport

      transport = EmulatorTransport(EmulatorConfig(answer_on_attempt=2))
      async with transport.client() as client:
          placed = await client.place_call("5555550123", country_code="1", code="4821")
      assert transport.calls[0].phone == "5555550123"

  It keeps the emulator's whole behaviour (error codes, mixed field types, faults, the
  call log, ``heard_code``). A call is in ``calls`` by the time ``send`` returns, so a
  test needs no ``wait_for_calls``. Connection faults behave as over a socket: ``reset``
  and ``truncated`` end in a dropped connection, ``hang`` holds the request for
  ``hang_seconds`` (the client's ``attempt_timeout`` ends it first).
- ``StoreContract``: the tests a ``SessionStore`` must pass (needs pytest).

Each is imported when first used: importing this module needs neither starlette nor
pytest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from phoneconfirm_async._testing._mock import MockTransport as MockTransport

if TYPE_CHECKING:
    from phoneconfirm_async._testing._contract import StoreContract as StoreContract
    from phoneconfirm_async._testing._emulator import EmulatorTransport as EmulatorTransport

__all__ = ["EmulatorTransport", "MockTransport", "StoreContract"]

_LAZY = {
    "EmulatorTransport": "phoneconfirm_async._testing._emulator",
    "StoreContract": "phoneconfirm_async._testing._contract",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    value.__module__ = __name__
    globals()[name] = value
    return value


MockTransport.__module__ = __name__

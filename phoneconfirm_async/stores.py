"""Session stores: where a scheduler's sessions live.

- the three stores: ``MemoryStore`` (one process), ``SQLiteStore`` (the processes of one
  host), ``PostgresStore`` (several hosts), and ``store_from_url``;
- ``SessionStore``, the protocol a store implements, with ``SessionRecord``,
  ``SessionState``, ``Claimed``, ``Renewed`` and ``ChangeHook``;
- the rules every store applies to its records, the same everywhere: ``settle_due`` (a
  pass over due rows, ``Settled``), ``may_finish`` and ``end`` (final states), ``holds``,
  ``release``, ``answered``, ``next_call_due`` and ``code_expiry`` (a claimed call's
  life), ``may_check`` (a verification attempt), ``held_back`` (the spend cap), and
  ``Quota``, ``Throttled`` and ``counter_key`` (the throttles ``add`` counts, as keyed
  hashes).

To keep sessions somewhere else (Redis, DynamoDB, ...) implement ``SessionStore`` with
these rules and check it with ``phoneconfirm_async.testing.StoreContract``; the how-to
"Write your own store" walks one through.
"""

from phoneconfirm_async._stores._memory import MemoryStore as MemoryStore
from phoneconfirm_async._stores._postgres import PostgresStore as PostgresStore
from phoneconfirm_async._stores._protocol import ChangeHook as ChangeHook
from phoneconfirm_async._stores._protocol import Claimed as Claimed
from phoneconfirm_async._stores._protocol import Renewed as Renewed
from phoneconfirm_async._stores._protocol import SessionStore as SessionStore
from phoneconfirm_async._stores._rules import CHECKABLE_STATES as CHECKABLE_STATES
from phoneconfirm_async._stores._rules import CLOSED_STATES as CLOSED_STATES
from phoneconfirm_async._stores._rules import FINAL_STATES as FINAL_STATES
from phoneconfirm_async._stores._rules import SPEND_WINDOW as SPEND_WINDOW
from phoneconfirm_async._stores._rules import Quota as Quota
from phoneconfirm_async._stores._rules import SessionRecord as SessionRecord
from phoneconfirm_async._stores._rules import SessionState as SessionState
from phoneconfirm_async._stores._rules import Settled as Settled
from phoneconfirm_async._stores._rules import Throttled as Throttled
from phoneconfirm_async._stores._rules import answered as answered
from phoneconfirm_async._stores._rules import code_expiry as code_expiry
from phoneconfirm_async._stores._rules import counter_key as counter_key
from phoneconfirm_async._stores._rules import end as end
from phoneconfirm_async._stores._rules import held_back as held_back
from phoneconfirm_async._stores._rules import holds as holds
from phoneconfirm_async._stores._rules import may_check as may_check
from phoneconfirm_async._stores._rules import may_finish as may_finish
from phoneconfirm_async._stores._rules import next_call_due as next_call_due
from phoneconfirm_async._stores._rules import release as release
from phoneconfirm_async._stores._rules import settle_due as settle_due
from phoneconfirm_async._stores._sqlite import SQLiteStore as SQLiteStore
from phoneconfirm_async._stores._url import store_from_url as store_from_url

__all__ = [
    "CHECKABLE_STATES",
    "CLOSED_STATES",
    "FINAL_STATES",
    "SPEND_WINDOW",
    "ChangeHook",
    "Claimed",
    "MemoryStore",
    "PostgresStore",
    "Quota",
    "Renewed",
    "SQLiteStore",
    "SessionRecord",
    "SessionState",
    "SessionStore",
    "Settled",
    "Throttled",
    "answered",
    "code_expiry",
    "counter_key",
    "end",
    "held_back",
    "holds",
    "may_check",
    "may_finish",
    "next_call_due",
    "release",
    "settle_due",
    "store_from_url",
]

# Reprs and tracebacks show this module's path, not the private one.
for _name in __all__:
    _member = globals()[_name]
    if isinstance(_member, type):
        _member.__module__ = __name__
del _name, _member

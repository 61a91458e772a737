"""A second process for the policy's races: ``python -m tests.stores.policy_peer ACTION
STORE_URL BASE_URL ARG COUNT``. It opens a scheduler (drive=False) on the store, prints
``ready``, waits for a line on stdin (the test starts every peer at once), then runs
``COUNT`` concurrent actions and prints their outcomes as one JSON list:

- ``guess SESSION_ID``: wrong codes for the session (``"wrong"``, or the state that
  refused the check);
- ``schedule PHONE``: sessions for the phone (``"started"``, or ``"throttled:<limit>"``).
"""

from __future__ import annotations

import json
import sys

import anyio
import anyio.to_thread

from phoneconfirm_async import (
    PhoneConfirmClient,
    ThrottledError,
    VerificationClosedError,
    store_from_url,
)
from tests.conftest import API_KEY, DOMAIN


async def main(action: str, store_url: str, base_url: str, arg: str, count: int) -> None:
    outcomes: list[str] = []
    async with (
        PhoneConfirmClient(API_KEY, DOMAIN, base_url=base_url) as client,
        client.scheduler(store=store_from_url(store_url), drive=False) as scheduler,
    ):

        async def guess(n: int) -> None:
            session = await scheduler.get(arg)
            assert session is not None
            try:
                result = await session.verify(f"9{n:05d}")  # the drawn code never starts so
            except VerificationClosedError as exc:
                outcomes.append(exc.state.value)
            else:
                outcomes.append("verified" if result.verified else "wrong")

        async def schedule(n: int) -> None:
            try:
                await scheduler.schedule(arg, country_code="1", call_place_time=3600)
            except ThrottledError as exc:
                outcomes.append(f"throttled:{exc.limit}")
            else:
                outcomes.append("started")

        work = guess if action == "guess" else schedule
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        async with anyio.create_task_group() as tasks:
            for n in range(count):
                tasks.start_soon(work, n)
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    action, store_url, base_url, arg, count = sys.argv[1:]
    anyio.run(main, action, store_url, base_url, arg, int(count))

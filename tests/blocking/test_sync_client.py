"""SyncPhoneConfirmClient against the emulator on loopback: the same results and errors as
the async client, shared by many threads, and the refusals that keep it from deadlocking
(a thread running an event loop, a forked child, a closed client)."""

from __future__ import annotations

import contextlib
import inspect
import os
import select
import signal
import threading
import warnings
from collections.abc import Iterator

import anyio
import pytest

from phoneconfirm_async import (
    AuthenticationError,
    CallOutcomeUnknownError,
    PhoneConfirmClient,
    SyncPhoneConfirmClient,
    TransportRequest,
    TransportResponse,
    ValidationError,
)
from phoneconfirm_async.emulator import Emulator
from tests.conftest import API_KEY, DOMAIN

LOOP_THREAD = "phoneconfirm-loop"


def loop_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == LOOP_THREAD]


@pytest.fixture
def client(emulator: Emulator) -> Iterator[SyncPhoneConfirmClient]:
    with SyncPhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url) as client:
        yield client
    assert not loop_threads()


def test_the_constructor_is_the_async_clients() -> None:
    """Every argument of PhoneConfirmClient, with the same defaults, in the same order."""
    sync = inspect.signature(SyncPhoneConfirmClient).parameters
    async_ = inspect.signature(PhoneConfirmClient).parameters
    assert list(sync) == list(async_)
    for name, parameter in async_.items():
        assert sync[name].default == parameter.default, name
        assert sync[name].kind == parameter.kind, name


def test_place_and_verify(client: SyncPhoneConfirmClient, emulator: Emulator) -> None:
    placed = client.place_call("(555) 555-0123", country_code="1", code="4821")
    assert placed.placed
    assert emulator.calls[0].phone == "5555550123"
    assert not client.verify_code(placed.transaction_number, "0000").verified
    assert client.verify_code(placed.transaction_number, "4821").verified
    assert client.transport == "aiohttp"  # "auto" on the loop thread's asyncio
    assert "open" in repr(client)
    assert API_KEY not in repr(client)


def test_the_same_errors_in_the_calling_thread(
    client: SyncPhoneConfirmClient, emulator: Emulator
) -> None:
    """A bad argument is the async client's ValidationError, raised where the call was
    made, with nothing sent; the service's refusals are its ApiErrors."""
    with pytest.raises(ValidationError) as refused:
        client.place_call("12", country_code="1", code="4821")
    assert refused.value.field == "phone"
    assert emulator.request_count == 0
    with (
        SyncPhoneConfirmClient(
            "wrong-key", DOMAIN, base_url=emulator.base_url, retry_budget=0
        ) as wrong,
        pytest.raises(AuthenticationError),
    ):
        wrong.place_call("5555550123", country_code="1", code="4821")
    assert emulator.calls == []


def test_a_bad_setting_starts_no_thread(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        SyncPhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url, max_concurrency=0)
    assert not loop_threads()


def test_many_threads_share_one_client(client: SyncPhoneConfirmClient, emulator: Emulator) -> None:
    """Sixteen request threads, one loop thread: every call placed once, each its own."""
    results: dict[str, str] = {}
    lock = threading.Lock()

    def sign_up(worker: int) -> None:
        for n in range(8):
            phone = f"55555{worker:02d}{n:03d}"
            placed = client.place_call(phone, country_code="1", code="4821")
            assert client.verify_code(placed.transaction_number, "4821").verified
            with lock:
                results[phone] = placed.transaction_number or ""

    threads = [threading.Thread(target=sign_up, args=(w,)) for w in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 16 * 8
    assert len(set(results.values())) == 16 * 8
    assert sorted(call.phone for call in emulator.calls) == sorted(results)
    assert len(loop_threads()) == 1


def test_batches_are_blocking_iterators(
    client: SyncPhoneConfirmClient, emulator: Emulator
) -> None:
    rows = [{"phone": f"55555501{n:02d}", "country_code": "1", "code": "4821"} for n in range(30)]
    rows.insert(7, {"phone": "12", "country_code": "1", "code": "4821"})
    items = sorted(client.place_many(rows, concurrency=4), key=lambda item: item.index)
    assert [item.index for item in items] == list(range(31))
    assert isinstance(items[7].error, ValidationError)  # reported, never dropped
    assert sum(item.ok for item in items) == 30
    pairs = [
        {"transaction_number": item.result.transaction_number, "code": "4821"}
        for item in items
        if item.result
    ]
    checked = list(client.verify_many(pairs))
    assert len(checked) == 30
    assert all(item.result is not None and item.result.verified for item in checked)
    assert len(emulator.calls) == 30


def test_leaving_a_batch_early_stops_it(
    client: SyncPhoneConfirmClient, emulator: Emulator
) -> None:
    """Closing the iterator cancels the rows not done; the input is read no further."""
    read = 0

    def rows() -> Iterator[dict[str, str]]:
        nonlocal read
        for n in range(100_000):
            read += 1
            yield {"phone": f"555{n:07d}", "country_code": "1", "code": "4821"}

    with contextlib.closing(client.place_many(rows(), concurrency=2)) as items:
        for _ in zip(range(3), items, strict=False):
            pass
    assert read < 100
    client.place_call("5555550123", country_code="1", code="4821")  # the client serves on
    # The three items taken; at most two more done and waiting in the batch's channel
    # (it holds `concurrency` items) and two in flight (a request sent before the close
    # may still reach the service); the call above. Not 100,000.
    assert len(emulator.calls) <= 3 + 2 + 2 + 1


def test_close_stops_the_loop_and_joins_its_thread(emulator: Emulator) -> None:
    before = set(threading.enumerate())
    client = SyncPhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url)
    assert len(loop_threads()) == 1
    client.place_call("5555550123", country_code="1", code="4821")
    client.close()
    assert set(threading.enumerate()) == before
    client.close()  # again: nothing
    assert "closed" in repr(client)
    with pytest.raises(RuntimeError, match="closed"):
        client.place_call("5555550123", country_code="1", code="4821")
    assert len(emulator.calls) == 1


@pytest.mark.anyio
async def test_a_thread_running_an_event_loop_is_refused(
    client: SyncPhoneConfirmClient, emulator: Emulator
) -> None:
    """On asyncio and trio: a RuntimeError that names the async client, never a stall."""
    with pytest.raises(RuntimeError, match="use PhoneConfirmClient there"):
        client.place_call("5555550123", country_code="1", code="4821")
    with pytest.raises(RuntimeError, match="event loop"):
        SyncPhoneConfirmClient(API_KEY, DOMAIN, base_url=emulator.base_url)
    assert len(loop_threads()) == 1  # the refused one stopped its thread
    assert emulator.request_count == 0


def test_the_loop_thread_itself_is_refused(client: SyncPhoneConfirmClient) -> None:
    """A callback that runs on the loop thread and blocks on the client would deadlock."""
    seen: list[BaseException] = []

    class Reentrant:
        name = "reentrant"

        async def send(self, request: TransportRequest) -> TransportResponse:
            try:
                client.place_call("5555550123", country_code="1", code="4821")
            except RuntimeError as exc:
                seen.append(exc)
            raise AssertionError("unreachable")

    with (
        SyncPhoneConfirmClient(API_KEY, DOMAIN, transport=Reentrant()) as outer,
        pytest.raises(CallOutcomeUnknownError),  # a transport's failure, as any
    ):
        outer.place_call("5555550123", country_code="1", code="4821")
    assert "event loop" in str(seen[0])


def test_a_forked_child_is_refused(client: SyncPhoneConfirmClient, emulator: Emulator) -> None:
    """gunicorn --preload forks after the client was made: the child has no loop thread."""
    client.place_call("5555550100", country_code="1", code="4821")
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, on purpose
        pid = os.fork()
    if pid == 0:  # the child: report, and leave without running the parent's cleanup
        try:
            client.place_call("5555550101", country_code="1", code="4821")
            message = "placed"
        except RuntimeError as exc:
            message = str(exc)
        client.close()  # allowed: it only refuses further calls here
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], 30)
        if not ready:  # a child stuck on a loop thread that is not there
            os.kill(pid, signal.SIGKILL)
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "create it after the fork" in message.lower() or "after the fork" in message
    assert "post_fork" in message
    # The parent's client is untouched; the child's attempt never reached the service.
    client.place_call("5555550102", country_code="1", code="4821")
    assert [call.phone for call in emulator.calls] == ["5555550100", "5555550102"]


class _Hanging:
    """A transport whose requests wait until cancelled, and say so."""

    name = "hanging"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()

    async def send(self, request: TransportRequest) -> TransportResponse:
        self.started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")


def test_keyboard_interrupt_cancels_the_call_in_the_loop() -> None:
    """Ctrl-C in the waiting (main) thread: KeyboardInterrupt there, and the request in the
    loop thread is cancelled; the client serves the next call."""
    assert threading.current_thread() is threading.main_thread()
    transport = _Hanging()

    def interrupt() -> None:
        if transport.started.wait(30):
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt)
    with SyncPhoneConfirmClient(API_KEY, DOMAIN, transport=transport) as client:
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            client.place_call("5555550123", country_code="1", code="4821")
        interrupter.join()
        assert transport.cancelled.wait(30)
        transport.started.clear()
        transport.cancelled.clear()
        with pytest.raises(TimeoutError):  # the session-wait timeout path, on a bare call
            _wait_with_timeout(client)
        assert transport.cancelled.wait(30)


def _wait_with_timeout(client: SyncPhoneConfirmClient) -> None:
    """A session whose first call hangs: wait_called(timeout) gives up and cancels its
    wait; cancelling the session then cancels the call in flight."""
    with client.scheduler(policy=None) as scheduler:
        session = scheduler.schedule("5555550123", country_code="1", code="4821")
        try:
            session.wait_called(timeout=0.05)
        finally:
            session.cancel()

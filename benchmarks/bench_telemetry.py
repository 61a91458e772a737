"""What OpenTelemetry costs a ``place_call``: CPU per call with telemetry off, on with the
API alone (no SDK configured: every span and metric a no-op), and on with the SDK.

    python -m benchmarks.bench_telemetry [--quick] [--json FILE]

Clients on one transport against one out-of-process emulator, their rounds interleaved
(each side leads in turn, each starts after a full garbage collection), on aiohttp
(asyncio's default) and on httpx (trio's default, and what ``http_client=`` uses). The
figure is this process's CPU time per call (``time.process_time``: every thread, so the
SDK's batch span processor, which exports from its own, counts). The SDK side is a
``TracerProvider`` with a ``BatchSpanProcessor`` into an ``InMemorySpanExporter`` and a
``MeterProvider`` with an ``InMemoryMetricReader``; on aiohttp also the same with 10% of
traces sampled (``ParentBased(TraceIdRatioBased(0.1))``): metrics for every call, spans
for one in ten. Baseline: the same calls with ``telemetry=False``. Targets: no-op <=
1.03x, SDK <= 1.25x; the cost per call in microseconds is in each row's
detail.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from benchmarks._common import (
    API_KEY,
    DOMAIN,
    Result,
    cost_result,
    emulator_process,
    parser,
    report,
)
from phoneconfirm_async import PhoneConfirmClient

TransportName = Literal["aiohttp", "httpx"]
NOOP_TARGET = 1.03
SDK_TARGET = 1.25
#: The sampled setup's ratio: what a busy batch would run with.
SAMPLED_RATIO = 0.1


class Sdk:
    """An SDK setup of its own: tracer provider (batch processor into memory), meter
    provider (in-memory reader)."""

    def __init__(self, ratio: float | None = None) -> None:
        sampler = None if ratio is None else ParentBased(TraceIdRatioBased(ratio))
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(sampler=sampler)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    @property
    def options(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


async def measure(
    base_url: str, transport: TransportName, rounds: int, calls: int, sampled: bool
) -> list[Result]:
    sdks = {"sdk": Sdk()}
    if sampled:
        sdks["sampled"] = Sdk(SAMPLED_RATIO)

    def client(**options: Any) -> PhoneConfirmClient:
        return PhoneConfirmClient(
            API_KEY, DOMAIN, base_url=base_url, transport=transport, **options
        )

    async with contextlib.AsyncExitStack() as stack:
        clients = {
            "off": await stack.enter_async_context(client(telemetry=False)),
            "noop": await stack.enter_async_context(client(telemetry=True)),
        }
        for name, sdk in sdks.items():
            clients[name] = await stack.enter_async_context(client(**sdk.options))

        def timed(name: str) -> Callable[[], Awaitable[float]]:
            chosen = clients[name]
            sdk = sdks.get(name)

            async def run() -> float:
                started = time.process_time()
                for i in range(calls):
                    await chosen.place_call(f"555{i:07d}", country_code="1", code="4821")
                if sdk is not None:
                    sdk.tracer_provider.force_flush()  # its export is part of its cost
                return time.process_time() - started

            return run

        sides = {name: timed(name) for name in clients}
        times: dict[str, list[float]] = {name: [] for name in sides}
        for run in sides.values():  # warm each once
            await run()
        names = list(sides)
        for round_ in range(rounds):
            # Each side leads in turn, and each starts with the collector's debts paid: the
            # SDK's garbage would otherwise be collected in the side that runs after it.
            turn = round_ % len(names)
            for name in names[turn:] + names[:turn]:
                for sdk in sdks.values():
                    sdk.exporter.clear()
                gc.collect()
                times[name].append(await sides[name]())
    for sdk in sdks.values():
        sdk.shutdown()
    scale = 1e6 / calls
    results = []
    rows = [
        ("noop", "telemetry on, no SDK (no-op)", NOOP_TARGET),
        ("sdk", "telemetry on, SDK + in-memory exporter", SDK_TARGET),
        ("sampled", f"SDK, {SAMPLED_RATIO:.0%} of traces sampled", SDK_TARGET),
    ]
    for name, label, target in rows:
        if name not in times:
            continue
        cost = statistics.median(a - b for a, b in zip(times[name], times["off"], strict=True))
        results.append(
            cost_result(
                f"place_call CPU ({transport}), {label} vs off",
                "us/call",
                times[name],
                times["off"],
                scale,
                target,
                {
                    "rounds": rounds,
                    "calls_per_round": calls,
                    "clock": "process_time",
                    "transport": transport,
                    "cost_us_per_call": round(cost * scale, 1),
                },
            )
        )
    return results


def run(quick: bool) -> list[Result]:
    rounds, calls = (8, 1000) if quick else (12, 2000)
    results: list[Result] = []
    with emulator_process() as base_url:
        # aiohttp, the faster transport, also with a sampler (the setup for busy batches)
        results += anyio.run(measure, base_url, "aiohttp", rounds, calls, True)
        results += anyio.run(measure, base_url, "httpx", rounds, calls, False)
    return results


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    report(run(args.quick), args.json)


if __name__ == "__main__":
    main()

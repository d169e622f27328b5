"""Telemetry's cost per request: off, the API without an SDK, and the SDK on.

One loopback server (overhead.py's: the recorded ``index`` body), one process,
rounds of the three alternating so that machine noise hits them alike:

- ``off``: the hooks of a package without ``opentelemetry-api`` (no-ops);
- ``api``: ``opentelemetry-api`` installed, no SDK configured (the default);
- ``sdk``: the SDK's tracer provider (in-memory span exporter, simple processor)
  and meter provider (in-memory reader): a span and every metric per call.

Then the hooks alone, without I/O (one call: its span, a pacer slot and one
HTTP attempt), which the machine's noise does not drown.

Needs ``pip install ".[test]"`` (the SDK).

    python benchmarks/telemetry.py [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from pathlib import Path

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from overhead import serve
from yarl import URL

from biotorrents_async import BioTorrentsClient, LocalPacer, RetryPolicy, _telemetry

_real_gate = _telemetry._is_configured


async def hooks(n: int, mode: str) -> float:
    """Microseconds of the hooks of one call, with a free place and no I/O."""
    pacer = LocalPacer(None)
    _telemetry._is_configured = (lambda: False) if mode == "api" else _real_gate  # type: ignore[assignment]
    tel = (
        _telemetry.NoTelemetry()
        if mode == "off"
        else _telemetry.telemetry_for(
            url=URL("https://biotorrents.de/api.php"),
            redact=lambda s: s,
            pacer=lambda: pacer,
        )
    )
    gc.collect()
    started = time.perf_counter()
    for _ in range(n):
        # As the session does: without a record (telemetry off) only the slot.
        record = tel.call("index", "GET")
        if record is None:
            async with pacer.slot(0):
                pass
            continue
        with record:
            async with record.paced(pacer.slot(0), 0):
                with record.http("GET") as http:
                    http.status = 200
    return (time.perf_counter() - started) / n * 1e6


async def run(url: str, n: int, mode: str, spans: InMemorySpanExporter) -> float:
    loop = asyncio.get_running_loop()
    # "api": as before the SDK was configured (the gate says no provider).
    _telemetry._is_configured = (lambda: False) if mode == "api" else _real_gate  # type: ignore[assignment]
    async with BioTorrentsClient(
        "t", base_url=url, rate_limit=None, retry=RetryPolicy.none()
    ) as c:
        if mode == "off":
            c._session._telemetry = _telemetry.NoTelemetry()
        gc.collect()  # the last round's garbage (spans) is not this round's cost
        started = loop.time()
        for _ in range(n):
            me = await c.index()
            assert me.id == 2
        elapsed = (loop.time() - started) / n
    spans.clear()  # the exporter keeps every span: do not let memory grow
    return elapsed


async def main(requests: int, rounds: int) -> dict[str, float]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    runner, url = await serve()
    times: dict[str, list[float]] = {"off": [], "api": [], "sdk": []}
    try:
        for mode in times:
            await run(url, 50, mode, spans)  # warm up every path
        modes = list(times)
        for n in range(rounds):
            # A different mode first each round: no mode always follows another.
            for mode in modes[n % 3 :] + modes[: n % 3]:
                times[mode].append(await run(url, requests, mode, spans))
        alone = {m: [] for m in times}
        for n in range(rounds):
            for mode in modes[n % 3 :] + modes[: n % 3]:
                alone[mode].append(await hooks(requests * 5, mode))
            spans.clear()
    finally:
        await runner.cleanup()
    median = {m: sorted(t)[rounds // 2] * 1e6 for m, t in times.items()}
    hook = {m: sorted(t)[rounds // 2] for m, t in alone.items()}
    return {
        "hooks_off_us": hook["off"],
        "hooks_api_us": hook["api"],
        "hooks_sdk_us": hook["sdk"],
        "off_us": median["off"],
        "api_us": median["api"],
        "sdk_us": median["sdk"],
        "api_ratio": median["api"] / median["off"],
        "sdk_ratio": median["sdk"] / median["off"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    result = asyncio.run(main(args.requests, args.rounds))
    print(f"telemetry off (no opentelemetry): {result['off_us']:8.1f} us/request")
    print(
        f"API installed, no SDK:            {result['api_us']:8.1f} us/request "
        f"({result['api_ratio']:.2f}x)"
    )
    print(
        f"SDK on, in-memory exporters:      {result['sdk_us']:8.1f} us/request "
        f"({result['sdk_ratio']:.2f}x)"
    )
    print(
        f"the hooks alone, per call: off {result['hooks_off_us']:.1f} us, "
        f"API {result['hooks_api_us']:.1f} us, SDK {result['hooks_sdk_us']:.1f} us"
    )
    Path(__file__).with_suffix(".last.json").write_text(json.dumps(result))

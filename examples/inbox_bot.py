"""A complete bot: new mail, torrent hits and site alerts, each once, to a webhook.

Try it with no account: it starts the embedded fake server and adds a few new
items, so something shows within seconds (Ctrl-C to stop)::

    python examples/inbox_bot.py

Against the real site, with your credentials in the environment (the same
variables as the ``biotorrents`` command; cookies are needed for torrent hits)::

    export BIOTORRENTS_TOKEN=... BIOTORRENTS_COOKIES='session=...; userid=...'
    python examples/inbox_bot.py --real --webhook https://chat.example/hooks/abc

The cursor lives in ``--store`` (a SQLite file): stop the bot, start it again,
and it picks up what arrived meanwhile, without repeating what it already sent.
SIGINT and SIGTERM stop it cleanly.

With ``--metrics-port 9464`` (needs ``pip install "biotorrents-async[prometheus]"``)
it also serves, on 127.0.0.1 (``--metrics-host`` to change it), ``/metrics`` for
Prometheus and ``/health``: the streams' health as JSON, HTTP 503 when one is
not ready or failing (docs/monitoring.md)::

    python examples/inbox_bot.py --metrics-port 9464
    curl -s localhost:9464/metrics | grep biotorrents_
    curl -s localhost:9464/health
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from biotorrents_async import (
    Alert,
    BioTorrentsClient,
    BioTorrentsError,
    ConversationSummary,
    FileStore,
    MemoryStore,
    RateLimit,
    TorrentNotification,
    WatchStream,
    merge_streams,
)
from biotorrents_async.testing import FakeBioTorrents


def describe(item: Any) -> str:
    """One line for a person."""
    if isinstance(item, ConversationSummary):
        return f"mail from {item.username or 'System'}: {item.subject}"
    if isinstance(item, TorrentNotification):
        return f"torrent hit: {item.group_name} ({item.media})"
    if isinstance(item, Alert):
        return f"alert [{item.kind}]: {item.message}"
    return repr(item)


async def forward(item: Any, webhook: str | None, http: aiohttp.ClientSession) -> None:
    """Print the item, or POST it as JSON to the webhook."""
    text = describe(item)
    if webhook is None:
        print(text, flush=True)
        return
    async with http.post(webhook, json={"text": text}) as answer:
        answer.raise_for_status()  # a failed POST stops the bot: item not lost


#: Consecutive failed polls after which /health says the bot is unhealthy.
UNHEALTHY_AFTER = 3


def use_prometheus() -> None:
    """Send this process's OpenTelemetry metrics to prometheus_client's registry.

    Call it once, before the client is used; a tracer provider (OTLP, ...) can
    be set alongside (docs/monitoring.md).
    """
    from opentelemetry import metrics
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider

    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))


def health(streams: list[WatchStream[Any]]) -> tuple[bool, dict[str, Any]]:
    """Whether every stream is well, and each one's ``stream.health``, as JSON."""
    report = []
    healthy = True
    for stream in streams:
        h = stream.health
        # A standby replica is well: it takes over when the active one stops.
        well = (
            h.role in ("active", "standby")
            and (h.ready or h.role == "standby")
            and h.consecutive_failures < UNHEALTHY_AFTER
        )
        healthy = healthy and well
        report.append(
            {
                "kind": h.kind,
                "name": h.name,
                "role": h.role,
                "ready": h.ready,
                "last_success": h.last_success.isoformat() if h.last_success else None,
                "consecutive_failures": h.consecutive_failures,
                "last_error": h.last_error,  # redacted, like every error
                "healthy": well,
            }
        )
    return healthy, {"healthy": healthy, "streams": report}


def metrics_app(streams: list[WatchStream[Any]]) -> web.Application:
    """``/metrics`` (Prometheus text format) and ``/health`` (JSON; 503 if unwell)."""
    import prometheus_client

    async def scrape(_: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(prometheus_client.REGISTRY)
        return web.Response(
            body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        healthy, report = health(streams)
        return web.json_response(report, status=200 if healthy else 503)

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/health", healthz)
    return app


@contextlib.asynccontextmanager
async def serve_metrics(
    streams: list[WatchStream[Any]], port: int, host: str = "127.0.0.1"
) -> AsyncIterator[int]:
    """Serve ``metrics_app`` on ``host:port`` (``0``: any free port) while open."""
    runner = web.AppRunner(metrics_app(streams), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def site(real: bool, live: float) -> AsyncIterator[BioTorrentsClient]:
    """The client: from the environment, or on the fake server with live items."""
    if real:
        async with BioTorrentsClient.from_env() as client:
            yield client
        return
    rule = RateLimit(2, 0.5)  # the real rule, twelve times faster
    async with FakeBioTorrents(rate_limit=rule) as fake:
        print(f"(the fake BioTorrents.de at {fake.url}; --real for the site)")

        async def add_items() -> None:
            # A new fake every run: its items are new ones, stamped to show it.
            for n in range(1, 1000):
                await asyncio.sleep(live)
                stamp = time.strftime("%H:%M:%S")
                if n % 3 == 1:
                    subject = f"Hello #{n} ({stamp})"
                    fake.data.add_conversation(subject, sender=3, recipient=2)
                elif n % 3 == 2:
                    group = fake.data.add_group(f"Sequencing run #{n} ({stamp})")
                    torrent = fake.data.add_torrent(group, uploader=3)
                    fake.data.add_notification(2, torrent)
                elif n % 6 == 3:
                    # Quotes are one alert on the site: "New quote", then "New
                    # quotes" from the second on; later quotes show nothing new
                    # until they are read (cleared). So not one alert per quote.
                    fake.data.add_quote(2, by=3, body=f"Quote #{n} ({stamp})")
                else:
                    fake.data.add_news(f"Maintenance window #{n} ({stamp})")

        feeder = asyncio.create_task(add_items())
        try:
            async with BioTorrentsClient(
                fake.token, cookies=fake.cookies, base_url=fake.url, rate_limit=rule
            ) as client:
                yield client
        finally:
            feeder.cancel()


async def run(args: argparse.Namespace) -> None:
    # On the fake, a cursor file of yesterday's run would call today's items
    # old: a new fake numbers its torrents and posts from the start again.
    store = FileStore(args.store) if args.store else MemoryStore()
    interval = None if args.real else 1.0
    async with (
        site(args.real, live=1.5) as client,
        aiohttp.ClientSession() as http,
        client.inbox.watch(store=store, interval=interval) as inbox,
        client.notifications.watch_torrents(store=store, interval=interval) as hits,
        client.notifications.watch_alerts(store=store, interval=interval) as alerts,
        contextlib.AsyncExitStack() as extras,
    ):
        if args.metrics_port is not None:
            served = serve_metrics(
                [inbox, hits, alerts], args.metrics_port, args.metrics_host
            )
            port = await extras.enter_async_context(served)
            print(f"(metrics on http://{args.metrics_host}:{port}/metrics, /health)")
        async for _, item in merge_streams(inbox, hits, alerts):
            await forward(item, args.webhook, http)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="use the real site")
    parser.add_argument("--webhook", help="POST each item here as {'text': ...}")
    parser.add_argument(
        "--store",
        help="the cursor file (default inbox_bot.db with --real; on the fake, "
        "none: each run is a new fake)",
    )
    parser.add_argument("--seconds", type=float, help="stop after this long")
    parser.add_argument(
        "--metrics-port", type=int, help="serve /metrics and /health on this port"
    )
    parser.add_argument("--metrics-host", default="127.0.0.1", help="and address")
    args = parser.parse_args()
    if args.metrics_port is not None:
        use_prometheus()  # before the client records anything
    # Not one file for both: the fake's cursor would make the site's mail old.
    if args.real and not args.store:
        args.store = "inbox_bot.db"

    task = asyncio.create_task(run(args))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)  # a clean stop: cursors saved
    if args.seconds:
        loop.call_later(args.seconds, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        print("stopped", file=sys.stderr)
    except (BioTorrentsError, ValueError, aiohttp.ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

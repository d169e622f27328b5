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

from biotorrents_async import (
    Alert,
    BioTorrentsClient,
    BioTorrentsError,
    ConversationSummary,
    FileStore,
    MemoryStore,
    RateLimit,
    TorrentNotification,
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
    ):
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
    args = parser.parse_args()
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

"""Relay new mail, torrent hits and site alerts, each once, to a webhook.

    BIOTORRENTS_COOKIES='session=...; userid=...' WEBHOOK_URL=https://... \
    python relay_bot.py

Replicas on one BOT_STORE (a file, or redis://...) take turns; no WEBHOOK_URL:
JSON lines on stdout.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
from typing import Any

import aiohttp

from biotorrents_async import (
    BioTorrentsClient,
    FileStore,
    RedisStore,
    merge_streams,
    to_dict,
)


async def relay(client: BioTorrentsClient, post: Any, store: Any) -> None:
    """Hand every new item to ``post``, each once, until cancelled."""
    async with (
        client.inbox.watch(store=store) as inbox,
        client.notifications.watch_torrents(store=store) as hits,
        client.notifications.watch_alerts(store=store) as alerts,
    ):
        async for stream, item in merge_streams(inbox, hits, alerts):
            key, event = stream.key(item), stream.event(item)
            await post({"key": key, "event": event, "item": to_dict(item)})


def webhook(http: aiohttp.ClientSession, url: str | None) -> Any:
    async def post(body: dict[str, Any]) -> None:  # noqa: RET503 - returns or raises
        if url is None:
            return print(json.dumps(body, ensure_ascii=False), flush=True)
        for wait in (1, 2, 4, 8, 16, 32, 0):  # a minute, then the error stops it
            try:
                key = {"Idempotency-Key": body["key"]}  # a repeat is dropped
                async with http.post(url, json=body, headers=key) as answer:
                    return answer.raise_for_status()
            except aiohttp.ClientError:
                if not wait:
                    raise
                await asyncio.sleep(wait)

    return post


async def main() -> None:
    spec = os.environ.get("BOT_STORE", "relay_bot.db")
    store = RedisStore(spec) if spec.startswith("redis://") else FileStore(spec)
    logging.basicConfig(format="%(levelname)s %(message)s", level=logging.INFO)
    async with BioTorrentsClient.from_env() as client, aiohttp.ClientSession() as http:
        post = webhook(http, os.environ.get("WEBHOOK_URL"))
        task = asyncio.ensure_future(relay(client, post, store))
        for sig in (signal.SIGINT, signal.SIGTERM):  # a clean stop: cursor saved
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task


if __name__ == "__main__":
    asyncio.run(main())

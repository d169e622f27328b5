"""Iterate over every conversation in your inbox, page after page.

Each page is one request, paced to the server's rate limit (2 per 6 s), so a long
inbox takes a while; the client waits instead of getting throttled::

    BIOTORRENTS_TOKEN=... python examples/read_inbox.py
"""

from __future__ import annotations

import asyncio

from biotorrents_async import BioTorrentsClient, BioTorrentsError


async def main() -> None:
    async with BioTorrentsClient.from_env() as client:
        count = unread = 0
        async for conv in client.inbox.iter_conversations():
            count += 1
            unread += conv.unread
            print(f"{conv.conv_id:>8}  {conv.username or 'System':<20} {conv.subject}")
        print(f"{count} conversations, {unread} unread")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (BioTorrentsError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None

"""Print your profile and the first page of your inbox.

Run with a token from your BioTorrents.de profile settings::

    BIOTORRENTS_TOKEN=... python examples/quickstart.py

Set ``BIOTORRENTS_BASE_URL`` to point it elsewhere, for example at the fake server
(``biotorrents fake-server`` prints a token and a URL to use).
"""

from __future__ import annotations

import asyncio

from biotorrents_async import BioTorrentsClient, BioTorrentsError


async def main() -> None:
    async with BioTorrentsClient.from_env() as client:
        me = await client.index()
        # With a token only, `index` knows nothing but your id: name and class
        # come from your public profile.
        profile = await client.users.get(me.id)
        print(
            f"You are {profile.username} (id {me.id}), "
            f"class {profile.personal.class_name}"
        )
        print(
            f"  uploaded {profile.stats.uploaded:,} B, "
            f"downloaded {profile.stats.downloaded:,} B, "
            f"{me.notifications.messages} unread conversation(s)"
        )
        page = await client.inbox.conversations()
        print(f"Inbox, page {page.current_page} of {page.pages}:")
        for conv in page:
            who = conv.username or "System"
            mark = "*" if conv.unread else " "
            print(f" {mark} {conv.date:%Y-%m-%d}  {who:<20} {conv.subject}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (BioTorrentsError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None

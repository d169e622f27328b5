"""The fake's alerts and index counters as the real server makes them.

Recorded on the real code (api-reference §19): ``get_user_notifications_quotes*.txt``,
``get_user_notifications_two_news.txt`` and ``index_counters.txt``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from support import load_exchange

from biotorrents_async import BioTorrentsClient, Index
from biotorrents_async.testing import FakeBioTorrents


def recorded(name: str) -> Any:
    return json.loads(load_exchange(name).body)["response"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeBioTorrents]:
    async with FakeBioTorrents(rate_limit=None) as server:
        yield server


@pytest.fixture
async def client(fake: FakeBioTorrents) -> AsyncIterator[BioTorrentsClient]:
    async with BioTorrentsClient(
        fake.token, cookies=fake.cookies, base_url=fake.url, rate_limit=None
    ) as c:
        yield c


async def raw(fake: FakeBioTorrents, action: str) -> Any:
    """The ``response`` as the fake sends it, to compare with the recordings."""
    cookie = "; ".join(f"{k}={v}" for k, v in fake.cookies.items())
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{fake.url}/api.php", params={"action": action}, headers={"Cookie": cookie}
        ) as answer,
    ):
        return json.loads(await answer.read())["response"]


async def raw_alerts(fake: FakeBioTorrents) -> Any:
    return await raw(fake, "get_user_notifications")


async def test_quotes_are_one_alert_new_quote_then_new_quotes(
    fake: FakeBioTorrents, client: BioTorrentsClient
) -> None:
    await client.notifications.clear("Quotes")
    assert "Quotes" not in await client.notifications.alerts()
    fake.data.add_quote(2)
    one = (await raw_alerts(fake))["Quotes"]
    assert one == recorded("get_user_notifications_quotes.txt")["Quotes"]
    fake.data.add_quote(2)
    two = (await raw_alerts(fake))["Quotes"]
    assert two == recorded("get_user_notifications_quotes_two.txt")["Quotes"]
    fake.data.add_quote(2, by=3)
    # A third quote while two are unread changes nothing visible.
    assert (await raw_alerts(fake))["Quotes"] == two
    await client.notifications.clear("Quotes")
    assert "Quotes" not in await client.notifications.alerts()
    fake.data.add_quote(2)
    assert (await client.notifications.alerts())["Quotes"].message == "New quote"


async def test_news_shows_only_the_latest_post(
    fake: FakeBioTorrents, client: BioTorrentsClient
) -> None:
    await client.notifications.clear("News")
    assert "News" not in await client.notifications.alerts()
    fake.data.add_news("fixture news one")
    second = fake.data.add_news("fixture news two")
    alerts = await raw_alerts(fake)
    # Two posts between two reads: one alert, the latest, like the recording.
    real = recorded("get_user_notifications_two_news.txt")["News"]
    assert alerts["News"] == {
        "id": second,
        "message": "Announcement: fixture news two",
        "url": f"index.php#news{second}",
        "importance": real["importance"],
    }
    assert set(alerts["News"]) == set(real)
    await client.notifications.clear("News")
    assert "News" not in await client.notifications.alerts()


async def test_blog_shows_the_latest_important_post(
    fake: FakeBioTorrents, client: BioTorrentsClient
) -> None:
    await client.notifications.clear("Blog")
    assert not (await client.index()).notifications.new_blog
    important = fake.data.add_blog("Open data: 2 PB seeded")
    fake.data.add_blog("Lab party photos", important=False)
    blog = (await client.notifications.alerts())["Blog"]
    assert (blog.id, blog.message) == (important, "Blog: Open data: 2 PB seeded")
    assert blog.url == f"blog.php#blog{important}"
    assert (await client.index()).notifications.new_blog
    await client.notifications.clear("Blog")
    assert "Blog" not in await client.notifications.alerts()
    assert not (await client.index()).notifications.new_blog


async def test_inbox_and_torrents_are_counters(
    fake: FakeBioTorrents, client: BioTorrentsClient
) -> None:
    me = await client.index()
    alerts = await client.notifications.alerts()
    assert (
        alerts["Inbox"].message == f"You have {me.notifications.messages} new messages"
    )
    unread = me.notifications.notifications
    assert alerts["Torrents"].message == f"You have {unread} new torrent notifications"
    fake.data.add_conversation("One more", sender=3, recipient=2)
    alerts = await client.notifications.alerts()
    assert alerts["Inbox"].message == (
        f"You have {me.notifications.messages + 1} new messages"
    )
    await client.notifications.clear("Inbox")
    await client.notifications.clear("Torrents")
    alerts = await client.notifications.alerts()
    assert "Inbox" not in alerts
    assert "Torrents" not in alerts
    fake.data.add_conversation("Hello", sender=3, recipient=2)
    assert (await client.notifications.alerts())["Inbox"].message == (
        "You have a new message"
    )


async def test_index_counters_follow_the_data_but_not_quotes(
    fake: FakeBioTorrents, client: BioTorrentsClient
) -> None:
    real = recorded("index_counters.txt")["notifications"]
    for kind in ("Quotes", "News", "Blog", "Subscriptions"):
        await client.notifications.clear(kind)
    before = await raw(fake, "index")
    assert set(before["notifications"]) == set(real)
    assert before["notifications"]["newAnnouncement"] is False
    fake.data.add_quote(2)
    fake.data.add_quote(2)
    # Two unread quotes, as in the recording: index does not count them.
    assert (await raw(fake, "index"))["notifications"] == before["notifications"]
    fake.data.add_news("Tracker maintenance")
    after: Index = await client.index()
    assert after.notifications.new_announcement
    assert not after.notifications.new_subscriptions
    fake.data.add_subscription_post(2)
    assert (await client.index()).notifications.new_subscriptions
    subs = (await client.notifications.alerts())["Subscriptions"]
    assert (subs.id, subs.message) == (0, "New subscription")
    fake.data.add_subscription_post(2)
    # Exactly one, or False: the WhatCD bug the server keeps.
    assert not (await client.index()).notifications.new_subscriptions
    subs = (await client.notifications.alerts())["Subscriptions"]
    assert subs.message == "New subscriptions"
    await client.notifications.clear("Subscriptions")
    assert "Subscriptions" not in await client.notifications.alerts()

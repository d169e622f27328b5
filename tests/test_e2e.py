"""The client end to end against the fake server over real loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from biotorrents_async import (
    ApiError,
    AuthenticationError,
    BioTorrentsClient,
    CookiesRequiredError,
    LegacyApiUnavailableError,
    NotFoundError,
    RateLimit,
    RetryPolicy,
)
from biotorrents_async.testing import FakeBioTorrents, Fault

RULE = RateLimit(2, 0.1)
FAST_RETRY = RetryPolicy(attempts=4, backoff_initial=0.01, backoff_max=0.05)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBioTorrents]:
    async with FakeBioTorrents(rate_limit=RULE) as server:
        yield server


@pytest.fixture
async def client(fake: FakeBioTorrents) -> AsyncIterator[BioTorrentsClient]:
    async with BioTorrentsClient(
        fake.token,
        cookies=fake.cookies,
        base_url=fake.url,
        rate_limit=RULE,
        retry=FAST_RETRY,
    ) as c:
        yield c


def expected_inbox(fake: FakeBioTorrents, user_id: int) -> list[int]:
    """The inbox order the reference describes: sticky first, then newest."""
    rows = []
    for conv in fake.data.conversations.values():
        received = [m.sent for m in conv.messages if m.sender_id != user_id]
        if user_id in conv.participants and received:
            rows.append((conv.sticky, max(received), conv.id))
    return [r[2] for r in sorted(rows, reverse=True)]


async def test_every_endpoint(fake: FakeBioTorrents, client: BioTorrentsClient) -> None:
    me = await client.index()
    assert (me.id, me.username, me.userstats.class_name) == (2, "kestrel", "Power User")
    assert me.passkey == fake.data.users[2].passkey
    user = await client.users.get(2)
    assert user.avatar == "https://img.example.org/a.png?w=64&h=64"
    assert user.stats.ratio == pytest.approx(1.66667)
    hits = [u.username async for u in client.users.iter_search("jim")]
    assert hits == ["Ana Jiménez"]
    stats = await client.users.community_stats(2)
    assert (stats.seeding, stats.snatched, stats.seedingperc) == (1204, 1377, 87)
    recents = await client.users.recents(2, limit=2)
    assert recents.snatches is not None
    assert len(recents.snatches) == 2
    posts = await client.users.posts(2)
    assert posts.pages == 3
    assert "<now> & later" in posts.items[0].bb_body
    conv_ids = [c.conv_id async for c in client.inbox.iter_conversations()]
    assert conv_ids == expected_inbox(fake, 2)
    conversation = await client.inbox.conversation(conv_ids[0])
    assert conversation.messages[0].sender_name == "Kenji 渡辺"
    groups = await client.bookmarks.torrents()
    assert [g.id for g in groups] == fake.data.bookmarks[2]
    artists = await client.bookmarks.artists()
    assert [a.artist_name for a in artists] == ["Ana Jiménez", "Escherichia Lab"]
    hits_page = await client.notifications.torrents()
    assert (hits_page.current_page, hits_page.pages, len(hits_page)) == (1, 2, 50)
    alerts = await client.notifications.alerts()
    assert "StaffPM" in alerts
    await client.notifications.clear("StaffPM")
    assert "StaffPM" not in await client.notifications.alerts()
    rejected = [r for r in fake.requests if r.outcome == "rate-limited"]
    assert rejected == []


async def test_iterations_span_pages_exactly_once(client: BioTorrentsClient) -> None:
    users = [u.user_id async for u in client.users.iter_search("lab")]
    assert len(users) == len(set(users)) > 60
    posts = [p.post_id async for p in client.users.iter_posts(2)]
    assert len(posts) == len(set(posts)) == 56
    hits = [n.torrent_id async for n in client.notifications.iter_torrents()]
    # One row per torrent (the real table's key is user + torrent).
    assert len(hits) == len(set(hits)) == 60


async def test_an_iteration_yields_a_conversation_that_moves_down_once(
    fake: FakeBioTorrents, client: BioTorrentsClient
) -> None:
    before = expected_inbox(fake, 2)
    assert len(before) == 55  # three pages of 25
    lifted = fake.data.conversations[before[49]]  # on page 2, last place
    seen = []
    async for conv in client.inbox.iter_conversations():
        seen.append(conv.conv_id)
        if len(seen) == 25:  # page 1 is read, page 2 is not yet
            # A reply lifts a conversation to the top (after the sticky one):
            # every one above its old place moves down by one, so page 1's
            # last is now page 2's first.
            other = next(p for p in lifted.participants if p != 2)
            fake.data.add_reply(lifted, sender=other)
    assert before[24] == expected_inbox(fake, 2)[25]
    assert len(seen) == len(set(seen))  # page 1's last came once
    # The one that jumped above the reader is not seen: watch() is for that.
    assert seen == [c for c in before if c != lifted.id]


async def test_token_only_client_sees_the_skeletal_user(fake: FakeBioTorrents) -> None:
    async with BioTorrentsClient(
        fake.token, base_url=fake.url, rate_limit=RULE, retry=FAST_RETRY
    ) as client:
        me = await client.index()
        assert (me.id, me.username, me.authkey) == (2, None, None)
        assert client.auth_mode == "token"
        # The server refuses token-only notifications; the client says why at
        # once instead of spending a request on it.
        with pytest.raises(CookiesRequiredError, match="cookie session"):
            await client.notifications.torrents()
        assert [r.action for r in fake.requests] == ["index"]
        with pytest.raises(ApiError, match="bad parameters"):
            await client._session.request("notifications")


async def test_default_pacing_many_callers_zero_rejections(
    fake: FakeBioTorrents, client: BioTorrentsClient
) -> None:
    results = await asyncio.gather(*(client.users.get(1 + i) for i in range(24)))
    assert len(results) == 24
    outcomes = [r.outcome for r in fake.requests]
    assert outcomes.count("ok") == 24
    assert "rate-limited" not in outcomes


async def test_faults_are_retried_and_nothing_lost(
    fake: FakeBioTorrents, client: BioTorrentsClient
) -> None:
    fake.faults.schedule(
        Fault.HTTP_502,
        Fault.TRUNCATE,
        Fault.HTML_ERROR,
        None,
        Fault.RATE_LIMIT,
        Fault.DROP,
        None,
        Fault.DROP,
        Fault.HTTP_503,
    )
    # Every dropped connection costs an attempt of ours (aiohttp's own silent
    # resend is refused: the server may have counted the dropped request).
    ids = [c.conv_id async for c in client.inbox.iter_conversations()]
    assert ids == expected_inbox(fake, 2)
    assert client.stats["rate_limit_pauses"] == 1
    assert client.stats["retries"] == 7


async def test_auth_failures_reach_the_server_once(fake: FakeBioTorrents) -> None:
    token = fake.add_token(3)
    fake.revoke_token(token)
    async with BioTorrentsClient(
        token, base_url=fake.url, rate_limit=RULE, retry=FAST_RETRY
    ) as client:
        with pytest.raises(AuthenticationError, match="token revoked"):
            await client.index()
    async with BioTorrentsClient(
        cookies={"session": "expired", "userid": "2"},
        base_url=fake.url,
        rate_limit=RULE,
        retry=FAST_RETRY,
    ) as client:
        with pytest.raises(AuthenticationError, match=r"login\.php"):
            await client.index()
    assert [r.outcome for r in fake.requests] == ["failure", "login-redirect"]


async def test_not_found_and_bare_failures(client: BioTorrentsClient) -> None:
    with pytest.raises(NotFoundError):
        await client.users.get(99_999)
    with pytest.raises(NotFoundError, match="conversation 99999"):
        await client.inbox.conversation(99_999)


async def test_new_api_server_is_reported_clearly() -> None:
    async with FakeBioTorrents(new_api=True) as fake:
        async with BioTorrentsClient(fake.token, base_url=fake.url) as client:
            with pytest.raises(LegacyApiUnavailableError, match="JSON:API"):
                await client.index()
        assert len(fake.requests) == 1


async def test_ajax_php_deployments(fake: FakeBioTorrents) -> None:
    async with BioTorrentsClient(
        fake.token, base_url=fake.url, api_path="ajax.php", rate_limit=RULE
    ) as client:
        await client.index()
    assert fake.requests[0].path == "/ajax.php"


async def test_added_data_shows_up(
    fake: FakeBioTorrents, client: BioTorrentsClient
) -> None:
    other = fake.data.add_user("Zoë & Co")
    fake.data.add_conversation(
        "Hello <there>", sender=other.id, recipient=2, bodies=["first", "second & last"]
    )
    page = await client.inbox.conversations()
    newest = page.items[1]  # after the sticky one
    assert (newest.subject, newest.username, newest.unread) == (
        "Hello <there>",
        "Zoë & Co",
        True,
    )
    conv = await client.inbox.conversation(newest.conv_id)
    assert [m.bb_body for m in conv.messages] == ["first", "second & last"]
    page = await client.inbox.conversations()
    assert page.items[1].unread is False  # viewconv marked it read

"""Every row of the endpoint table, against recorded answers (aioresponses)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from support import Call, Exchange, Router

from biotorrents_async import (
    AlertKind,
    ApiError,
    BioTorrentsClient,
    Box,
    CookiesRequiredError,
    SearchType,
)


async def test_index(api: Router, client: BioTorrentsClient) -> None:
    api.reply("bearer_index.txt")
    me = await client.index()
    assert (me.id, me.username, me.passkey) == (2, None, None)
    assert api.calls[0].query == {"action": "index"}


async def test_users_get(api: Router, client: BioTorrentsClient) -> None:
    api.reply("user_id2_self.txt")
    user = await client.users.get(2)
    assert user.username == "labuser"
    assert user.community.posts == 5
    assert api.calls[0].query == {"action": "user", "id": "2"}


async def test_users_search_page(api: Router, client: BioTorrentsClient) -> None:
    api.reply("usersearch.txt")
    page = await client.users.search("lab", page=1)
    assert [r.username for r in page] == ["labadmin", "labuser"]
    assert (page.current_page, page.pages, page.has_next, len(page)) == (1, 1, False, 2)
    assert api.calls[0].query == {"action": "usersearch", "search": "lab", "page": "1"}


async def test_users_community_stats(api: Router, client: BioTorrentsClient) -> None:
    api.reply("community_stats.txt")
    stats = await client.users.community_stats(2)
    assert (stats.snatched, stats.usnatched) == (2, None)
    assert api.calls[0].query == {"action": "community_stats", "userid": "2"}


async def test_users_recents(api: Router, client: BioTorrentsClient) -> None:
    api.reply("user_recents.txt")
    recents = await client.users.recents(2, limit=50)
    assert recents.snatches is not None
    assert len(recents.snatches) == 2
    assert api.calls[0].query == {
        "action": "user_recents",
        "userid": "2",
        "limit": "50",
    }


async def test_users_posts(api: Router, client: BioTorrentsClient) -> None:
    api.reply("userhistory_posts.txt")
    page = await client.users.posts(2, page=1)
    assert page.items[0].bb_body == "Fifth post by labuser; unicode: Grüße ✓"
    assert page.items[0].body == "<p>Fifth post by labuser; unicode: Grüße ✓</p>"
    assert api.calls[0].query == {
        "action": "userhistory",
        "type": "posts",
        "userid": "2",
        "page": "1",
    }


async def test_inbox_conversations(api: Router, client: BioTorrentsClient) -> None:
    api.reply("inbox_sentbox.txt")
    page = await client.inbox.conversations(
        page=1,
        box="sentbox",
        search="lab",
        search_type=SearchType.SUBJECT,
        unread_first=True,
    )
    assert page.items[0].username == "labadmin"
    assert api.calls[0].query == {
        "action": "inbox",
        "type": "sentbox",
        "search": "lab",
        "searchtype": "subject",
        "sort": "unread",
        "page": "1",
    }


async def test_inbox_system_sender_has_no_name(
    api: Router, client: BioTorrentsClient
) -> None:
    api.reply("inbox.txt")
    page = await client.inbox.conversations()
    system = next(c for c in page if c.sender_id == 0)
    assert system.username is None
    assert system.avatar is None
    assert api.calls[0].query == {"action": "inbox", "type": "inbox", "page": "1"}


async def test_inbox_conversation(api: Router, client: BioTorrentsClient) -> None:
    api.reply("inbox_viewconv.txt")
    conv = await client.inbox.conversation(2)
    assert conv.conv_id == 2
    assert [m.message_id for m in conv.messages] == [2, 6, 7]
    assert conv.messages[2].bb_body.endswith("[b]bbcode[/b].")
    assert api.calls[0].query == {"action": "inbox", "type": "viewconv", "id": "2"}


async def test_bookmarks(api: Router, client: BioTorrentsClient) -> None:
    api.reply("bookmarks_torrents.txt", "bookmarks_artists.txt")
    groups = await client.bookmarks.torrents()
    artists = await client.bookmarks.artists()
    assert [g.id for g in groups] == [1, 3]
    assert groups[0].torrents[0].has_file == 1
    assert artists[0].artist_name == "Escherichia Lab"
    assert [c.query for c in api.calls] == [
        {"action": "bookmarks", "type": "torrents"},
        {"action": "bookmarks", "type": "artists"},
    ]


async def test_bookmarks_wrong_shape(api: Router, client: BioTorrentsClient) -> None:
    from biotorrents_async import ResponseError

    api.json('{"status":"success","response":{"nope":[]}}')
    with pytest.raises(ResponseError):
        await client.bookmarks.torrents()


async def test_notifications_torrents_current_pages(
    api: Router, cookie_client: BioTorrentsClient
) -> None:
    api.reply("notifications_poweruser.txt")
    page = await cookie_client.notifications.torrents()
    assert page.current_page == 1
    assert page.items[0].group_name == "Human chr21 reads"
    assert page.items[0].format is None
    assert api.calls[0].query == {"action": "notifications", "page": "1"}


async def test_notifications_token_only_fails_without_sending(
    api: Router, client: BioTorrentsClient
) -> None:
    with pytest.raises(CookiesRequiredError, match="cookie session"):
        await client.notifications.torrents()
    with pytest.raises(CookiesRequiredError):
        client.notifications.iter_torrents()
    assert api.calls == []
    # What the server would have said (recorded): a bare "bad parameters".
    api.reply("bearer_notifications.txt")
    with pytest.raises(ApiError, match="bad parameters"):
        await client._session.request("notifications", {"page": "1"})


async def test_alerts(api: Router, client: BioTorrentsClient) -> None:
    api.reply("get_user_notifications.txt")
    api.json('{"status":"success","response":[],"info":{}}')
    alerts = await client.notifications.alerts()
    assert list(alerts) == ["News", "Inbox"]
    assert alerts["Inbox"].message == "You have 3 new messages"
    assert await client.notifications.alerts() == {}


@pytest.mark.parametrize("kind", [AlertKind.INBOX, "Torrents", "StaffPM"])
async def test_clear_posts_form_type_and_accepts_empty_body(
    api: Router, client: BioTorrentsClient, kind: AlertKind | str
) -> None:
    api.reply("clear_user_notification_post_only.txt")
    assert await client.notifications.clear(kind) is None
    (call,) = api.calls
    assert call.method == "POST"
    assert call.query == {"action": "clear_user_notification"}
    assert call.data == {"type": str(kind)}


# --- paging ----------------------------------------------------------------------


def paged(
    total: int, per_page: int, key: str = "messages", page_key: str = "currentPage"
) -> Callable[[Call], Exchange]:
    """A handler that serves `total` inbox-like items, `per_page` per page."""

    def handler(call: Call) -> Exchange:
        page = int(call.query.get("page", "1"))
        pages = -(-total // per_page)
        start = (page - 1) * per_page
        items = [conversation(i) for i in range(start, min(total, start + per_page))]
        body = {"currentPage": page, "pages": pages, key: items}
        if page_key != "currentPage":
            body[page_key] = body.pop("currentPage")
        return Exchange(
            200, {}, json.dumps({"status": "success", "response": body}).encode()
        )

    return handler


def conversation(i: int) -> dict[str, Any]:
    return {
        "convId": 1000 - i,
        "subject": f"Subject {i} &amp; co",
        "unread": False,
        "sticky": False,
        "forwardedId": 0,
        "forwardedName": "",
        "senderId": 5,
        "username": "x",
        "avatar": "",
        "donor": False,
        "warned": False,
        "enabled": True,
        "date": "2021-01-16 08:41:09",
    }


async def test_iter_conversations_walks_all_pages(
    api: Router, client: BioTorrentsClient
) -> None:
    api.handler = paged(total=60, per_page=25)
    ids = [c.conv_id async for c in client.inbox.iter_conversations()]
    assert ids == [1000 - i for i in range(60)]
    assert [c.query["page"] for c in api.calls] == ["1", "2", "3"]


async def test_iter_stops_at_limit_without_fetching_more(
    api: Router, client: BioTorrentsClient
) -> None:
    api.handler = paged(total=60, per_page=25)
    subjects = [
        c.subject async for c in client.inbox.iter_conversations(start_page=2, limit=26)
    ]
    assert subjects[0] == "Subject 25 & co"
    assert len(subjects) == 26
    assert [c.query["page"] for c in api.calls] == ["2", "3"]


async def test_iter_stops_on_empty_page_even_if_pages_lies(
    api: Router, client: BioTorrentsClient
) -> None:
    api.json(
        '{"status":"success","response":{"currentPage":1,"pages":9,"messages":[]}}'
    )
    assert [c async for c in client.inbox.iter_conversations()] == []
    assert len(api.calls) == 1


async def test_iter_past_the_end(api: Router, client: BioTorrentsClient) -> None:
    api.reply("page_past_last_usersearch.txt")
    assert [r async for r in client.users.iter_search("lab", start_page=99)] == []


async def test_iter_posts_and_search_and_notifications(
    api: Router, cookie_client: BioTorrentsClient
) -> None:
    api.reply("userhistory_posts.txt", "usersearch.txt", "notifications_poweruser.txt")
    client = cookie_client
    posts = [p.post_id async for p in client.users.iter_posts(2)]
    users = [u.user_id async for u in client.users.iter_search("lab")]
    hits = [n.torrent_id async for n in client.notifications.iter_torrents(limit=1)]
    assert len(posts) == 5
    assert users == [1, 2]
    assert hits == [2]
    assert api.calls[2].query == {"action": "notifications", "page": "1"}


# --- argument validation -----------------------------------------------------------

BAD_CALLS: list[tuple[str, Callable[[BioTorrentsClient], Any]]] = [
    ("user_id", lambda c: c.users.get(0)),
    ("user_id", lambda c: c.users.get("5")),
    ("user_id", lambda c: c.users.get(True)),
    ("query", lambda c: c.users.search("")),
    ("query", lambda c: c.users.search("  ")),
    ("query", lambda c: c.users.search("0")),
    ("page", lambda c: c.users.search("x", page=0)),
    ("query", lambda c: c.users.iter_search("")),
    ("limit", lambda c: c.users.iter_search("x", limit=0)),
    ("start_page", lambda c: c.users.iter_search("x", start_page=0)),
    ("user_id", lambda c: c.users.community_stats(-1)),
    ("limit", lambda c: c.users.recents(1, limit=51)),
    ("limit", lambda c: c.users.recents(1, limit=0)),
    ("user_id", lambda c: c.users.posts(0)),
    ("page", lambda c: c.users.posts(1, page=-2)),
    ("user_id", lambda c: c.users.iter_posts(0)),
    ("box", lambda c: c.inbox.conversations(box="trash")),
    ("search_type", lambda c: c.inbox.conversations(search="x", search_type="body")),
    ("search", lambda c: c.inbox.conversations(search="x")),
    ("search", lambda c: c.inbox.conversations(search_type="user")),
    ("page", lambda c: c.inbox.conversations(page=0)),
    ("box", lambda c: c.inbox.iter_conversations(box="outbox")),
    ("limit", lambda c: c.inbox.iter_conversations(limit=-1)),
    ("conv_id", lambda c: c.inbox.conversation(0)),
    ("page", lambda c: c.notifications.torrents(page=0)),
    ("start_page", lambda c: c.notifications.iter_torrents(start_page=0)),
    ("kind", lambda c: c.notifications.clear("inbox")),
    ("kind", lambda c: c.notifications.clear("Everything")),
]

# Arguments of the wrong type: a TypeError that is also a ValueError.
WRONG_TYPES: list[tuple[str, Callable[[BioTorrentsClient], Any]]] = [
    ("page", lambda c: c.users.search("x", page="2")),
    ("page", lambda c: c.users.search("x", page=1.0)),
    ("query", lambda c: c.users.search(None)),
    ("query", lambda c: c.users.search(5)),
    ("limit", lambda c: c.users.iter_search("x", limit=1.5)),
    ("limit", lambda c: c.users.recents(1, limit="5")),
    ("user_id", lambda c: c.users.community_stats(1.0)),
    ("user_id", lambda c: c.users.recents(None)),
    ("start_page", lambda c: c.users.iter_posts(1, start_page="1")),
    ("box", lambda c: c.inbox.conversations(box=5)),
    ("search", lambda c: c.inbox.conversations(search=5, search_type="user")),
    ("search_type", lambda c: c.inbox.conversations(search="x", search_type=5)),
    ("unread_first", lambda c: c.inbox.conversations(unread_first="yes")),
    ("unread_first", lambda c: c.inbox.iter_conversations(unread_first=1)),
    ("conv_id", lambda c: c.inbox.conversation("3")),
    ("kind", lambda c: c.notifications.clear(None)),
    ("kind", lambda c: c.notifications.clear(5)),
]


@pytest.mark.parametrize(("argument", "call"), WRONG_TYPES)
async def test_wrong_argument_types_raise_before_any_request(
    api: Router,
    client: BioTorrentsClient,
    argument: str,
    call: Callable[[BioTorrentsClient], Any],
) -> None:
    with pytest.raises(TypeError, match=argument) as info:  # noqa: PT012
        result = call(client)
        if hasattr(result, "__await__"):
            await result
    assert isinstance(info.value, ValueError)
    assert api.calls == []


@pytest.mark.parametrize(("argument", "call"), BAD_CALLS)
async def test_invalid_arguments_raise_before_any_request(
    api: Router,
    client: BioTorrentsClient,
    argument: str,
    call: Callable[[BioTorrentsClient], Any],
) -> None:
    # iter_* must fail at the call itself, before any `anext`; coroutine methods
    # fail when awaited, which is when their call happens.
    with pytest.raises(ValueError, match=argument):  # noqa: PT012
        result = call(client)
        if hasattr(result, "__await__"):
            await result
    assert api.calls == []


def test_enums_are_their_strings() -> None:
    assert Box.SENTBOX == "sentbox"
    assert SearchType.USER == "user"
    assert [k.value for k in AlertKind] == [
        "Inbox",
        "News",
        "Blog",
        "StaffPM",
        "Torrents",
        "Quotes",
        "Subscriptions",
        "Collages",
        "Global",
    ]

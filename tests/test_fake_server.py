"""The fake server behaves like the real one: its answers against recorded ones."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from support import TOKEN, load_exchange, load_exchanges

from biotorrents_async import RateLimit
from biotorrents_async.testing import DEMO_COOKIES, DEMO_TOKEN, FakeBioTorrents, Fault
from biotorrents_async.testing._live import add_live_item

BEARER = {"Authorization": f"Bearer {DEMO_TOKEN}"}
COOKIE = {"Cookie": "; ".join(f"{k}={v}" for k, v in DEMO_COOKIES.items())}


@pytest.fixture
async def fake() -> AsyncIterator[FakeBioTorrents]:
    async with FakeBioTorrents(rate_limit=None) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def get(
    http: aiohttp.ClientSession,
    fake: FakeBioTorrents,
    query: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    data: Any = None,
) -> tuple[int, dict[str, str], bytes]:
    async with http.request(
        method,
        f"{fake.url}/api.php?{query}",
        headers=COOKIE if headers is None else headers,
        data=data,
        allow_redirects=False,
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def same_shape(real: Any, fake: Any, path: str = "$") -> None:
    """Assert that two JSON values have the same keys at every level.

    An empty list on either side matches any list (the data sets differ).
    """
    if isinstance(real, dict):
        assert isinstance(fake, dict), path
        assert set(fake) == set(real), path
        for key in real:
            same_shape(real[key], fake[key], f"{path}.{key}")
    elif isinstance(real, list):
        assert isinstance(fake, list), path
        if real and fake:
            same_shape(real[0], fake[0], f"{path}[0]")


def envelope_keys(body: bytes) -> set[str]:
    return set(json.loads(body))


# What the fake must answer like, recorded from the real server code.
PARITY = [
    ("action=index", COOKIE, "index.txt"),
    ("action=index", BEARER, "bearer_index.txt"),
    ("action=user&id=1", COOKIE, "user_id1.txt"),
    ("action=usersearch&search=labadmin", COOKIE, "usersearch.txt"),
    ("action=community_stats&userid=2", COOKIE, "community_stats.txt"),
    ("action=user_recents&userid=2", COOKIE, "user_recents.txt"),
    ("action=userhistory&type=posts&userid=2", COOKIE, "userhistory_posts.txt"),
    ("action=inbox", COOKIE, "inbox.txt"),
    ("action=inbox&type=viewconv&id=2", COOKIE, "inbox_viewconv.txt"),
    ("action=bookmarks&type=torrents", COOKIE, "bookmarks_torrents.txt"),
    ("action=bookmarks&type=artists", COOKIE, "bookmarks_artists.txt"),
    ("action=notifications", COOKIE, "notifications_poweruser.txt"),
    ("action=get_user_notifications", COOKIE, "get_user_notifications.txt"),
    ("action=user&id=99999", COOKIE, "fail_user_nonexistent.txt"),
    ("action=user&id=abc", COOKIE, "fail_user_bad_id.txt"),
    ("action=usersearch", COOKIE, "fail_usersearch_empty.txt"),
    ("action=userhistory&type=bogus&userid=2", COOKIE, "fail_userhistory_bad_type.txt"),
    ("action=bookmarks&type=bogus", COOKIE, "fail_bookmarks_bad_type.txt"),
    ("action=notifications", BEARER, "bearer_notifications.txt"),
    ("action=doesnotexist", COOKIE, "fail_unknown_action.txt"),
    (
        "action=user_recents&userid=2&limit=51",
        COOKIE,
        "fail_user_recents_limit_over_50.txt",
    ),
    ("action=usersearch&search=lab&page=99", COOKIE, "page_past_last_usersearch.txt"),
    ("action=inbox&page=99", COOKIE, "page_past_last_inbox.txt"),
]


@pytest.mark.parametrize(("query", "headers", "recorded"), PARITY)
async def test_answers_have_the_real_servers_shape(
    fake: FakeBioTorrents,
    http: aiohttp.ClientSession,
    query: str,
    headers: dict[str, str],
    recorded: str,
) -> None:
    real = load_exchange(recorded)
    status, got_headers, body = await get(http, fake, query, headers)
    assert status == real.status
    assert got_headers["Content-Type"] == real.headers["Content-Type"]
    real_doc, fake_doc = json.loads(real.body), json.loads(body)
    assert envelope_keys(body) == set(real_doc) - {"debug"}
    real_response, fake_response = real_doc.get("response"), fake_doc.get("response")
    if recorded.startswith("get_user_notifications"):
        # Keyed by notice type, which depends on the data: compare the entries.
        real_response = next(iter(real_response.values()))
        fake_response = next(iter(fake_response.values()))
    same_shape(real_response, fake_response)
    assert fake_doc.get("error") == real_doc.get("error")


async def test_failure_then_html_like_the_real_server(
    fake: FakeBioTorrents, http: aiohttp.ClientSession
) -> None:
    real = load_exchange("fail_viewconv_not_participant.txt")
    status, _, body = await get(http, fake, "action=inbox&type=viewconv&id=99999")
    assert status == real.status
    assert body.startswith(b'{"status":"failure"}\n<!doctype html>')


async def test_logged_out_gets_302_to_login(
    fake: FakeBioTorrents, http: aiohttp.ClientSession
) -> None:
    for headers in ({}, {"Cookie": "session=nonsense; userid=2"}):
        status, got, body = await get(http, fake, "action=index", headers)
        assert status == 302
        assert got["Location"] == "login.php"
        assert body.startswith(b"<!doctype html>")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (f"Bearer {TOKEN}", "invalid token format"),
        (DEMO_TOKEN, "authorization type must be Bearer"),
        (f"token {DEMO_TOKEN}", "authorization type must be Bearer"),
        (f"Bearer  {DEMO_TOKEN}", "authorization type must be Bearer"),
    ],
)
async def test_token_failures(
    fake: FakeBioTorrents, http: aiohttp.ClientSession, header: str, message: str
) -> None:
    status, _, body = await get(http, fake, "action=index", {"Authorization": header})
    assert status == 200
    assert json.loads(body) == {
        "status": "failure",
        "error": message,
        "info": {"source": "BioTorrents.de", "version": 1},
    }


async def test_revoked_token(
    fake: FakeBioTorrents, http: aiohttp.ClientSession
) -> None:
    token = fake.add_token(3)
    fake.revoke_token(token)
    _, _, body = await get(
        http, fake, "action=index", {"Authorization": f"Bearer {token}"}
    )
    assert json.loads(body)["error"] == "token revoked"


async def test_escaping_numbers_and_slashes(
    fake: FakeBioTorrents, http: aiohttp.ClientSession
) -> None:
    _, _, body = await get(http, fake, "action=usersearch&search=Jim")
    assert b"Ana Jim&eacute;nez" in body
    _, _, body = await get(http, fake, "action=usersearch&search=Kenji")
    assert b"Kenji &#28193;&#36794;" in body
    _, _, body = await get(http, fake, "action=community_stats&userid=2")
    stats = json.loads(body)["response"]
    assert stats["seeding"] == "1,204"
    assert stats["leeching"] == 0
    assert stats["usnatched"] is False
    _, _, body = await get(http, fake, "action=user&id=2")
    assert b"https:\\/\\/img.example.org\\/a.png?w=64&amp;h=64" in body


async def test_page_sizes_and_past_the_end(
    fake: FakeBioTorrents, http: aiohttp.ClientSession
) -> None:
    sizes = {}
    for query, key in [
        ("action=usersearch&search=lab", "results"),
        ("action=userhistory&type=posts&userid=2", "threads"),
        ("action=inbox", "messages"),
        ("action=notifications", "results"),
    ]:
        _, _, body = await get(http, fake, query)
        response = json.loads(body)["response"]
        sizes[query.split("&")[0]] = len(response[key])
        assert response["pages"] >= 2, f"{query} should span several pages"
    assert sizes == {
        "action=usersearch": 30,
        "action=userhistory": 25,
        "action=inbox": 25,
        "action=notifications": 50,
    }
    _, _, body = await get(http, fake, "action=notifications&page=99")
    assert json.loads(body)["response"]["currentPages"] == 99
    assert json.loads(body)["response"]["results"] == []
    status, _, body = await get(http, fake, "action=inbox&page=abc")
    assert status == 500
    assert body.startswith(b"<!doctype html>")


async def test_skeletal_token_user(
    fake: FakeBioTorrents, http: aiohttp.ClientSession
) -> None:
    _, _, body = await get(http, fake, "action=index", BEARER)
    me = json.loads(body)["response"]
    assert (me["username"], me["authkey"], me["passkey"]) == (None, None, None)
    assert me["userstats"]["class"] is None
    assert me["notifications"]["newAnnouncement"] is True
    _, _, body = await get(http, fake, "action=index", {**BEARER, **COOKIE})
    assert json.loads(body)["response"]["username"] == "kestrel"


async def test_state_changes(
    fake: FakeBioTorrents, http: aiohttp.ClientSession
) -> None:
    conv = next(c for c in fake.data.conversations.values() if 2 in c.unread_for)
    await get(http, fake, f"action=inbox&type=viewconv&id={conv.id}")
    assert 2 not in conv.unread_for
    _, _, body = await get(http, fake, "action=notifications")
    assert json.loads(body)["response"]["numNew"] > 0
    _, _, body = await get(http, fake, "action=notifications")
    assert json.loads(body)["response"]["numNew"] == 0
    assert not any(n.unread for n in fake.data.notifications if n.user_id == 2)


async def test_clear_is_post_only_with_an_empty_body(
    fake: FakeBioTorrents, http: aiohttp.ClientSession
) -> None:
    assert fake.data.users[2].alerts
    status, headers, body = await get(
        http, fake, "action=clear_user_notification&type=StaffPM"
    )
    assert (status, body) == (200, b"")
    assert "StaffPM" in fake.data.users[2].alerts  # a GET changes nothing
    status, headers, body = await get(
        http,
        fake,
        "action=clear_user_notification",
        method="POST",
        data={"type": "StaffPM"},
    )
    assert (status, body) == (200, b"")
    assert headers["Content-Type"].startswith("application/json")
    assert "StaffPM" not in fake.data.users[2].alerts


async def test_empty_alerts_are_an_array(
    fake: FakeBioTorrents, http: aiohttp.ClientSession
) -> None:
    for kind in ("Inbox", "News", "Blog", "StaffPM", "Torrents"):
        await get(
            http,
            fake,
            "action=clear_user_notification",
            method="POST",
            data={"type": kind},
        )
    _, _, body = await get(http, fake, "action=get_user_notifications")
    assert json.loads(body)["response"] == []


async def test_new_api_mode(http: aiohttp.ClientSession) -> None:
    async with FakeBioTorrents(new_api=True) as fake:
        status, headers, body = await get(http, fake, "action=index", BEARER)
        assert status == 404
        assert headers["Content-Type"] == "application/vnd.api+json"
        assert json.loads(body)["errors"] == "not found"
        status, _, body = await get(http, fake, "action=index", {})
        assert status == 401


async def test_rate_limiter_rejects_a_burst_like_the_reference(
    http: aiohttp.ClientSession,
) -> None:
    recorded = [
        json.loads(e.body)["status"]
        for e in load_exchanges("rate_limit_rapid_cookie.txt")[:8]
    ]
    async with FakeBioTorrents(rate_limit=RateLimit(2, 0.5)) as fake:
        statuses = []
        for _ in range(8):
            status, _, body = await get(http, fake, "action=index")
            assert status == 200
            statuses.append(json.loads(body)["status"])
        assert statuses == recorded == ["success"] * 2 + ["failure"] * 6
        _, _, body = await get(http, fake, "action=index")
        assert json.loads(body)["error"] == "rate limit exceeded"
        # No action: not counted, and never "rate limit exceeded".
        _, _, body = await get(http, fake, "")
        assert json.loads(body)["error"] == "bad parameters"
        await asyncio.sleep(0.55)  # the window expires; a new one opens
        statuses = []
        for _ in range(3):
            _, _, body = await get(http, fake, "action=index")
            statuses.append(json.loads(body)["status"])
        assert statuses == ["success", "success", "failure"]
        # The admin (id 1) and Donor-class users are exempt.
        admin = {"Authorization": "Bearer fake-token-labadmin-0001"}
        donor = fake.data.add_user("donor", class_name="Donor")
        donor_token = {"Authorization": f"Bearer {fake.add_token(donor.id)}"}
        for headers in (admin, donor_token):
            for _ in range(5):
                _, _, body = await get(http, fake, "action=index", headers)
                assert json.loads(body)["status"] == "success"


async def test_faults(http: aiohttp.ClientSession) -> None:
    async with FakeBioTorrents(rate_limit=None) as fake:
        fake.faults.schedule(
            Fault.HTTP_502,
            Fault.HTTP_503,
            Fault.HTML_ERROR,
            Fault.TRUNCATE,
            Fault.RATE_LIMIT,
        )
        results = [await get(http, fake, "action=index") for _ in range(5)]
        assert [r[0] for r in results] == [502, 503, 500, 200, 200]
        with pytest.raises(json.JSONDecodeError):
            json.loads(results[3][2])
        assert json.loads(results[4][2])["error"] == "rate limit exceeded"
        fake.faults.schedule(Fault.DROP, Fault.DROP)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await get(http, fake, "action=index")
        fake.faults.delay = 0.2
        fake.faults.schedule(Fault.DELAY)
        with pytest.raises(asyncio.TimeoutError):
            async with asyncio.timeout(0.1):
                await get(http, fake, "action=index")


async def test_random_faults_are_seeded() -> None:
    def run() -> list[str | None]:
        fake = FakeBioTorrents(rate_limit=None)
        fake.faults.randomly(0.3, [Fault.HTTP_502, Fault.TRUNCATE], seed=4)
        return [fake.faults.next() for _ in range(50)]

    first, second = run(), run()
    assert first == second
    assert 5 < sum(f is not None for f in first) < 30


async def test_request_log_has_no_secrets(
    fake: FakeBioTorrents, http: aiohttp.ClientSession
) -> None:
    await get(http, fake, "action=user&id=2", {**BEARER, **COOKIE})
    (record,) = fake.requests
    assert (record.action, record.params, record.auth) == (
        "user",
        {"action": "user", "id": "2"},
        "token+cookie",
    )
    assert record.user_id == 2
    assert DEMO_TOKEN not in repr(record)
    assert DEMO_COOKIES["session"] not in repr(record)


async def test_the_fake_records_what_it_makes() -> None:
    async with FakeBioTorrents(rate_limit=None) as fake:
        assert fake.created == ()  # the seed set is the start, not something made
        conv = fake.data.add_conversation("Hi", sender=3, recipient=2)
        fake.data.add_reply(conv, sender=2)
        news_id = fake.data.add_news("Maintenance")
        post = fake.data.add_quote(2, by=3)
        torrent = fake.data.torrent(fake.data.notifications[0].torrent_id)
        assert torrent is not None
        fake.data.add_notification(2, torrent)  # listed already: nothing made
        torrent = fake.data.add_torrent(
            next(iter(fake.data.groups.values())), uploader=3
        )
        fake.data.add_notification(2, torrent)
        fake.data.add_alert(2, "Global", "Site down at noon", "index.php")
        made = fake.created
        assert [(e["kind"], e.get("user_id")) for e in made] == [
            ("conversation", None),
            ("reply", None),
            ("news", None),
            ("post", None),
            ("quote", 2),
            ("torrent", None),
            ("notification", 2),
            ("alert", 2),
        ]
        assert made[0]["conv_id"] == made[1]["conv_id"] == conv.id
        assert (made[0]["sender_id"], made[0]["recipient_id"]) == (3, 2)
        assert made[1]["message_index"] == 1
        assert made[2]["news_id"] == news_id
        assert made[3]["post_id"] == made[4]["post_id"] == post.id
        assert made[5]["torrent_id"] == made[6]["torrent_id"] == torrent.id
        assert made[7]["alert_kind"] == "Global"
        for entry in made:
            assert dt.datetime.fromisoformat(entry["time"])
        assert json.loads(json.dumps(made)) == list(made)  # JSON-ready
        # A copy: changing it changes nothing in the fake.
        assert isinstance(made, tuple)
        assert len(fake.created) == 8


async def test_live_items_are_recorded() -> None:
    async with FakeBioTorrents(rate_limit=None) as fake:
        kinds = [add_live_item(fake.data, n) for n in range(1, 13)]
        made = [e["kind"] for e in fake.created]
        assert kinds[:4] == ["reply", "torrent", "quote", "conversation"]
        assert kinds[6] == "news"
        # Every live item is in the record (a hit also makes its group and torrent).
        for kind in {"reply", "conversation", "quote", "news"}:
            assert made.count(kind) == kinds.count(kind)
        assert made.count("notification") == kinds.count("torrent")

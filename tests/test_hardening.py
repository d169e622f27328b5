"""Hardening the session: closing, auth stops, priorities, hostile answers.

One test (or a few) per item of the "Hardening the session" issue; each failed on
the code before its fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from support import BASE, COOKIES, TOKEN, Exchange, Router
from yarl import URL

from biotorrents_async import (
    ApiError,
    AuthenticationError,
    BioTorrentsClient,
    BioTorrentsError,
    LocalPacer,
    RateLimit,
    RateLimitError,
    ResponseError,
    RetryPolicy,
    TransportError,
)
from biotorrents_async._answers import leading_json as _leading_json
from biotorrents_async._pacing import BACKGROUND, INTERACTIVE, MAX_BYPASS
from biotorrents_async.testing import FakeBioTorrents, Fault

SLOW = RateLimit(1, 0.2, margin=0)


def client_for(fake: FakeBioTorrents, **kwargs: object) -> BioTorrentsClient:
    options: dict[str, object] = {
        "cookies": fake.cookies,
        "base_url": fake.url,
        "retry": RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.02),
    }
    options.update(kwargs)
    return BioTorrentsClient(fake.token, **options)  # type: ignore[arg-type]


async def _first_request(fake: FakeBioTorrents) -> None:
    async with asyncio.timeout(2):
        while not fake.requests:  # noqa: ASYNC110 - the fake has no event for it
            await asyncio.sleep(0.005)


@pytest.fixture
async def slow_fake() -> AsyncIterator[FakeBioTorrents]:
    async with FakeBioTorrents(rate_limit=SLOW) as fake:
        yield fake


# --- 1. aclose() stops what is queued or in flight ----------------------------------


async def test_aclose_ends_queued_calls_without_sending(
    slow_fake: FakeBioTorrents,
) -> None:
    client = client_for(slow_fake, rate_limit=SLOW)
    await client.index()  # holds the only place for 0.2 s
    queued = [asyncio.create_task(client.users.get(n)) for n in range(3, 7)]
    await asyncio.sleep(0.02)
    started = time.monotonic()
    await client.aclose()
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert time.monotonic() - started < 0.1
    assert all(isinstance(r, RuntimeError) for r in results), results
    assert all("closed" in str(r) for r in results)
    await asyncio.sleep(0.3)  # past the place's window: nothing more arrives
    assert [r.action for r in slow_fake.requests] == ["index"]
    assert not client._session.holds_connections  # no session made again


async def test_aclose_ends_an_in_flight_call_promptly(
    slow_fake: FakeBioTorrents,
) -> None:
    slow_fake.faults.delay = 5
    slow_fake.faults.schedule(Fault.DELAY)
    client = client_for(slow_fake, rate_limit=None)
    call = asyncio.create_task(client.index())
    await _first_request(slow_fake)
    started = time.monotonic()
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await call
    assert time.monotonic() - started < 0.2  # no backoff, no retry
    assert len(slow_fake.requests) == 1


async def test_closing_does_not_swallow_the_callers_own_cancellation(
    slow_fake: FakeBioTorrents,
) -> None:
    client = client_for(slow_fake, rate_limit=SLOW)
    await client.index()
    queued = asyncio.create_task(client.index())
    await asyncio.sleep(0.01)
    queued.cancel()  # the caller gives up, and the client closes too
    await client.aclose()
    with pytest.raises(asyncio.CancelledError):
        await queued


# --- 3. the first authentication failure stops the client ---------------------------


async def test_auth_failure_stops_queued_and_new_calls(
    slow_fake: FakeBioTorrents,
) -> None:
    token = slow_fake.add_token(3)
    slow_fake.revoke_token(token)
    async with BioTorrentsClient(
        token, base_url=slow_fake.url, rate_limit=SLOW
    ) as client:
        calls = [asyncio.create_task(client.users.get(n)) for n in range(1, 31)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, AuthenticationError) for r in results)
        assert sum("not sent" in str(r) for r in results) == 29
        assert "token revoked" in str(results[1])  # says why
        with pytest.raises(AuthenticationError, match="rearm"):
            await client.index()
        assert len(slow_fake.requests) == 1  # one failing request reached the server
        client.rearm()
        with pytest.raises(AuthenticationError, match="token revoked"):
            await client.index()
    assert len(slow_fake.requests) == 2


async def test_a_refused_call_holds_no_place_afterwards(
    slow_fake: FakeBioTorrents,
) -> None:
    token = slow_fake.add_token(3)
    slow_fake.revoke_token(token)
    async with BioTorrentsClient(
        token, base_url=slow_fake.url, rate_limit=SLOW
    ) as client:
        first = asyncio.create_task(client.users.get(3))
        second = asyncio.create_task(client.users.get(4))  # queued, then refused
        await asyncio.gather(first, second, return_exceptions=True)
        assert "not sent" in str(second.exception())
        client.rearm()
        with pytest.raises(AuthenticationError):
            await client.index()
    sent = [r.time for r in slow_fake.requests]
    # The third call waited for the first one's place only: the refused call
    # sent nothing, so it kept no place.
    assert len(sent) == 2
    assert sent[1] - sent[0] < SLOW.window + 0.1


async def test_refused_calls_give_their_place_back(slow_fake: FakeBioTorrents) -> None:
    pacer = LocalPacer(SLOW)
    token = slow_fake.add_token(3)
    slow_fake.revoke_token(token)
    async with BioTorrentsClient(
        token, base_url=slow_fake.url, rate_limit=SLOW, pacer=pacer
    ) as client:
        first = asyncio.create_task(client.users.get(3))
        second = asyncio.create_task(client.users.get(4))  # queued, then refused
        await asyncio.gather(first, second, return_exceptions=True)
        assert "not sent" in str(second.exception())
    # One place used by the one request sent; the refused call left none behind.
    assert len(pacer._done) == 1


# --- 4, 6. URLs that leak or mislead -------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://bob:hunter2@bio.example",
        "https://:hunter2@bio.example",
        "https://bob@x",
    ],
)
def test_base_url_with_userinfo_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="user name or password") as info:
        BioTorrentsClient(TOKEN, base_url=url)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["http://evil-localhost.com", "http://my.localhost", "http://localhost.evil.com"],
)
def test_only_literal_loopback_may_use_plain_http(url: str) -> None:
    with pytest.raises(ValueError, match="plain http"):
        BioTorrentsClient(TOKEN, base_url=url)


def test_localhost_itself_may_use_plain_http() -> None:
    assert BioTorrentsClient(TOKEN, base_url="http://localhost:8088").base_url


# --- 5. redaction --------------------------------------------------------------------


async def test_secret_straddling_the_excerpt_cut_is_redacted_whole(
    api: Router,
) -> None:
    body = ("x" * 290 + TOKEN + " and more").encode()
    api.reply(Exchange(200, {}, body))
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as client:
        with pytest.raises(ResponseError) as info:
            await client.index()
    assert TOKEN[:6] not in info.value.body_excerpt
    assert "<redacted>" in info.value.body_excerpt


async def test_key_like_values_are_redacted_before_known_secrets(
    api: Router,
) -> None:
    # A session value that happens to begin an authkey: replacing the session
    # first would cut the key, and its tail would no longer look like a key.
    authkey = "5b0d2c9e7f3a41d8a6c2e9b04f71d3aa"
    cookies = {"session": authkey[:10], "userid": "2"}
    api.reply(Exchange(500, {}, f'{{"authkey":"{authkey}"'.encode()))
    async with BioTorrentsClient(
        TOKEN, cookies=cookies, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as client:
        with pytest.raises(ResponseError) as info:
            await client.index()
    assert authkey[10:] not in info.value.body_excerpt
    assert info.value.body_excerpt == '{"authkey":"<redacted>"'


async def test_a_retry_after_date_in_the_past_means_now(api: Router) -> None:
    api.reply(Exchange(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, b""))
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, pacer=_Pauses(), retry=RetryPolicy.none()
    ) as client:
        with pytest.raises(RateLimitError) as info:
            await client.index()
    assert info.value.retry_after == 0


async def test_an_eight_character_secret_is_redacted_inside_words(
    api: Router,
) -> None:
    token = "Tk8chars"  # as short as a secret is still redacted anywhere
    api.json(f'{{"status":"failure","error":"unknown key x{token}y"}}')
    async with BioTorrentsClient(
        token, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as client:
        with pytest.raises(ApiError) as info:
            await client.index()
    assert token not in f"{info.value} {info.value!r}"
    assert "unknown key x<redacted>y" in str(info.value)


async def test_server_error_text_is_redacted(api: Router) -> None:
    echoed = f"bad request from {TOKEN} with session {COOKIES['session']}"
    api.json(f'{{"status":"failure","error":"{echoed}"}}')
    api.json(f'{{"status":"failure","error":"token revoked {TOKEN}"}}')
    async with BioTorrentsClient(
        TOKEN, cookies=COOKIES, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as client:
        with pytest.raises(ApiError) as api_error:
            await client.index()
        with pytest.raises(ApiError) as second:
            await client.index()
    for error in (api_error.value, second.value):
        text = f"{error} {error!r} {error.message}"
        assert TOKEN not in text
        assert COOKIES["session"] not in text


async def test_chained_aiohttp_error_holds_no_credentials(api: Router) -> None:
    headers = CIMultiDictProxy(
        CIMultiDict(
            {"Authorization": f"Bearer {TOKEN}", "Cookie": "session=x", "Accept": "*/*"}
        )
    )
    info = aiohttp.RequestInfo(URL(BASE), "GET", headers, URL(BASE))
    answer = CIMultiDictProxy(CIMultiDict({"Set-Cookie": "session=new"}))
    api.reply(aiohttp.ClientResponseError(info, (), status=0, headers=answer))
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as client:
        with pytest.raises(TransportError) as caught:
            await client.index()
    cause = caught.value.__cause__
    assert isinstance(cause, aiohttp.ClientResponseError)
    assert "Authorization" not in cause.request_info.headers
    assert "Cookie" not in cause.request_info.headers
    assert cause.request_info.headers["Accept"] == "*/*"
    assert cause.headers is not None
    assert "Set-Cookie" not in cause.headers
    assert TOKEN not in repr(cause.request_info)


# --- 7. aiohttp's silent resend holds a place of its own ----------------------------


@pytest.mark.parametrize("borrowed", [False, True], ids=["own-session", "borrowed"])
async def test_a_request_dropped_after_counting_is_not_resent_in_its_place(
    borrowed: bool,
) -> None:
    # Exact windows: two arrivals per 0.3 s and no more.
    rule = RateLimit(2, 0.3, margin=0.01)
    async with (
        FakeBioTorrents(rate_limit=rule, expiry_resolution=0, late_tick=0) as fake,
        aiohttp.ClientSession() as session,
        client_for(
            fake, rate_limit=rule, **({"session": session} if borrowed else {})
        ) as client,
    ):
        await client.index()
        fake.faults.schedule(Fault.DROP_AFTER)
        await client.users.get(3)
        await client.users.get(4)
    outcomes = [r.outcome for r in fake.requests]
    assert "rate-limited" not in outcomes
    assert outcomes == ["ok", "fault:drop-after", "ok", "ok"]
    # The resend waited for a place of its own: a whole window after the first.
    assert fake.requests[2].time - fake.requests[0].time >= rule.per


# --- 8. priority inversion through coalescing ----------------------------------------


async def test_a_direct_call_lifts_the_shared_background_request() -> None:
    rule = RateLimit(1, 0.02, margin=0)
    async with (
        FakeBioTorrents(rate_limit=rule) as fake,
        client_for(fake, rate_limit=rule) as client,
    ):
        await client.index()  # holds the only place

        async def in_background() -> None:
            with client.background():
                await client.users.get(5)

        crawl = asyncio.create_task(in_background())
        await asyncio.sleep(0)
        direct = [asyncio.create_task(client.users.get(10 + n)) for n in range(8)]
        await asyncio.sleep(0)
        joiner = asyncio.create_task(client.users.get(5))  # same as the crawl
        await asyncio.gather(crawl, joiner, *direct)
    ids = [r.params.get("id") for r in fake.requests[1:]]
    assert ids[0] == "5", ids  # went out first, at the joiner's priority
    assert client.stats["coalesced"] == 1


# --- 9. read-your-writes -------------------------------------------------------------


async def test_a_read_after_a_state_change_does_not_join_an_older_read() -> None:
    async with (
        FakeBioTorrents(rate_limit=None) as fake,
        client_for(fake, rate_limit=None) as client,
    ):
        unread = next(
            c.id
            for c in fake.data.conversations.values()
            if 2 in c.unread_for and not c.sticky
        )
        fake.faults.delay = 0.2
        fake.faults.schedule(Fault.DELAY)
        older = asyncio.create_task(client.inbox.conversations())
        await _first_request(fake)
        await client.inbox.conversation(unread)  # marks it read
        newer = await client.inbox.conversations()
        await older
    listed = {c.conv_id: c.unread for c in newer}
    assert listed[unread] is False
    assert [r.action for r in fake.requests].count("inbox") == 3  # 2 lists + view


# --- 10. background work is never starved --------------------------------------------


async def test_background_waits_for_at_most_max_bypass_direct_calls() -> None:
    pacer = LocalPacer(RateLimit(1, 0.005, margin=0))
    order: list[str] = []

    async def one(name: str, priority: int) -> None:
        async with pacer.slot(priority):
            order.append(name)

    first = asyncio.create_task(one("first", INTERACTIVE))
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(one("bg", BACKGROUND))]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(one(f"fg{n}", INTERACTIVE)) for n in range(20)]
    await asyncio.gather(first, *tasks)
    assert order.index("bg") == 1 + MAX_BYPASS
    assert order[1 : 1 + MAX_BYPASS] == [f"fg{n}" for n in range(MAX_BYPASS)]


# --- 11. cancelling many waiters is not quadratic ------------------------------------


async def _cancel_time(n: int) -> float:
    pacer = LocalPacer(RateLimit(1, 3600))

    async def wait() -> None:
        async with pacer.slot():
            pass

    async with pacer.slot():  # the only place, held for an hour
        tasks = [asyncio.create_task(wait()) for _ in range(n)]
        await asyncio.sleep(0)
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return time.perf_counter() - started
        finally:
            gc.enable()


async def test_cancelling_waiters_scales_linearly() -> None:
    # A ratio measured in one run: ten times the waiters, about ten times the
    # time (a list.remove + heapify per cancellation made it a hundred).
    # Best of three each, without the garbage collector's pauses: a noisy
    # machine then stays far from the quadratic ratio.
    small = min([await _cancel_time(1000) for _ in range(3)])
    large = min([await _cancel_time(10_000) for _ in range(3)])
    assert large / small < 40


# --- 12. hostile bodies --------------------------------------------------------------


async def test_a_body_over_the_cap_is_not_read_or_retried(api: Router) -> None:
    api.reply(Exchange(200, {}, b"[" + b"1," * 5000 + b"1]"))
    async with BioTorrentsClient(
        TOKEN,
        base_url=BASE,
        rate_limit=None,
        retry=RetryPolicy(attempts=3, backoff_initial=0),
        max_body_size=1000,
    ) as client:
        with pytest.raises(ResponseError, match="larger than 1000 bytes"):
            await client.index()
    assert len(api.calls) == 1


async def test_a_body_of_exactly_the_cap_is_read(api: Router) -> None:
    body = b'{"status":"success","response":[]}'
    api.reply(Exchange(200, {}, body), Exchange(200, {}, body + b" "))
    async with BioTorrentsClient(
        TOKEN,
        base_url=BASE,
        rate_limit=None,
        retry=RetryPolicy.none(),
        max_body_size=len(body),
    ) as client:
        assert await client.notifications.alerts() == {}
        with pytest.raises(ResponseError, match="larger than"):
            await client.notifications.alerts()


async def test_a_gzip_bomb_is_stopped_at_the_cap() -> None:
    bomb = gzip.compress(b" " * (20 << 20))  # 20 MiB of spaces, ~20 KiB on the wire

    async def handler(_: web.Request) -> web.Response:
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip"}, content_type="text/plain"
        )

    app = web.Application()
    app.router.add_get("/api.php", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with BioTorrentsClient(
            TOKEN,
            base_url=f"http://127.0.0.1:{port}",
            rate_limit=None,
            retry=RetryPolicy.none(),
            max_body_size=1 << 20,
        ) as client:
            with pytest.raises(ResponseError, match="larger than"):
                await client.index()
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _serving(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/api.php", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


_ALERTS = b'{"status":"success","response":[]}'


@pytest.mark.parametrize(
    ("encoding", "framing"),
    [(None, "length"), ("gzip", "length"), (None, "chunked"), ("gzip", "chunked")],
)
async def test_the_cap_holds_for_every_framing_and_encoding(
    encoding: str | None, framing: str
) -> None:
    # One read() serves identity bodies of a stated length; compressed or
    # chunked ones are counted as they are inflated. Either way a body of
    # exactly the cap is read and one byte more is refused.
    async def handler(request: web.Request) -> web.StreamResponse:
        body = _ALERTS + b" " * int(request.query.get("pad", "0"))
        headers = {"Content-Encoding": encoding} if encoding else {}
        payload = gzip.compress(body) if encoding else body
        if framing == "length":
            return web.Response(body=payload, headers=headers)
        resp = web.StreamResponse(headers=headers)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for start in range(0, len(payload), 7):
            await resp.write(payload[start : start + 7])
        await resp.write_eof()
        return resp

    async with (
        _serving(handler) as url,
        BioTorrentsClient(
            TOKEN,
            base_url=url,
            rate_limit=None,
            retry=RetryPolicy.none(),
            max_body_size=len(_ALERTS) + 1000,
        ) as client,
    ):
        # Padded so that the gzip bodies are far smaller on the wire than inflated.
        session = client._session
        assert await session.request("get_user_notifications", {"pad": "1000"}) == []
        with pytest.raises(ResponseError, match="larger than"):
            await session.request("get_user_notifications", {"pad": "1001"})


def test_leading_whitespace_is_skipped_without_a_python_loop() -> None:
    # A ratio measured in one run: skipping spaces must cost about what a C
    # scan of them costs (str.count), not a Python step per character (~250x).
    text = " " * 4_000_000 + "<html>"
    started = time.perf_counter()
    for _ in range(3):
        text.count(" ")
    scan = (time.perf_counter() - started) / 3
    started = time.perf_counter()
    assert _leading_json(text) is not None
    parse = time.perf_counter() - started
    assert parse / max(scan, 1e-6) < 40
    assert _leading_json(" " * 100 + '{"a": 1}<html>') == {"a": 1}


# --- 13, 14. redirects and error mapping ---------------------------------------------


@pytest.mark.parametrize("location", ["http://[::1", "https://bio.example:99999/x"])
async def test_a_malformed_location_is_a_response_error(
    api: Router, location: str
) -> None:
    api.reply(Exchange(302, {"Location": location}, b""))
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as client:
        with pytest.raises(ResponseError, match="malformed Location"):
            await client.index()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_any_redirect_to_login_is_an_auth_failure(
    api: Router, status: int
) -> None:
    api.reply(Exchange(status, {"Location": "https://bio.example/login.php"}, b""))
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, rate_limit=None, retry=RetryPolicy(attempts=3)
    ) as client:
        with pytest.raises(AuthenticationError, match=r"login\.php"):
            await client.index()
    assert len(api.calls) == 1


@pytest.mark.parametrize("status", [301, 308])
async def test_a_redirect_elsewhere_names_the_target(api: Router, status: int) -> None:
    target = "https://new.example/api.php?action=index"
    api.reply(Exchange(status, {"Location": target}, b""))
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, rate_limit=None, retry=RetryPolicy(attempts=3)
    ) as client:
        with pytest.raises(ResponseError) as info:
            await client.index()
    assert "https://new.example/api.php" in str(info.value)
    assert "not logged in" not in str(info.value)
    assert "action=index" not in str(info.value)
    assert len(api.calls) == 1


class _Pauses(LocalPacer):
    def __init__(self) -> None:
        super().__init__(None)
        self.pauses: list[float] = []

    async def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


async def test_429_retry_after_sets_the_pause(api: Router) -> None:
    api.reply(Exchange(429, {"Retry-After": "2"}, b"<html>slow down</html>"))
    api.reply("bearer_index.txt")
    pacer = _Pauses()
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, pacer=pacer, retry=RetryPolicy(attempts=2)
    ) as client:
        await client.index()
    assert pacer.pauses == [2.0]


@pytest.mark.parametrize(
    "body", [b'{"message":"too many requests"}', b"", b"<html>429</html>"]
)
async def test_429_of_any_body_is_rate_limiting(api: Router, body: bytes) -> None:
    api.reply(Exchange(429, {"Content-Type": "application/json"}, body))
    pacer = _Pauses()
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, pacer=pacer, retry=RetryPolicy.none()
    ) as client:
        with pytest.raises(RateLimitError) as info:
            await client.index()
    assert info.value.retry_after == pytest.approx(RateLimit.default().window)
    assert pacer.pauses == [pytest.approx(RateLimit.default().window)]


async def test_a_long_retry_after_is_raised_not_slept(api: Router) -> None:
    api.reply(Exchange(429, {"Retry-After": "3600"}, b""))
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, pacer=_Pauses(), retry=RetryPolicy(attempts=4)
    ) as client:
        with pytest.raises(RateLimitError) as info:
            await client.index()
    assert info.value.retry_after == 3600
    assert len(api.calls) == 1


@pytest.mark.parametrize("value", ["9" * 400, "Fri, 31 Dec 9999 23:59:59 GMT"])
async def test_an_absurd_retry_after_neither_overflows_nor_hangs(
    api: Router, value: str
) -> None:
    api.reply(Exchange(429, {"Retry-After": value}, b""))
    pacer = _Pauses()
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, pacer=pacer, retry=RetryPolicy(attempts=3)
    ) as client:
        with pytest.raises(RateLimitError) as info:
            await client.index()
    assert info.value.retry_after == 86400  # at most a day
    # Nobody waits silently longer than the backoff cap for it.
    assert pacer.pauses == [RetryPolicy().backoff_max]


async def test_a_failure_envelope_on_a_5xx_is_retried(api: Router) -> None:
    api.json('{"status":"failure","error":"database gone away"}', status=500)
    api.reply("bearer_index.txt")
    async with BioTorrentsClient(
        TOKEN,
        base_url=BASE,
        rate_limit=None,
        retry=RetryPolicy(attempts=2, backoff_initial=0),
    ) as client:
        me = await client.index()
    assert me.id == 2
    assert len(api.calls) == 2


@pytest.mark.parametrize("status", [500, 503, 404])
async def test_an_empty_error_answer_to_clear_is_not_success(
    api: Router, status: int
) -> None:
    # clear_user_notification answers 2xx with an empty body; an empty body
    # with an error status is a failure like any other.
    api.reply(*[Exchange(status, {"Content-Type": "text/html"}, b"")] * 2)
    async with BioTorrentsClient(
        TOKEN,
        cookies=COOKIES,
        base_url=BASE,
        rate_limit=None,
        retry=RetryPolicy(attempts=2, backoff_initial=0),
    ) as client:
        with pytest.raises(BioTorrentsError):
            await client.notifications.clear("Quotes")


async def test_a_200_login_page_is_an_auth_failure_not_retried(api: Router) -> None:
    api.reply("login_wrong_password.txt")
    async with BioTorrentsClient(
        TOKEN,
        base_url=BASE,
        rate_limit=None,
        retry=RetryPolicy(attempts=3, backoff_initial=0),
    ) as client:
        with pytest.raises(AuthenticationError, match="login page"):
            await client.index()
    assert len(api.calls) == 1


# --- 15. the coalesced counter -------------------------------------------------------


async def test_coalesced_counts_only_calls_that_shared_an_answer() -> None:
    rule = RateLimit(1, 0.02, margin=0)
    async with (
        FakeBioTorrents(rate_limit=rule) as fake,
        client_for(fake, rate_limit=rule) as client,
    ):
        await client.index()
        first = asyncio.create_task(client.users.get(7))
        second = asyncio.create_task(client.users.get(7))
        await asyncio.sleep(0)
        first.cancel()  # the sender gives up; the joiner sends its own
        await second
        with pytest.raises(asyncio.CancelledError):
            await first
        assert client.stats["coalesced"] == 0
        both = await asyncio.gather(client.users.get(8), client.users.get(8))
        assert both[0] == both[1]
        assert client.stats["coalesced"] == 1


async def test_a_credential_deeper_in_the_chain_is_dropped_too(api: Router) -> None:
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": f"Bearer {TOKEN}"}))
    info = aiohttp.RequestInfo(URL(BASE), "GET", headers, URL(BASE))
    inner = aiohttp.ClientResponseError(info, (), status=0)
    outer = aiohttp.ClientPayloadError("answer cut off")
    outer.__cause__ = inner
    api.reply(outer)
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as client:
        with pytest.raises(TransportError) as caught:
            await client.index()
    assert caught.value.__cause__ is outer
    assert "Authorization" not in inner.request_info.headers

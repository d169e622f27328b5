"""The session wrapper: URL, credentials, envelope, error mapping, retries, secrets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from support import BASE, COOKIES, TOKEN, Exchange, Router

from biotorrents_async import (
    ApiError,
    AuthenticationError,
    BioTorrentsClient,
    LegacyApiUnavailableError,
    NotFoundError,
    RateLimit,
    RateLimitError,
    ResponseError,
    RetryPolicy,
    TransportError,
)


class Sleeps:
    """Records every wait instead of waiting, and moves a virtual clock by it."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def make_client(
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    **kwargs: object,
) -> BioTorrentsClient:
    sleeps = sleep or Sleeps()
    return BioTorrentsClient(
        kwargs.pop("token", TOKEN),  # type: ignore[arg-type]
        base_url=BASE,
        rate_limit=kwargs.pop("rate_limit", None),  # type: ignore[arg-type]
        retry=retry or RetryPolicy.none(),
        sleep=sleeps,
        clock=sleeps.clock if isinstance(sleeps, Sleeps) else time.monotonic,
        random=lambda: 0.5,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_request_shape_token_and_cookies(api: Router) -> None:
    api.reply("index.txt")
    async with make_client(cookies=COOKIES) as client:
        me = await client.index()
    assert me.username == "labuser"
    (call,) = api.calls
    assert call.method == "GET"
    assert call.query == {"action": "index"}
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.headers["Cookie"] == "session=sessSECRETcookie; userid=2"


async def test_cookie_only_client_sends_no_authorization(api: Router) -> None:
    api.reply("index.txt")
    async with make_client(token=None, cookies=COOKIES) as client:
        await client.index()
    assert "Authorization" not in api.calls[0].headers


async def test_api_path_default_and_ajax_php(api: Router) -> None:
    api.reply("index.txt", "index.txt")
    async with make_client() as client:
        await client.index()
    async with make_client(api_path="ajax.php") as client:
        await client.index()
    assert [c.path for c in api.calls] == ["/api.php", "/ajax.php"]


@pytest.mark.parametrize(
    "fixture",
    [
        "fail_unauthenticated_index.txt",
        "fail_cookie_bad_session.txt",
        "fail_bearer_garbage.txt",
        "fail_bearer_no_scheme.txt",
        "fail_bearer_wrong_scheme.txt",
    ],
)
async def test_auth_failures_are_never_retried(api: Router, fixture: str) -> None:
    api.reply(fixture)
    async with make_client(retry=RetryPolicy(attempts=5)) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.index()
    assert len(api.calls) == 1
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    "message",
    [
        "token user mismatch",
        "token revoked",
        "user disabled",
        "your ip address has been banned",
    ],
)
async def test_every_token_failure_message_is_auth(api: Router, message: str) -> None:
    api.json(f'{{"status":"failure","error":"{message}","info":{{}}}}')
    async with make_client(retry=RetryPolicy(attempts=3)) as client:
        with pytest.raises(AuthenticationError):
            await client.index()
    assert len(api.calls) == 1


async def test_http_401_403_are_auth(api: Router) -> None:
    api.reply(Exchange(401, {}, b"nope"), Exchange(403, {}, b"<html>"))
    async with make_client(retry=RetryPolicy(attempts=3)) as client:
        with pytest.raises(AuthenticationError, match="401"):
            await client.index()
        client.rearm()  # the client stops after a refusal until told otherwise
        with pytest.raises(AuthenticationError, match="403"):
            await client.index()
    assert len(api.calls) == 2


async def test_no_such_user_is_not_found(api: Router) -> None:
    api.reply("fail_user_nonexistent.txt")
    async with make_client(retry=RetryPolicy(attempts=3)) as client:
        with pytest.raises(NotFoundError) as info:
            await client.users.get(9999)
    assert info.value.message == "no such user"
    assert info.value.action == "user"
    assert len(api.calls) == 1


async def test_bare_failure_followed_by_html_is_api_error(api: Router) -> None:
    api.reply("fail_userhistory_bad_type.txt")
    async with make_client(retry=RetryPolicy(attempts=3)) as client:
        with pytest.raises(ApiError) as info:
            await client._session.request("userhistory", {"type": "x"})
    assert info.value.message is None
    assert not isinstance(info.value, NotFoundError)
    assert len(api.calls) == 1


async def test_viewconv_bare_failure_says_not_found_or_not_yours(api: Router) -> None:
    api.reply("fail_viewconv_not_participant.txt")
    async with make_client(retry=RetryPolicy(attempts=3)) as client:
        with pytest.raises(NotFoundError, match=r"conversation 999 .*not yours"):
            await client.inbox.conversation(999)
    assert len(api.calls) == 1


async def test_failure_html_page_never_leaks_authkey(api: Router) -> None:
    # This recorded page embeds the viewer's authkey and passkey.
    api.reply(
        Exchange(500, {}, b"<html><meta name='authkey' content='0123456789abcdef'>")
    )
    async with make_client() as client:
        with pytest.raises(ResponseError) as info:
            await client.index()
    assert "0123456789abcdef" not in info.value.body_excerpt
    assert info.value.status == 500


async def test_json_api_errors_mean_legacy_api_unavailable(api: Router) -> None:
    body = (
        '{"errors":"not found","jsonapi":{"version":"1.1"},"meta":{"id":"x","count":1}}'
    )
    api.reply(
        Exchange(404, {"Content-Type": "application/vnd.api+json"}, body.encode()),
        Exchange(401, {}, b'{"errors":"invalid token","jsonapi":{"version":"1.1"}}'),
    )
    async with make_client(retry=RetryPolicy(attempts=3)) as client:
        with pytest.raises(LegacyApiUnavailableError) as info:
            await client.index()
        assert info.value.status == 404
        with pytest.raises(LegacyApiUnavailableError):
            await client.index()
    assert len(api.calls) == 2


async def test_text_plain_user_and_json_followed_by_html(api: Router) -> None:
    api.reply("user_id1.txt")
    body = b'{"status":"success","response":[]}\n<!doctype html><p>Notice</p>'
    api.reply(Exchange(200, {"Content-Type": "text/html"}, body))
    async with make_client() as client:
        user = await client.users.get(1)
        alerts = await client.notifications.alerts()
    assert user.username == "labadmin"
    assert alerts == {}


async def test_r2_token_junk_before_the_real_answer(api: Router) -> None:
    junk = (
        '{"status":"failure","response":400,"error":"no authorization header '
        'present","info":{"source":"BioTorrents.de","version":1}}'
    )
    real = load_body("index.txt")
    api.reply(Exchange(200, {}, junk.encode() + real))
    async with make_client(token=None, cookies=COOKIES) as client:
        me = await client.index()
    assert me.id == 2


def load_body(name: str) -> bytes:
    from support import load_exchange

    return load_exchange(name).body


@pytest.mark.parametrize(
    ("exchange", "what"),
    [
        (Exchange(200, {}, b""), "empty body"),
        (Exchange(200, {}, b'{"status":"success","resp'), "not JSON"),
        (Exchange(200, {}, b"<!doctype html><h1>DB error</h1>"), "not JSON"),
        (Exchange(200, {}, b"Array<br /><b>Notice</b>"), "not JSON"),
        (Exchange(502, {}, b"<html>Bad gateway</html>"), "HTTP 502"),
        (Exchange(200, {}, b'["status","success"]'), "not an API envelope"),
        (Exchange(200, {}, b'{"status":"success"}'), "without a response"),
    ],
)
async def test_broken_bodies_are_response_errors(
    api: Router, exchange: Exchange, what: str
) -> None:
    api.reply(exchange)
    async with make_client() as client:
        with pytest.raises(ResponseError, match=what):
            await client.index()


async def test_deep_nesting_is_a_response_error_not_recursion(api: Router) -> None:
    api.reply(Exchange(200, {}, b"[" * 5_000 + b"]" * 5_000))
    async with make_client() as client:
        with pytest.raises(ResponseError):
            await client.index()


async def test_retry_schedule_is_exact(api: Router) -> None:
    sleeps = Sleeps()
    api.reply(
        Exchange(503, {}, b"busy"),
        Exchange(502, {}, b"<html>"),
        aiohttp.ServerDisconnectedError(),
        "index.txt",
    )
    policy = RetryPolicy(attempts=4, backoff_initial=1.0, jitter=0.5, backoff_max=3.0)
    async with make_client(retry=policy, sleep=sleeps) as client:
        me = await client.index()
    assert me.id == 2
    # random() is pinned to 0.5: waits are base * 1.25, capped at backoff_max.
    assert sleeps.delays == [1.25, 2.5, 3.0]
    assert client.stats == {
        "requests": 4,
        "retries": 3,
        "rate_limit_pauses": 0,
        "throttle_waits": 0,
        "coalesced": 0,
        "cache_hits": 0,
        "cache_misses": 0,
    }


async def test_transport_error_after_attempts_keeps_cause(api: Router) -> None:
    api.reply(*[aiohttp.ClientConnectionError("refused")] * 3)
    async with make_client(retry=RetryPolicy(attempts=3)) as client:
        with pytest.raises(TransportError) as info:
            await client.index()
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectionError)
    assert len(api.calls) == 3


async def test_timeouts_are_transport_errors(api: Router) -> None:
    api.reply(TimeoutError(), TimeoutError())
    async with make_client(retry=RetryPolicy(attempts=2)) as client:
        with pytest.raises(TransportError, match="timed out"):
            await client.index()


async def test_api_error_is_not_retried(api: Router) -> None:
    api.reply("fail_usersearch_empty.txt")
    async with make_client(retry=RetryPolicy(attempts=4)) as client:
        with pytest.raises(ApiError, match="no search terms"):
            await client.users.search("x")
    assert len(api.calls) == 1


async def test_rate_limit_pauses_a_window_then_succeeds(api: Router) -> None:
    cookie_burst = __import__("support").load_exchanges("rate_limit_rapid_cookie.txt")
    sleeps = Sleeps()
    api.reply(cookie_burst[2], cookie_burst[0])
    async with make_client(
        retry=RetryPolicy(attempts=2), sleep=sleeps, rate_limit=RateLimit(2, 6.0)
    ) as client:
        me = await client.index()
    assert me.username == "labuser"
    assert len(api.calls) == 2
    # One whole window: 6 s plus a late expiry tick.
    assert sleeps.delays == [pytest.approx(6.1, abs=0.05)]
    assert client.stats["rate_limit_pauses"] == 1


@pytest.mark.parametrize("text", ["rate limit exceeded", "Rate limit exceeded"])
async def test_rate_limit_error_when_budget_spent(api: Router, text: str) -> None:
    api.json(f'{{"status":"failure","error":"{text}"}}')
    api.json(f'{{"status":"failure","error":"{text}"}}', status=400)
    async with make_client(retry=RetryPolicy(attempts=2)) as client:
        with pytest.raises(RateLimitError) as info:
            await client.index()
    # With pacing off the pause still lasts the default rule's full window.
    assert info.value.retry_after == pytest.approx(6.1)
    assert info.value.action == "index"


async def test_borrowed_session_is_not_closed_or_mutated(api: Router) -> None:
    api.reply("index.txt")
    async with aiohttp.ClientSession() as borrowed:
        before = dict(borrowed.headers)
        async with make_client(session=borrowed) as client:
            await client.index()
            assert client._session._owned is None  # the borrowed one was used
        assert not borrowed.closed
        assert dict(borrowed.headers) == before
        assert not borrowed.cookie_jar._cookies  # type: ignore[attr-defined]


async def test_closed_client_refuses_requests() -> None:
    client = make_client()
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.index()


async def test_secrets_never_in_repr_logs_or_errors(
    api: Router, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="biotorrents_async")
    body = f"<html>token {TOKEN} session=sessSECRETcookie</html>".encode()
    api.reply(Exchange(503, {}, body), "fail_bearer_garbage.txt")
    client = make_client(cookies=COOKIES, retry=RetryPolicy(attempts=2))
    async with client:
        with pytest.raises(AuthenticationError) as auth_error:
            await client.index()
        client.rearm()
        api.reply(Exchange(500, {}, body), Exchange(500, {}, body))
        with pytest.raises(ResponseError) as response_error:
            await client.index()
    texts = [
        repr(client),
        str(client),
        str(auth_error.value),
        repr(auth_error.value),
        str(response_error.value),
        response_error.value.body_excerpt,
        caplog.text,
    ]
    for text in texts:
        assert TOKEN not in text
        assert "sessSECRETcookie" not in text
    assert "auth=token+cookies" in repr(client)
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    debug_lines = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("attempt 1/2" in r.getMessage() for r in debug_lines)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"token": ""},
        {"token": "two words"},
        {"token": 5},
        {"token": "t", "cookies": {"session": "s"}},
        {"token": "t", "base_url": "ftp://x"},
        {"token": "t", "base_url": "https://x/?q=1"},
        {"token": "t", "timeout": 0},
        {"token": "t", "api_path": ""},
    ],
)
def test_bad_construction_raises_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        BioTorrentsClient(**kwargs)  # type: ignore[arg-type]


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BIOTORRENTS_TOKEN", raising=False)
    monkeypatch.delenv("BIOTORRENTS_COOKIES", raising=False)
    with pytest.raises(ValueError, match="BIOTORRENTS_TOKEN"):
        BioTorrentsClient.from_env()
    monkeypatch.setenv("BIOTORRENTS_TOKEN", TOKEN)
    monkeypatch.setenv("BIOTORRENTS_BASE_URL", "http://127.0.0.1:9")
    client = BioTorrentsClient.from_env()
    assert client.base_url == "http://127.0.0.1:9"
    assert TOKEN not in repr(client)


def test_rate_limit_and_retry_policy_values() -> None:
    assert RateLimit.default() == RateLimit(requests=2, per=6.0)
    # A window closes by `per` after it opens, plus a late tick (0.1 s of 6 s).
    assert RateLimit.default().window == pytest.approx(6.1)
    assert RateLimit(2, 0.2).window == pytest.approx(0.2 + 0.2 / 60)
    assert RateLimit(2, 6, margin=0).window == 6
    assert RetryPolicy.none().attempts == 1
    with pytest.raises(ValueError, match="requests"):
        RateLimit(0, 6)
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)

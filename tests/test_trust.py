"""Trust: what a new user and an adversarial review found.

One test (or a few) per item of the "Trust" issue and per surviving mutant of its
table; each failed on the code before its fix.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
from support import BASE, COOKIES, TOKEN, Exchange, Router

from biotorrents_async import (
    AuthenticationError,
    BioTorrentsClient,
    LocalPacer,
    RateLimit,
    RateLimitError,
    ResponseError,
    RetryPolicy,
    TransportError,
    User,
)
from biotorrents_async._converter import default_converter
from biotorrents_async._pacing import BACKGROUND, INTERACTIVE
from biotorrents_async.testing import FakeBioTorrents, Fault

ROOT = Path(__file__).parent.parent

# --- 1. redaction replaces whole secrets, never the userid ---------------------------


async def test_userid_is_not_a_secret_and_text_stays_readable() -> None:
    cookies = {"session": "sessSECRETcookie", "userid": "1"}
    async with BioTorrentsClient(
        cookies=cookies,
        base_url="http://127.0.0.1:9",  # nothing listens on the discard port
        rate_limit=None,
        retry=RetryPolicy.none(),
    ) as client:
        with pytest.raises(TransportError) as info:
            await client.index()
    assert "127.0.0.1" in str(info.value)
    assert "<redacted>" not in str(info.value)


async def test_a_half_sent_index_hides_every_part_of_the_keys(api: Router) -> None:
    # Digits of the userid (2) occur in the authkey: replacing the userid first
    # used to split the key so that its tail escaped redaction.
    authkey = "5b0d2c9e7f3a41d8a6c2e9b04f71d3aa"
    body = json.dumps({"status": "success", "response": {"id": 2, "authkey": authkey}})
    api.reply(Exchange(200, {}, body[:-20].encode()))
    async with BioTorrentsClient(
        TOKEN,
        cookies={"session": "sessSECRETcookie", "userid": "2"},
        base_url=BASE,
        rate_limit=None,
        retry=RetryPolicy.none(),
    ) as client:
        with pytest.raises(ResponseError) as info:
            await client.index()
    excerpt = info.value.body_excerpt
    assert all(authkey[i : i + 6] not in excerpt for i in range(len(authkey) - 5))
    assert '"id": 2' in excerpt  # ordinary text is left alone


async def test_the_session_cookie_is_redacted_wherever_it_appears(
    api: Router,
) -> None:
    api.reply(Exchange(500, {}, f"<p>{COOKIES['session']}</p>".encode()))
    async with BioTorrentsClient(
        TOKEN, cookies=COOKIES, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as client:
        with pytest.raises(ResponseError) as info:
            await client.index()
    assert COOKIES["session"] not in info.value.body_excerpt
    assert "<p><redacted></p>" in info.value.body_excerpt


# --- 2. one environment contract for the library and the command ---------------------


async def test_from_env_reads_what_fake_server_prints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with FakeBioTorrents(rate_limit=RateLimit(2, 0.05)) as fake:
        cookie = "; ".join(f"{k}={v}" for k, v in fake.cookies.items())
        env = {
            "BIOTORRENTS_TOKEN": fake.token,
            "BIOTORRENTS_COOKIES": cookie,
            "BIOTORRENTS_BASE_URL": f"{fake.url}/api.php",  # as printed
            "BIOTORRENTS_RATE_LIMIT": "2/0.05",
        }
        async with BioTorrentsClient.from_env(env) as client:
            assert client.auth_mode == "token+cookies"
            page = await client.notifications.torrents()
        assert page.items
        assert [r.auth for r in fake.requests] == ["token+cookie"]


def test_from_env_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BIOTORRENTS_TOKEN", raising=False)
    monkeypatch.setenv("BIOTORRENTS_COOKIES", "session=abc; userid=7")
    monkeypatch.setenv("BIOTORRENTS_API_PATH", "ajax.php")
    monkeypatch.setenv("BIOTORRENTS_RATE_LIMIT", "none")
    client = BioTorrentsClient.from_env()
    assert client.auth_mode == "cookies"
    assert str(client._session._url).endswith("/ajax.php")
    assert client._session._rate_limit is None


def test_from_env_keyword_arguments_win_over_the_environment() -> None:
    environ = {
        "BIOTORRENTS_TOKEN": TOKEN,
        "BIOTORRENTS_BASE_URL": "https://env.example",
        "BIOTORRENTS_RATE_LIMIT": "none",
    }
    rule = RateLimit(3, 9)
    client = BioTorrentsClient.from_env(
        environ, base_url="https://mine.example", rate_limit=rule
    )
    assert client.base_url == "https://mine.example"
    assert client._session._rate_limit == rule


def test_from_env_reads_values_as_a_secrets_file_leaves_them() -> None:
    client = BioTorrentsClient.from_env(
        {
            "BIOTORRENTS_TOKEN": f"{TOKEN}\n",  # a file's final newline
            "BIOTORRENTS_COOKIES": "   ",  # set, but to nothing
            "BIOTORRENTS_RATE_LIMIT": "None",
        }
    )
    assert client.auth_mode == "token"
    assert client._session._headers["Authorization"] == f"Bearer {TOKEN}"
    assert client._session._rate_limit is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "https://bio.example/#top"},  # the API path would follow '#'
        {"max_body_size": 0},  # every answer would be too large
    ],
)
def test_arguments_that_could_never_work_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        BioTorrentsClient(TOKEN, **kwargs)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BIOTORRENTS_COOKIES", "session"),
        ("BIOTORRENTS_COOKIES", "session=abc; session=def; userid=2"),
        ("BIOTORRENTS_RATE_LIMIT", "fast"),
    ],
)
def test_from_env_names_a_malformed_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        BioTorrentsClient.from_env({"BIOTORRENTS_TOKEN": TOKEN, name: value})


# --- 3. README's bot test runs with no pytest configuration --------------------------


def test_readme_bot_test_passes_in_strict_mode(tmp_path: Path) -> None:
    (tmp_path / "test_bot.py").write_text(
        textwrap.dedent(
            """
            async def test_my_bot_sees_unread_mail(biotorrents_client):
                unread = [
                    c async for c in biotorrents_client.inbox.iter_conversations()
                    if c.unread
                ]
                assert unread
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


# --- 4. state-changing reads say when they were retried ------------------------------


async def test_a_retried_notifications_page_says_so() -> None:
    async with FakeBioTorrents(rate_limit=None) as fake:
        fake.faults.schedule(Fault.TRUNCATE)  # after the server marked all read
        async with BioTorrentsClient(
            fake.token,
            cookies=fake.cookies,
            base_url=fake.url,
            rate_limit=None,
            retry=RetryPolicy(attempts=2, backoff_initial=0),
        ) as client:
            page = await client.notifications.torrents()
            fake.faults.schedule(Fault.HTML_ERROR)
            with pytest.raises(ResponseError):
                await client.notifications.torrents(retry=RetryPolicy.none())
            fresh = await client.notifications.torrents()
    assert page.attempts == 2
    assert not any(hit.unread for hit in page)  # the lost answer had them
    assert fresh.attempts == 1


# --- 5. one client, one event loop; and closing it ------------------------------------


def test_a_client_used_from_a_second_loop_says_so() -> None:
    async def setup() -> tuple[FakeBioTorrents, BioTorrentsClient]:
        fake = await FakeBioTorrents(rate_limit=None).start()
        client = BioTorrentsClient(
            fake.token, base_url=fake.url, rate_limit=RateLimit(1, 60)
        )
        await client.index()  # the only place is now held for a minute
        return fake, client

    loop = asyncio.new_event_loop()
    fake, client = loop.run_until_complete(setup())

    async def second() -> None:
        async with asyncio.timeout(1):  # fails at once, not after a pacing wait
            await client.index()

    try:
        with pytest.raises(RuntimeError, match="event loop it was first used in"):
            asyncio.run(second())
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(fake.close())
        loop.close()


async def test_an_unclosed_client_warns_with_its_name(
    api: Router,
) -> None:
    api.reply("bearer_index.txt")
    client = BioTorrentsClient(TOKEN, base_url=BASE, rate_limit=None)
    await client.index()
    aiohttp_session = client._session._owned
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda *_: None)  # aiohttp's own complaint
    del client
    with pytest.warns(ResourceWarning, match=r"unclosed <BioTorrentsClient"):
        gc.collect()
    assert aiohttp_session is not None
    await aiohttp_session.close()


async def test_a_used_and_closed_client_does_not_warn(api: Router) -> None:
    api.reply("bearer_index.txt")
    async with BioTorrentsClient(TOKEN, base_url=BASE, rate_limit=None) as client:
        await client.index()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del client
        gc.collect()


async def test_a_closed_client_cannot_be_reentered() -> None:
    client = BioTorrentsClient(TOKEN, base_url=BASE)
    await client.aclose()
    with pytest.raises(RuntimeError, match="cannot be reopened"):
        async with client:
            pass


def test_auth_mode_is_public() -> None:
    assert BioTorrentsClient(TOKEN).auth_mode == "token"
    assert BioTorrentsClient(cookies=COOKIES).auth_mode == "cookies"
    assert BioTorrentsClient(TOKEN, cookies=COOKIES).auth_mode == "token+cookies"


def test_a_base_url_ending_in_the_api_script_is_accepted() -> None:
    client = BioTorrentsClient(TOKEN, base_url="https://bio.example/ajax.php")
    assert client.base_url == "https://bio.example"
    assert str(client._session._url) == "https://bio.example/ajax.php"
    with pytest.raises(ValueError, match="site's root"):
        BioTorrentsClient(
            TOKEN, base_url="https://bio.example/ajax.php", api_path="other.php"
        )


# --- the mutants that survived ------------------------------------------------------


def test_a_profile_repr_hides_the_passkey() -> None:
    raw = json.loads(
        (ROOT / "tests/fixtures/real-server/user_id1.txt")
        .read_text()
        .split("\n\n", 1)[1]
        .strip()
        .splitlines()[0]
    )["response"]
    raw["personal"]["passkey"] = "0123456789abcdef0123456789abcdef"
    user = default_converter().structure(raw, User)
    assert user.personal.passkey == raw["personal"]["passkey"]
    assert "passkey" not in repr(user)
    assert raw["personal"]["passkey"] not in repr(user)


async def test_401_and_403_with_a_success_envelope_are_auth(api: Router) -> None:
    body = '{"status":"success","response":{"id":2}}'
    for status in (401, 403):
        api.json(body, status=status)
        async with BioTorrentsClient(
            TOKEN, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
        ) as client:
            with pytest.raises(AuthenticationError, match=str(status)):
                await client.index()


async def test_a_429_without_json_pauses_and_retries(api: Router) -> None:
    api.reply(Exchange(429, {}, b"<html>Too Many Requests</html>"), "bearer_index.txt")
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with BioTorrentsClient(
        TOKEN,
        base_url=BASE,
        rate_limit=RateLimit(2, 0.5),
        retry=RetryPolicy(attempts=2),
        sleep=sleep,
    ) as client:
        me = await client.index()
    assert me.id == 2
    assert client.stats["rate_limit_pauses"] == 1
    api.reply(Exchange(429, {}, b""))
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as other:
        with pytest.raises(RateLimitError):
            await other.index()


async def test_5xx_with_json_that_is_not_an_envelope_is_retried(api: Router) -> None:
    api.json('{"message":"upstream timed out"}', status=504)
    api.reply("bearer_index.txt")
    async with BioTorrentsClient(
        TOKEN,
        base_url=BASE,
        rate_limit=None,
        retry=RetryPolicy(attempts=2, backoff_initial=0),
    ) as client:
        assert (await client.index()).id == 2
    assert len(api.calls) == 2


async def test_an_errors_key_beside_status_is_not_the_new_api(api: Router) -> None:
    api.json('{"status":"failure","error":"bad parameters","errors":["x"]}')
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as client:
        with pytest.raises(Exception) as info:  # noqa: PT011
            await client.index()
    assert type(info.value).__name__ == "ApiError"


async def test_every_no_such_message_is_not_found(api: Router) -> None:
    from biotorrents_async import NotFoundError

    api.json('{"status":"failure","error":"no such torrent"}')
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as client:
        with pytest.raises(NotFoundError):
            await client.index()


async def test_after_a_grant_the_next_waiter_is_woken() -> None:
    # Two places: waiters must go out in pairs, not one by one.
    pacer = LocalPacer(RateLimit(2, 0.05, margin=0))
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        async with pacer.slot():
            times.append(loop.time())

    await asyncio.gather(*(one() for _ in range(6)))
    pairs = [times[n + 1] - times[n] for n in (0, 2, 4)]
    gaps = [times[n + 1] - times[n] for n in (1, 3)]
    assert max(pairs) < 0.02
    assert min(gaps) >= 0.045


async def test_a_new_caller_does_not_barge_past_queued_waiters() -> None:
    now = [0.0]
    gate = asyncio.Event()

    async def sleep(seconds: float) -> None:
        await gate.wait()  # asleep until the test says the time has come
        now[0] += seconds

    pacer = LocalPacer(RateLimit(1, 1.0, margin=0), clock=lambda: now[0], sleep=sleep)
    order: list[str] = []

    async def one(name: str) -> None:
        async with pacer.slot():
            order.append(name)

    async with pacer.slot():
        order.append("first")
    waiting = asyncio.create_task(one("queued"))
    await asyncio.sleep(0)  # queued, and asleep until the place frees at t=1
    now[0] = 1.5  # the place is free, but the queued waiter is still asleep
    newcomer = asyncio.create_task(one("newcomer"))
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(waiting, newcomer)
    assert order == ["first", "queued", "newcomer"]


async def test_a_caller_between_per_and_window_waits_for_the_margin() -> None:
    now = [100.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    rule = RateLimit(1, 6.0, margin=0.5)
    pacer = LocalPacer(rule, clock=lambda: now[0], sleep=sleep)
    async with pacer.slot():
        pass
    now[0] += 6.2  # past `per`, not past `window`
    async with pacer.slot():
        pass
    assert waits == [pytest.approx(0.3)]


async def test_iterator_pages_yield_to_a_direct_call() -> None:
    pacer = LocalPacer(RateLimit(1, 0.03, margin=0))
    order: list[str] = []

    async def one(name: str, priority: int) -> None:
        async with pacer.slot(priority):
            order.append(name)

    async with pacer.slot():
        pass
    pages = asyncio.create_task(one("page", BACKGROUND))
    await asyncio.sleep(0)
    direct = asyncio.create_task(one("direct", INTERACTIVE))
    await asyncio.gather(pages, direct)
    assert order == ["direct", "page"]


async def test_iter_pages_are_sent_as_background_work() -> None:
    rule = RateLimit(1, 0.02, margin=0)
    async with (
        FakeBioTorrents(rate_limit=rule) as fake,
        BioTorrentsClient(fake.token, base_url=fake.url, rate_limit=rule) as client,
    ):
        await client.index()
        crawl = asyncio.create_task(
            _drain(client.users.iter_search("lab"), stop_after=31)
        )
        await asyncio.sleep(0)  # the crawl's first page is queued
        direct = asyncio.create_task(client.users.get(2))
        await asyncio.gather(crawl, direct)
    assert [r.action for r in fake.requests][:2] == ["index", "user"]


async def _drain(iterator: object, stop_after: int) -> None:
    count = 0
    async for _ in iterator:  # type: ignore[attr-defined]
        count += 1
        if count >= stop_after:
            return


async def test_throttle_waits_are_counted() -> None:
    rule = RateLimit(1, 0.02, margin=0)
    async with (
        FakeBioTorrents(rate_limit=rule) as fake,
        BioTorrentsClient(fake.token, base_url=fake.url, rate_limit=rule) as client,
    ):
        await asyncio.gather(*(client.users.get(n) for n in range(1, 4)))
    assert client.stats["throttle_waits"] == 2


def test_retry_budget_counts_one_wait_per_retry() -> None:
    policy = RetryPolicy(
        attempts=3, backoff_initial=1.0, backoff_multiplier=2.0, jitter=0
    )
    assert policy.budget() == pytest.approx(1.0 + 2.0)
    assert RetryPolicy.none().budget() == 0


async def test_a_secret_inside_another_is_redacted_with_it(api: Router) -> None:
    token = "abcdef1234567890"
    cookies = {"session": "abcdef12", "userid": "2"}  # the token's first half
    api.reply(Exchange(500, {}, f"<p>{token}</p>".encode()))
    async with BioTorrentsClient(
        token, cookies=cookies, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as client:
        with pytest.raises(ResponseError) as info:
            await client.index()
    assert info.value.body_excerpt == "<p><redacted></p>"

"""Transport security and secrets: https by default, TLS verified, nothing leaks."""

from __future__ import annotations

import hashlib
import os
import ssl
import stat
import uuid
from pathlib import Path

import aiohttp
import pytest
import trustme
from support import COOKIES, SECRETS, TOKEN, Exchange, Router

from biotorrents_async import (
    AuthenticationError,
    BioTorrentsClient,
    FileStore,
    RateLimit,
    RedisPacer,
    ResponseError,
    RetryPolicy,
    TransportError,
)
from biotorrents_async.testing import FakeBioTorrents


def test_https_is_the_default() -> None:
    assert BioTorrentsClient(TOKEN).base_url == "https://biotorrents.de"


@pytest.mark.parametrize(
    "url",
    ["http://biotorrents.de", "http://10.0.0.5:8080", "http://example.org/"],
)
def test_plain_http_to_a_remote_host_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="allow_insecure_http"):
        BioTorrentsClient(TOKEN, base_url=url)
    assert BioTorrentsClient(TOKEN, base_url=url, allow_insecure_http=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8088",
        "http://localhost",
        "http://[::1]:80",
        "http://127.3.4.5",
        "http://0.0.0.0:8088",  # what a server bound to every address prints
        "http://[::]:8088",
    ],
)
def test_plain_http_to_loopback_is_fine(url: str) -> None:
    assert BioTorrentsClient(TOKEN, base_url=url).base_url == url


def test_ssl_false_is_refused() -> None:
    with pytest.raises(ValueError, match="ssl"):
        BioTorrentsClient(TOKEN, ssl=False)  # type: ignore[arg-type]


async def test_redirects_are_never_followed(api: Router) -> None:
    api.reply(Exchange(302, {"Location": "https://elsewhere.example/steal"}, b""))
    async with BioTorrentsClient(TOKEN, base_url="https://bio.example") as client:
        with pytest.raises(ResponseError, match=r"elsewhere\.example/steal"):
            await client.index()
    assert len(api.calls) == 1  # nothing went to elsewhere.example


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def test_tls_with_a_trusted_ca(
    ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with FakeBioTorrents(rate_limit=None, ssl_context=server_context) as fake:
        assert fake.url.startswith("https://127.0.0.1:")
        async with BioTorrentsClient(
            fake.token, base_url=fake.url, ssl=client_context, rate_limit=None
        ) as client:
            assert (await client.index()).id == 2


async def test_untrusted_certificate_fails_without_retrying(
    server_context: ssl.SSLContext,
) -> None:
    async with FakeBioTorrents(rate_limit=None, ssl_context=server_context) as fake:
        async with BioTorrentsClient(
            fake.token,
            base_url=fake.url,
            rate_limit=None,
            retry=RetryPolicy(attempts=3),
        ) as client:
            with pytest.raises(TransportError) as info:
                await client.index()
        assert isinstance(info.value.__cause__, ssl.SSLError | OSError)
        assert client.stats["requests"] == 1
        assert fake.requests == []  # the TLS handshake failed before any request


async def test_a_borrowed_session_cannot_turn_certificate_checks_off(
    ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    async with (
        FakeBioTorrents(rate_limit=None, ssl_context=server_context) as fake,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as insecure,
    ):
        async with BioTorrentsClient(
            fake.token, base_url=fake.url, rate_limit=None, session=insecure
        ) as client:
            with pytest.raises(TransportError) as info:
                await client.index()
        assert isinstance(info.value.__cause__, ssl.SSLError | OSError)
        assert fake.requests == []  # the token never left the machine
        # The caller's own context is what verifies, whatever the connector says.
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        async with BioTorrentsClient(
            fake.token,
            base_url=fake.url,
            rate_limit=None,
            session=insecure,
            ssl=trusting,
        ) as client:
            assert (await client.index()).id == 2
        assert len(fake.requests) == 1


async def test_cookies_the_server_sets_are_never_sent_back() -> None:
    """The login redirect sets a ``redirect`` cookie; only ours may go out."""
    async with FakeBioTorrents(rate_limit=None) as fake:
        stale = {"session": "expired-session-value", "userid": "2"}
        # A host name, not 127.0.0.1: aiohttp's jars ignore cookies from addresses.
        url = fake.url.replace("127.0.0.1", "localhost")
        async with BioTorrentsClient(
            cookies=stale, base_url=url, rate_limit=None
        ) as client:
            for _ in range(2):
                with pytest.raises(AuthenticationError):
                    await client.index()
                client.rearm()
        assert [r.outcome for r in fake.requests] == ["login-redirect"] * 2
        assert [r.cookies for r in fake.requests] == [("session", "userid")] * 2


async def test_reprs_and_messages_of_everything_are_secret_free() -> None:
    texts: list[str] = []
    async with FakeBioTorrents(rate_limit=RateLimit(2, 0.05)) as fake:
        client = BioTorrentsClient(
            fake.token,
            cookies=fake.cookies,
            base_url=fake.url,
            rate_limit=RateLimit(2, 0.05),
        )
        texts += [repr(client), str(client)]
        async with client:
            me = await client.index()
            profile = await client.users.get(2)
            texts += [repr(me), str(me), repr(profile), repr(me.userstats)]
            fake.revoke_token(fake.token)
        bad = BioTorrentsClient(
            fake.token, cookies={"session": "nope", "userid": "2"}, base_url=fake.url
        )
        async with bad:
            with pytest.raises(AuthenticationError) as info:
                await bad.index()
        texts += [repr(bad), str(info.value), repr(info.value)]
    for text in texts:
        leaked = [s for s in SECRETS if s in text]
        assert not leaked, text
    assert fake.data.users[2].passkey == me.passkey  # present, just never shown


def test_cookie_values_are_not_in_repr() -> None:
    client = BioTorrentsClient(cookies=COOKIES)
    assert COOKIES["session"] not in repr(client)
    assert "auth=cookies" in repr(client)


@pytest.mark.parametrize("value", ["a;b", "a,b", "a b", 'a"b', "a\\b", "a\r\nX: y"])
def test_a_cookie_value_a_header_forbids_is_refused(value: str) -> None:
    # RFC 6265: no separators, spaces or quotes (some parsers split on ",").
    with pytest.raises(ValueError, match="forbids"):
        BioTorrentsClient(cookies={"session": value, "userid": "2"})


async def test_a_cursor_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    old.write_bytes(b"")
    old.chmod(0o644)  # made by an earlier release
    mask = os.umask(0o022)
    try:
        for path in (new, old):
            await FileStore(path).save("inbox", {"v": 2})
    finally:
        os.umask(mask)
    for path in (new, old):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert await FileStore(path).load("inbox") == {"v": 2}


async def test_no_redis_key_names_a_token(redis_url: str) -> None:
    import redis.asyncio

    token = "tok-" + uuid.uuid4().hex
    plain = hashlib.sha256(token.encode()).hexdigest()[:16]
    env = {
        "BIOTORRENTS_TOKEN": token,
        "BIOTORRENTS_BASE_URL": "http://127.0.0.1:9",
        "BIOTORRENTS_REDIS_URL": redis_url,
    }
    clients = [BioTorrentsClient.from_env(env) for _ in range(2)]
    pacers = [c._owned_pacer for c in clients]
    try:
        for pacer in pacers:
            assert isinstance(pacer, RedisPacer)
            await pacer._eval("pause", 1, 0)  # the keys are made at first use
        r = redis.asyncio.from_url(redis_url)
        try:
            keys = [k.decode() async for k in r.scan_iter(match="*")]
        finally:
            await r.aclose()
        assert not [k for k in keys if plain in k]
        # Two processes of the token still share one allowance.
        assert pacers[0]._keys == pacers[1]._keys  # type: ignore[union-attr]
        assert any(pacers[0]._keys[0] == k for k in keys)  # type: ignore[union-attr]
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o666])
async def test_a_cursor_file_readable_by_others_is_tightened(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "old.db"
    path.write_bytes(b"")
    path.chmod(mode)
    await FileStore(path).save("inbox", {"v": 2})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

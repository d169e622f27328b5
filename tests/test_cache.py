"""The read cache: a hit costs no request and no place; it serves nothing stale."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from support import BASE, TOKEN, Exchange, Router, free_port

from biotorrents_async import (
    ApiError,
    BioTorrentsClient,
    LocalPacer,
    MemoryCache,
    NotFoundError,
    RateLimit,
    ReadCache,
    RedisCache,
    ResponseError,
    RetryPolicy,
)
from biotorrents_async._cache import CacheKey
from biotorrents_async.testing import FakeBioTorrents

RULE = RateLimit(2, 0.15)
USER = '{"status":"success","response":{"username":"kestrel","id":2}}'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeBioTorrents]:
    async with FakeBioTorrents(rate_limit=RULE) as server:
        yield server


def fake_client(
    fake: FakeBioTorrents,
    cache: ReadCache,
    token: str | None = None,
    pacer: LocalPacer | None = None,
) -> BioTorrentsClient:
    return BioTorrentsClient(
        token or fake.token,
        base_url=fake.url,
        rate_limit=RULE,
        cache=cache,
        pacer=pacer,
    )


def mock_client(cache: ReadCache) -> BioTorrentsClient:
    return BioTorrentsClient(
        TOKEN, base_url=BASE, rate_limit=None, retry=RetryPolicy.none(), cache=cache
    )


def sent(fake: FakeBioTorrents, action: str) -> int:
    return sum(r.action == action for r in fake.requests)


async def test_a_hit_costs_no_request_and_no_wait() -> None:
    rule = RateLimit(2, 0.5)  # long enough that a waiting request shows
    async with (
        FakeBioTorrents(rate_limit=rule) as fake,
        BioTorrentsClient(
            fake.token, base_url=fake.url, rate_limit=rule, cache=MemoryCache()
        ) as client,
    ):
        first = await client.users.get(2)
        await client.users.community_stats(2)  # both places now held
        started = time.monotonic()
        again = await client.users.get(2)
        elapsed = time.monotonic() - started
        assert again == first
        assert sent(fake, "user") == 1
        # The allowance is spent for a whole window: a request would wait.
        assert elapsed < rule.window / 5
        assert client.stats["throttle_waits"] == 0
        assert client.stats["cache_hits"] == 1
        assert client.stats["cache_misses"] == 2
        await client.users.recents(2)  # not cached yet: this one waits
        assert client.stats["throttle_waits"] == 1


async def test_typed_and_raw_calls_share_entries(fake: FakeBioTorrents) -> None:
    async with fake_client(fake, MemoryCache()) as client:
        profile = await client.users.get(2)
        raw = await client.call("user", {"id": 2})
        assert raw["username"] == profile.username
        assert sent(fake, "user") == 1


async def test_failures_are_never_cached(fake: FakeBioTorrents) -> None:
    async with fake_client(fake, MemoryCache()) as client:
        for _ in range(2):
            with pytest.raises(NotFoundError):
                await client.users.get(9999)
        assert sent(fake, "user") == 2


async def test_an_http_200_failure_is_not_cached(api: Router) -> None:
    async with mock_client(MemoryCache()) as client:
        api.json('{"status":"failure","error":"bad parameters"}')
        api.json(USER)
        with pytest.raises(ApiError):
            await client.call("user", {"id": 2})
        assert (await client.call("user", {"id": 2}))["id"] == 2
        assert (await client.call("user", {"id": 2}))["id"] == 2
        assert len(api.calls) == 2


async def test_a_wrongly_shaped_success_is_not_served_again(api: Router) -> None:
    async with mock_client(MemoryCache()) as client:
        api.json('{"status":"success","response":{"stats":"nonsense"}}')
        with pytest.raises(ResponseError):
            await client.users.community_stats(2)
        api.json('{"status":"success","response":{"stats":"nonsense"}}')
        with pytest.raises(ResponseError):
            await client.users.community_stats(2)
        assert len(api.calls) == 2


async def test_entries_expire(api: Router) -> None:
    clock = Clock()
    cache = MemoryCache(ttls={"user": 10}, clock=clock)
    api.handler = lambda _call: _user()
    async with mock_client(cache) as client:
        await client.call("user", {"id": 2})
        clock.now += 9.9
        await client.call("user", {"id": 2})
        assert len(api.calls) == 1
        clock.now += 0.2
        await client.call("user", {"id": 2})
        assert len(api.calls) == 2


def _user() -> Exchange:
    return Exchange(200, {"Content-Type": "application/json"}, USER.encode())


async def test_the_least_recently_used_entry_goes_first(api: Router) -> None:
    cache = MemoryCache(max_entries=2)
    api.handler = lambda _call: _user()
    async with mock_client(cache) as client:
        await client.call("user", {"id": 1})
        await client.call("user", {"id": 2})
        await client.call("user", {"id": 1})  # a hit: 1 is now the most recent
        await client.call("user", {"id": 3})  # evicts 2
        assert len(cache) == 2
        assert [c.query["id"] for c in api.calls] == ["1", "2", "3"]
        await client.call("user", {"id": 1})
        await client.call("user", {"id": 2})
        assert [c.query["id"] for c in api.calls] == ["1", "2", "3", "2"]


async def test_accounts_never_share_entries(fake: FakeBioTorrents) -> None:
    cache = MemoryCache()
    other = fake.add_token(fake.data.add_user("otter").id)
    pacer = LocalPacer(RULE)  # kestrel's one allowance
    async with (
        fake_client(fake, cache, pacer=pacer) as kestrel,
        fake_client(fake, cache, other) as otter,
        fake_client(fake, cache, pacer=pacer) as kestrel_again,
    ):
        await kestrel.users.get(2)
        await otter.users.get(2)
        assert sent(fake, "user") == 2
        await kestrel_again.users.get(2)  # the same account: its entry
        assert sent(fake, "user") == 2
    # Keys name the account by a hash, never by the token.
    namespaces = {key.namespace for key in cache._entries}
    assert len(namespaces) == 2
    assert not any(fake.token in n or other in n for n in namespaces)


async def test_index_inbox_and_alerts_are_never_cached(fake: FakeBioTorrents) -> None:
    async with BioTorrentsClient(
        fake.token,
        cookies=fake.cookies,
        base_url=fake.url,
        rate_limit=RULE,
        cache=MemoryCache(),
    ) as client:
        for _ in range(2):
            await client.index()
            await client.inbox.conversations()
            await client.inbox.conversation(11)
            await client.notifications.alerts()
            await client.notifications.torrents()
        for action in ("index", "inbox", "get_user_notifications", "notifications"):
            expected = 4 if action == "inbox" else 2
            assert sent(fake, action) == expected, action
        assert client.stats["cache_hits"] == client.stats["cache_misses"] == 0
    with pytest.raises(ValueError, match="never cached"):
        MemoryCache(ttls={"inbox": 60})


async def test_unknown_actions_are_cached_only_with_a_ttl(
    fake: FakeBioTorrents,
) -> None:
    async with fake_client(fake, MemoryCache()) as client:
        await client.call("top10")
        await client.call("top10")
        assert sent(fake, "top10") == 2
        await client.call("top10", {"limit": 100}, ttl=60)
        await client.call("top10", {"limit": 100}, ttl=60)
        assert sent(fake, "top10") == 3


async def test_a_post_drops_the_accounts_entries(fake: FakeBioTorrents) -> None:
    async with BioTorrentsClient(
        fake.token,
        cookies=fake.cookies,
        base_url=fake.url,
        rate_limit=RULE,
        cache=MemoryCache(),
    ) as client:
        await client.users.get(2)
        await client.users.get(2)
        assert sent(fake, "user") == 1
        await client.notifications.clear("Inbox")  # a POST
        await client.users.get(2)
        assert sent(fake, "user") == 2
        await client.call(
            "clear_user_notification", method="POST", data={"type": "News"}
        )
        await client.users.get(2)
        assert sent(fake, "user") == 3


async def test_an_answer_that_began_before_a_post_is_not_stored() -> None:
    cache = MemoryCache()
    key = CacheKey.of("user:2|token|x", "user", {"id": "2"})
    found = await cache.lookup(key)
    await cache.invalidate(key.namespace)  # a POST landed meanwhile
    await cache.store(key, found.stamp, '{"old": true}', 60)
    assert (await cache.lookup(key)).text is None


async def test_fresh_and_cache_bypass_read_past_and_refresh(
    fake: FakeBioTorrents,
) -> None:
    async with fake_client(fake, MemoryCache()) as client:
        assert (await client.users.get(2)).username == "kestrel"
        fake.data.users[2].username = "kestrel2"
        assert (await client.users.get(2)).username == "kestrel"  # cached
        raw = await client.call("user", {"id": 2}, fresh=True)
        assert raw["username"] == "kestrel2"
        assert (await client.users.get(2)).username == "kestrel2"  # refreshed
        fake.data.users[2].username = "kestrel3"
        with client.cache_bypass():
            assert (await client.users.get(2)).username == "kestrel3"
        assert (await client.users.get(2)).username == "kestrel3"
        assert sent(fake, "user") == 3
        assert client.stats["cache_hits"] == 3
        assert client.stats["cache_misses"] == 3


async def test_a_cached_answer_cannot_be_changed_by_its_caller(
    fake: FakeBioTorrents,
) -> None:
    async with fake_client(fake, MemoryCache()) as client:
        first = await client.call("user", {"id": 2})
        first["username"] = "mutated"
        again = await client.call("user", {"id": 2})
        assert again["username"] == "kestrel"
        assert client.stats["cache_hits"] == 1


async def test_the_auth_stop_holds_for_cached_answers(api: Router) -> None:
    async with mock_client(MemoryCache()) as client:
        api.json(USER)
        await client.call("user", {"id": 2})
        api.json('{"status":"failure","error":"token revoked"}')
        with pytest.raises(Exception, match="token revoked"):
            await client.index()
        with pytest.raises(Exception, match="not sent"):
            await client.call("user", {"id": 2})
        assert len(api.calls) == 2


# --- RedisCache -------------------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    return f"test-cache-{uuid.uuid4().hex[:12]}"


async def test_redis_cache_is_shared_between_clients(
    redis_url: str, prefix: str, fake: FakeBioTorrents
) -> None:
    pacer = LocalPacer(RULE)  # one allowance, as a RedisPacer would give them
    async with (
        RedisCache(redis_url, prefix=prefix) as cache_a,
        RedisCache(redis_url, prefix=prefix) as cache_b,
        fake_client(fake, cache_a, pacer=pacer) as a,
        fake_client(fake, cache_b, pacer=pacer) as b,
    ):
        profile = await a.users.get(2)
        assert await b.users.get(2) == profile
        assert sent(fake, "user") == 1
        assert b.stats["cache_hits"] == 1
        # b's POST drops a's entries too: read-your-writes across processes.
        await b.call("clear_user_notification", method="POST", data={"type": "News"})
        await a.users.get(2)
        assert sent(fake, "user") == 2


async def test_redis_entries_expire_and_keys_hold_no_token(
    redis_url: str, prefix: str, fake: FakeBioTorrents
) -> None:
    async with (
        RedisCache(redis_url, prefix=prefix, ttls={"user": 0.2}) as cache,
        fake_client(fake, cache) as client,
    ):
        await client.users.get(2)
        await client.users.get(2)
        assert sent(fake, "user") == 1
        keys = [k.decode() for k in await cache._redis.keys(f"{{{prefix}:*")]
        assert keys
        assert not any(fake.token in k or "kestrel" in k for k in keys)
        await asyncio.sleep(0.3)
        await client.users.get(2)
        assert sent(fake, "user") == 2


async def test_redis_down_degrades_to_a_miss(
    fake: FakeBioTorrents, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0")
    async with cache, fake_client(fake, cache) as client:
        with caplog.at_level(logging.WARNING, "biotorrents_async.cache"):
            await client.users.get(2)
            await client.users.get(2)
            await client.call("clear_user_notification", method="POST", data={})
            await client.users.get(2)
        assert sent(fake, "user") == 3
        assert cache.errors >= 3
        warnings = [r for r in caplog.records if r.name == "biotorrents_async.cache"]
        assert len(warnings) == 1  # once per outage, not once per call


async def test_a_failed_invalidation_is_retried_before_serving(
    redis_url: str, prefix: str
) -> None:
    cache = RedisCache(redis_url, prefix=prefix)
    key = CacheKey.of("user:2|token|x", "user", {"id": "2"})
    found = await cache.lookup(key)
    await cache.store(key, found.stamp, '{"id": 2}', 60)
    assert (await cache.lookup(key)).text == '{"id": 2}'
    cache._stale.add(key.namespace)  # as if Redis had failed the invalidation
    assert (await cache.lookup(key)).text is None
    assert not cache._stale
    await cache.aclose()

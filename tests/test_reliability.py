"""Faults, cancellation, shutdown, concurrency and timeouts, end to end on the fake."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest

from biotorrents_async import (
    BioTorrentsClient,
    RateLimit,
    RetryPolicy,
    TransportError,
)
from biotorrents_async.testing import FakeBioTorrents, FakeData, Fault

RULE = RateLimit(2, 0.02)


def inbox_of(size: int) -> FakeData:
    """A user (id 2) with `size` conversations, newest first by construction."""
    data = FakeData()
    data.add_user("labadmin", id=1, class_name="Sysop")
    data.add_user("kestrel", id=2, class_name="Power User")
    data.add_user("Ana Jiménez & co", id=3)
    start = dt.datetime(2021, 1, 1)
    for n in range(size):
        data.add_conversation(
            f"Dataset #{n} & notes",
            sender=3 if n % 3 else 0,
            recipient=2,
            sent=start - dt.timedelta(minutes=n),
            unread=n % 2 == 0,
        )
    return data


async def soak(size: int, seed: int) -> dict[str, object]:
    policy = RetryPolicy(attempts=8, backoff_initial=0.002, backoff_max=0.02)
    async with FakeBioTorrents(inbox_of(size), rate_limit=RULE) as fake:
        fake.faults.delay = 0.3  # past the client's timeout below
        # One of each kind first, then about one attempt in five at random.
        fake.faults.schedule(*(k for kind in Fault for k in (None, kind)))
        fake.faults.randomly(0.2, list(Fault), seed=seed)
        async with BioTorrentsClient(
            fake.token,
            base_url=fake.url,
            rate_limit=RULE,
            retry=policy,
            timeout=0.1,
        ) as client:
            ids = [c.conv_id async for c in client.inbox.iter_conversations()]
            stats = client.stats
        pages = -(-size // 25)
        expected = [conv.id for conv in fake.data.conversations.values()]
        return {
            "ids": ids,
            "expected": expected,
            "pages": pages,
            "faults": dict(fake.faults.injected),
            "retries": stats["retries"],
            "budget": pages * (policy.attempts - 1),
            "real_rejections": sum(
                1 for r in fake.requests if r.outcome == "rate-limited"
            )
            - fake.faults.injected[Fault.RATE_LIMIT],
        }


async def check_soak(size: int, seed: int) -> None:
    result = await soak(size, seed)
    ids, expected = result["ids"], result["expected"]
    assert isinstance(ids, list)
    assert ids == expected  # every conversation exactly once, in server order
    assert len(set(ids)) == size
    faults = result["faults"]
    assert isinstance(faults, dict)
    assert sum(faults.values()) >= size // 25 * 0.1  # the faults really happened
    assert set(faults) == set(Fault)
    retries, budget = result["retries"], result["budget"]
    assert isinstance(retries, int)
    assert isinstance(budget, int)
    assert 0 < retries <= budget
    assert result["real_rejections"] == 0
    print(
        f"\nsoak: {size} items over {result['pages']} pages, faults "
        f"{ {k.value: v for k, v in faults.items()} }, "
        f"retries {retries}, duplicates 0, lost 0"
    )


async def test_fault_soak_loses_nothing() -> None:
    await check_soak(1000, seed=11)


@pytest.mark.slow
async def test_fault_soak_long() -> None:
    for seed in (1, 2, 3):
        await check_soak(10_000, seed=seed)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBioTorrents]:
    async with FakeBioTorrents(rate_limit=RateLimit(1, 0.3, margin=0)) as server:
        yield server


def client_for(fake: FakeBioTorrents, **kwargs: object) -> BioTorrentsClient:
    rule = kwargs.pop("rate_limit", fake.rate_limit)
    return BioTorrentsClient(
        fake.token,
        cookies=fake.cookies,
        base_url=fake.url,
        rate_limit=rule,  # type: ignore[arg-type]
        retry=RetryPolicy(attempts=2, backoff_initial=0.01),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_cancel_while_waiting_for_the_throttle(fake: FakeBioTorrents) -> None:
    async with client_for(fake) as client:
        await client.users.get(1)
        waiting = asyncio.create_task(client.users.get(3))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await client.users.get(4)
    sent = [r.time for r in fake.requests]
    assert [r.params.get("id") for r in fake.requests] == ["1", "4"]
    # The cancelled waiter neither took a slot nor disturbed the pacing.
    assert 0.3 <= sent[1] - sent[0] < 0.6
    assert all(r.outcome == "ok" for r in fake.requests)


async def test_cancel_while_in_flight_releases_the_slot(fake: FakeBioTorrents) -> None:
    fake.faults.delay = 30
    fake.faults.schedule(Fault.DELAY)
    async with client_for(fake) as client:
        stuck = asyncio.create_task(client.users.get(1))
        await asyncio.sleep(0.1)
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        async with asyncio.timeout(2):
            user = await client.users.get(2)
        assert user.username == "kestrel"
        assert client._session.pacer._in_flight == 0  # type: ignore[attr-defined]
    gaps = fake.requests[1].time - fake.requests[0].time
    assert gaps >= 0.3  # the cancelled request still counted on the server


async def test_cancel_while_iterating_and_aclose_promptly() -> None:
    async with FakeBioTorrents(rate_limit=RateLimit(2, 0.05)) as fake:
        await iterate_cancel_and_close(fake)


async def iterate_cancel_and_close(fake: FakeBioTorrents) -> None:
    client = client_for(fake)
    first = client.inbox.iter_conversations()
    second = client.users.iter_search("lab")
    assert (await anext(first)).conv_id > 0
    assert (await anext(second)).user_id > 0

    async def consume() -> None:
        async for _ in client.inbox.iter_conversations():
            await asyncio.sleep(0.01)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.monotonic()
    async with asyncio.timeout(1):
        await client.aclose()
    assert time.monotonic() - started < 0.5
    # The rest of the fetched page is still there; the next page is refused.
    with pytest.raises(RuntimeError, match="closed"):
        async for _ in first:
            pass
    await second.aclose()


async def test_two_hundred_tasks_one_borrowed_session() -> None:
    rule = RateLimit(2, 0.01)
    async with FakeBioTorrents(rate_limit=rule) as fake:
        connector = aiohttp.TCPConnector(limit=8)
        sent: list[str] = []
        trace = aiohttp.TraceConfig()

        async def on_start(*_: object) -> None:
            sent.append("request")

        trace.on_request_start.append(on_start)
        async with aiohttp.ClientSession(
            connector=connector, trace_configs=[trace]
        ) as borrowed:
            async with client_for(fake, rate_limit=rule, session=borrowed) as client:
                ids = [1 + n % 70 for n in range(200)]
                pages = [1 + n % 3 for n in range(200)]
                calls = [
                    client.users.get(i) if n % 2 else client.users.search("lab", page=p)
                    for n, (i, p) in enumerate(zip(ids, pages, strict=True))
                ]
                async with asyncio.timeout(30):
                    results = await asyncio.gather(*calls)
            assert not borrowed.closed
        for n, result in enumerate(results):
            if n % 2:
                assert result.username == fake.data.users[ids[n]].username
            else:
                assert result.current_page == pages[n]
        outcomes = Counter(r.outcome for r in fake.requests)
        assert outcomes == {"ok": len(fake.requests)}
        assert len({r.peer_port for r in fake.requests}) <= 8
        # Every request went through the borrowed session.
        assert len(sent) == len(fake.requests)
        # Identical concurrent calls shared one request each: one per distinct
        # call, the other callers joined it.
        distinct = {("user", i) for n, i in enumerate(ids) if n % 2} | {
            ("search", p) for n, p in enumerate(pages) if not n % 2
        }
        assert len(fake.requests) == len(distinct)
        assert client.stats["coalesced"] == 200 - len(distinct)


async def test_stalled_server_fails_within_the_bound() -> None:
    async with FakeBioTorrents(rate_limit=None) as fake:
        fake.faults.delay = 3600
        fake.faults.schedule(*[Fault.DELAY] * 3)
        policy = RetryPolicy(attempts=3, backoff_initial=0.05, backoff_max=0.1)
        timeout = 0.2
        async with client_for(fake, rate_limit=None, timeout=timeout) as client:
            client._session._retry = policy  # type: ignore[attr-defined]
            started = time.monotonic()
            with pytest.raises(TransportError, match="timed out") as info:
                await client.index()
            elapsed = time.monotonic() - started
        assert isinstance(info.value.__cause__, TimeoutError)
        assert elapsed <= timeout * policy.attempts + policy.budget() + 0.5
        assert len(fake.requests) == 3

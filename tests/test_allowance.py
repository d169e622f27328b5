"""Using the whole allowance safely: no rejections, priorities, coalescing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from biotorrents_async import BioTorrentsClient, LocalPacer, RateLimit, RetryPolicy
from biotorrents_async._pacing import BACKGROUND, INTERACTIVE
from biotorrents_async.testing import FakeBioTorrents


@pytest.mark.parametrize("callers", [1, 10, 100])
async def test_zero_rejections_with_jitter_and_coarse_expiry(callers: int) -> None:
    # The real rule scaled 1:100: windows of 5-6.1 "seconds", 5-50 "ms" latency.
    rule = RateLimit(2, 0.06)
    async with FakeBioTorrents(
        rate_limit=rule, latency=(0.0005, 0.005), seed=callers
    ) as fake:
        async with BioTorrentsClient(
            fake.token, base_url=fake.url, rate_limit=rule, retry=RetryPolicy.none()
        ) as client:
            per_caller = max(1, 24 // callers)
            pages = [
                [1 + c * per_caller + n for n in range(per_caller)]
                for c in range(callers)
            ]

            async def caller(mine: list[int]) -> None:
                for page in mine:
                    # A different page each time, so nothing is coalesced.
                    await client.users.search("a", page=page)

            await asyncio.gather(*(caller(mine) for mine in pages))
        outcomes = [r.outcome for r in fake.requests]
        assert len(outcomes) == callers * per_caller
        assert outcomes.count("rate-limited") == 0


@pytest.fixture
async def slow() -> AsyncIterator[tuple[FakeBioTorrents, BioTorrentsClient]]:
    rule = RateLimit(1, 0.01, margin=0)
    async with (
        FakeBioTorrents(rate_limit=rule) as fake,
        BioTorrentsClient(
            fake.token, cookies=fake.cookies, base_url=fake.url, rate_limit=rule
        ) as client,
    ):
        yield fake, client


async def test_direct_call_overtakes_background_fetches(
    slow: tuple[FakeBioTorrents, BioTorrentsClient],
) -> None:
    fake, client = slow

    async def background(n: int) -> None:
        with client.background():
            await client.users.search("lab", page=1 + n)

    await client.index()  # holds the only place for the next window
    crawl = [asyncio.create_task(background(n)) for n in range(100)]
    await asyncio.sleep(0)
    direct = asyncio.create_task(client.users.get(2))
    await asyncio.gather(direct, *crawl)
    order = [r.action for r in fake.requests]
    assert order.count("usersearch") == 100
    # After the call that held the place, at most one background fetch that had
    # already been granted the next slot can go before the direct call.
    assert order.index("user") <= 2


async def test_iterators_are_background_work(
    slow: tuple[FakeBioTorrents, BioTorrentsClient],
) -> None:
    fake, client = slow
    await client.index()
    crawl = asyncio.create_task(_drain(client.users.iter_search("lab")))
    await asyncio.sleep(0.015)
    direct = asyncio.create_task(client.users.get(2))
    await asyncio.gather(crawl, direct)
    order = [r.action for r in fake.requests]
    assert order.index("user") <= 3  # index, maybe a page in flight, then us
    assert order.count("usersearch") == 3


async def _drain(iterator: AsyncIterator[object]) -> None:
    async for _ in iterator:
        pass


async def test_pacer_priority_then_arrival_order() -> None:
    pacer = LocalPacer(RateLimit(1, 0.03, margin=0))
    order: list[str] = []

    async def one(name: str, priority: int) -> None:
        async with pacer.slot(priority):
            order.append(name)

    tasks = [asyncio.create_task(one(f"bg{n}", BACKGROUND)) for n in range(3)]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(one(f"fg{n}", INTERACTIVE)) for n in range(2)]
    await asyncio.gather(*tasks)
    assert order == ["bg0", "fg0", "fg1", "bg1", "bg2"]


async def test_identical_concurrent_reads_share_one_request(
    slow: tuple[FakeBioTorrents, BioTorrentsClient],
) -> None:
    fake, client = slow
    users = await asyncio.gather(*(client.users.get(5) for _ in range(10)))
    pages = await asyncio.gather(
        *(client.inbox.conversations(page=2) for _ in range(5))
    )
    assert len({u.username for u in users}) == 1
    assert all(p == pages[0] for p in pages)
    assert [r.action for r in fake.requests] == ["user", "inbox"]
    assert client.stats["coalesced"] == 13


async def test_state_changing_calls_are_never_shared(
    slow: tuple[FakeBioTorrents, BioTorrentsClient],
) -> None:
    fake, client = slow
    await asyncio.gather(*(client.inbox.conversation(11) for _ in range(3)))
    await asyncio.gather(*(client.notifications.torrents() for _ in range(3)))
    await asyncio.gather(*(client.notifications.clear("News") for _ in range(3)))
    actions = [r.action for r in fake.requests]
    assert (
        actions
        == ["inbox"] * 3 + ["notifications"] * 3 + ["clear_user_notification"] * 3
    )
    assert client.stats["coalesced"] == 0


async def test_a_cancelled_caller_does_not_cancel_the_shared_request(
    slow: tuple[FakeBioTorrents, BioTorrentsClient],
) -> None:
    fake, client = slow
    await client.index()  # the next call must wait for the window
    first = asyncio.create_task(client.users.get(7))
    second = asyncio.create_task(client.users.get(7))
    await asyncio.sleep(0)
    first.cancel()
    user = await second
    assert user.username == fake.data.users[7].username
    with pytest.raises(asyncio.CancelledError):
        await first
    assert [r.action for r in fake.requests] == ["index", "user"]


async def test_everyone_cancelled_cancels_the_shared_request(
    slow: tuple[FakeBioTorrents, BioTorrentsClient],
) -> None:
    fake, client = slow
    await client.index()
    waiting = [asyncio.create_task(client.users.get(8)) for _ in range(3)]
    await asyncio.sleep(0)
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    await asyncio.sleep(0.05)
    assert [r.action for r in fake.requests] == ["index"]


@pytest.mark.slow
async def test_default_pacing_against_the_real_rule() -> None:
    # Real time: 2 per 6 s, windows of 5 to 7 s; six requests take about 14 s.
    async with FakeBioTorrents(seed=3) as fake:  # noqa: SIM117
        async with BioTorrentsClient(
            fake.token, base_url=fake.url, retry=RetryPolicy.none()
        ) as client:
            await asyncio.gather(
                *(client.users.search("a", page=p) for p in range(1, 7))
            )
    assert [r.outcome for r in fake.requests] == ["ok"] * 6

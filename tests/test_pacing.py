"""Pacing against a model of the server's fixed-window counter."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from aiolimiter import AsyncLimiter
from support import Call, Exchange, Router, load_exchange

from biotorrents_async import BioTorrentsClient, LocalPacer, RateLimit, RetryPolicy
from biotorrents_async._pacing import BACKGROUND, INTERACTIVE, current_priority


class FixedWindowServer:
    """The memcached counter: the first counted request opens a fixed window.

    Windows last their longest possible length (``per`` plus a late expiry tick
    of ``per / 60``), the worst case for a client.
    """

    def __init__(self, rule: RateLimit) -> None:
        self.requests = rule.requests
        self.length = rule.per * (1 + 1 / 60)
        self.opened: float | None = None
        self.count = 0
        self.accepted = 0
        self.rejected = 0

    def hit(self, now: float) -> bool:
        if self.opened is None or now >= self.opened + self.length:
            self.opened, self.count = now, 0
        if self.count >= self.requests:
            self.rejected += 1  # rejected requests are not counted
            return False
        self.count += 1
        self.accepted += 1
        return True


async def call_through(
    pacer: LocalPacer | AsyncLimiter, server: FixedWindowServer, rng: random.Random
) -> None:
    """One request: travel to the server, get counted, travel back."""
    up, down = rng.uniform(0, 0.004), rng.uniform(0, 0.004)
    if isinstance(pacer, AsyncLimiter):
        async with pacer:
            await asyncio.sleep(up)
            server.hit(time.monotonic())
            await asyncio.sleep(down)
        return
    async with pacer.slot():
        await asyncio.sleep(up)
        server.hit(time.monotonic())
        await asyncio.sleep(down)


RULE = RateLimit(2, 0.05)


@pytest.mark.parametrize("callers", [1, 100])
async def test_pacer_never_breaks_the_fixed_window(callers: int) -> None:
    server = FixedWindowServer(RULE)
    pacer = LocalPacer(RULE)
    rng = random.Random(callers)
    per_caller = 40 if callers == 1 else 1
    await asyncio.gather(
        *(_repeat(per_caller, pacer, server, rng) for _ in range(callers))
    )
    assert server.rejected == 0
    assert server.accepted == (40 if callers == 1 else 100)


async def test_pacing_without_the_late_tick_margin_is_rejected() -> None:
    # Answers that come back at once: holding a place for exactly `per` after
    # them lets a request in just before a late-expiring window has closed.
    server = FixedWindowServer(RULE)
    pacer = LocalPacer(RateLimit(RULE.requests, RULE.per, margin=0))
    for _ in range(20):
        async with pacer.slot():
            server.hit(time.monotonic())
    assert server.rejected > 0


async def test_default_margin_survives_instant_answers() -> None:
    server = FixedWindowServer(RULE)
    pacer = LocalPacer(RULE)
    for _ in range(20):
        async with pacer.slot():
            server.hit(time.monotonic())
    assert (server.accepted, server.rejected) == (20, 0)


async def _repeat(
    n: int, pacer: LocalPacer, server: FixedWindowServer, rng: random.Random
) -> None:
    for _ in range(n):
        await call_through(pacer, server, rng)


async def test_naive_leaky_bucket_bursts_through_the_window() -> None:
    # The reason LocalPacer exists: AsyncLimiter(2, per) admits a burst.
    server = FixedWindowServer(RULE)
    limiter = AsyncLimiter(RULE.requests, RULE.per)
    rng = random.Random(7)
    await asyncio.gather(*(call_through(limiter, server, rng) for _ in range(20)))
    assert server.rejected > 0


async def test_client_at_default_pacing_gets_no_rejections(api: Router) -> None:
    rule = RateLimit(2, 0.05)
    server = FixedWindowServer(rule)
    ok = load_exchange("bearer_index.txt")
    limited = Exchange(
        200, {}, b'{"status":"failure","error":"rate limit exceeded","info":{}}'
    )

    def handler(_: Call) -> Exchange:
        return ok if server.hit(time.monotonic()) else limited

    api.handler = handler
    async with BioTorrentsClient(
        "t", base_url="https://bio.example", rate_limit=rule, retry=RetryPolicy.none()
    ) as client:
        results = await asyncio.gather(*(client.index() for _ in range(30)))
    assert [r.id for r in results] == [2] * 30
    assert server.rejected == 0
    assert client.stats["rate_limit_pauses"] == 0


async def test_waiters_are_served_in_arrival_order() -> None:
    pacer = LocalPacer(RateLimit(1, 0.01, margin=0))
    order: list[int] = []

    async def one(i: int) -> None:
        async with pacer.slot():
            order.append(i)

    tasks = []
    for i in range(10):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == list(range(10))


async def test_cancelled_waiter_takes_no_slot_and_others_proceed() -> None:
    pacer = LocalPacer(RateLimit(1, 0.05, margin=0))
    sent: list[str] = []

    async def one(name: str) -> None:
        async with pacer.slot():
            sent.append(name)

    await one("first")
    waiting = asyncio.create_task(one("cancelled"))
    after = asyncio.create_task(one("after"))
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.gather(waiting, after, return_exceptions=True)
    assert sent == ["first", "after"]
    assert pacer._in_flight == 0


async def test_cancelled_request_releases_its_slot() -> None:
    pacer = LocalPacer(RateLimit(1, 0.01, margin=0))
    started = asyncio.Event()

    async def hang() -> None:
        async with pacer.slot():
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(hang())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(1):
        async with pacer.slot():
            pass


async def test_pause_holds_everyone_for_the_given_time() -> None:
    now = [0.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    pacer = LocalPacer(None, clock=lambda: now[0], sleep=fake_sleep)
    async with pacer.slot():
        pass
    assert waits == []
    await pacer.pause(7.0)
    await pacer.pause(1.0)  # a shorter pause never shortens the running one
    async with pacer.slot():
        pass
    assert waits == [7.0]


async def test_slot_waits_exactly_until_the_oldest_place_frees() -> None:
    now = [100.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    pacer = LocalPacer(RateLimit(2, 6.0), clock=lambda: now[0], sleep=fake_sleep)
    async with pacer.slot():
        now[0] += 0.5  # the answer takes half a second
    async with pacer.slot():
        now[0] += 0.25
    async with pacer.slot():
        pass
    # The first place was held until 6.1 s after its answer at t=100.5.
    assert waits == [pytest.approx(100.5 + 6.1 - 100.75)]


# --- survivors of a mutation review -------------------------------------------------


async def test_a_lifted_waiter_is_woken_with_nothing_in_flight() -> None:
    # Nothing in flight: no release will wake anybody. The old head's timer
    # ends, it is no longer first, so the lifted waiter must have been woken.
    pacer = LocalPacer(RateLimit(1, 0.1, margin=0))
    async with pacer.slot():
        pass  # the place is held for one window after this answer
    order: list[str] = []

    async def one(name: str, slot: object) -> None:
        async with slot:  # type: ignore[attr-defined]
            order.append(name)

    first, second = pacer.slot(BACKGROUND), pacer.slot(BACKGROUND)
    tasks = [asyncio.create_task(one("first", first))]
    await asyncio.sleep(0.01)
    tasks.append(asyncio.create_task(one("second", second)))
    await asyncio.sleep(0.01)
    second.prioritize(INTERACTIVE)  # a direct call joined its shared request
    async with asyncio.timeout(3):
        await asyncio.gather(*tasks)
    assert order == ["second", "first"]


async def test_a_pause_longer_than_the_window_holds_with_every_place_taken() -> None:
    rule = RateLimit(1, 0.1, margin=0)
    pacer = LocalPacer(rule)
    async with pacer.slot():
        pass  # every place taken, for one window
    await pacer.pause(0.5)  # the server said Retry-After
    started = time.monotonic()
    async with pacer.slot():
        waited = time.monotonic() - started
    assert waited >= 0.5 - 0.02  # the pause, not just the window


def test_a_background_block_ends_with_the_block() -> None:
    client = BioTorrentsClient("t0ken-value", base_url="https://bio.example")
    assert current_priority.get() == INTERACTIVE
    with client.background():
        assert current_priority.get() == BACKGROUND
    assert current_priority.get() == INTERACTIVE  # later direct calls go first

"""What a bot in production needs of its streams: failures that reach a person,
health, stores that fail clearly, refused misuse, a restart that keeps the rule.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from support import free_port

from biotorrents_async import (
    BioTorrentsClient,
    CursorFileError,
    FileStore,
    LeaseLostError,
    MemoryStore,
    RateLimit,
    RedisStore,
    ResponseError,
    RetryPolicy,
    StoreError,
    StreamFailedError,
    TransportError,
)
from biotorrents_async.testing import FakeBioTorrents, Fault

RULE = RateLimit(2, 0.02)
INTERVAL = 0.05
FAST = RetryPolicy(attempts=2, backoff_initial=0.005, backoff_max=0.01)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBioTorrents]:
    async with FakeBioTorrents(rate_limit=RULE) as server:
        for conv in server.data.conversations.values():
            conv.unread_for.discard(2)
        yield server


def client_for(fake: FakeBioTorrents, **kwargs: Any) -> BioTorrentsClient:
    options: dict[str, Any] = {
        "cookies": fake.cookies,
        "base_url": fake.url,
        "rate_limit": RULE,
        "retry": FAST,
    }
    options.update(kwargs)
    return BioTorrentsClient(fake.token, **options)


# --- failures that reach a person ------------------------------------------------


async def test_a_closed_port_ends_the_stream_after_fail_after() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with BioTorrentsClient(
        "t" * 32, base_url=url, rate_limit=RULE, retry=FAST
    ) as client:
        stream = client.notifications.watch_alerts(interval=INTERVAL, fail_after=0.5)
        started = time.monotonic()

        async def read_all() -> None:
            async with stream:
                async for _ in stream:
                    pass

        async with asyncio.timeout(10):
            with pytest.raises(StreamFailedError) as caught:
                await read_all()
        assert 0.5 <= time.monotonic() - started < 5
        assert isinstance(caught.value.__cause__, TransportError)
        assert stream.health.role == "ended"


async def test_a_server_that_answers_404_to_everything_ends_the_stream() -> None:
    async def not_found(request: web.Request) -> web.Response:
        return web.Response(
            status=404, text="<html>Not Found</html>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with BioTorrentsClient(
            "t" * 32, base_url=f"http://127.0.0.1:{port}", rate_limit=RULE, retry=FAST
        ) as client:
            stream = client.inbox.watch(interval=INTERVAL, fail_after=0.5)
            async with asyncio.timeout(10):
                with pytest.raises(StreamFailedError) as caught:
                    await stream.ready()
            assert isinstance(caught.value.__cause__, ResponseError)
            await stream.aclose()
    finally:
        await runner.cleanup()


async def test_fail_after_none_waits_for_ever(fake: FakeBioTorrents) -> None:
    async with client_for(fake) as client:
        stream = client.inbox.watch(interval=INTERVAL, fail_after=None)
        await stream.ready()
        fake.faults.schedule(*[Fault.HTML_ERROR] * 300)
        await asyncio.sleep(1.0)
        assert stream.health.consecutive_failures > 0
        assert stream.health.role == "active"  # still trying
        fake.faults.clear()
        made = fake.data.add_conversation("Back", sender=3, recipient=2)
        async with asyncio.timeout(30):
            async with stream:
                item = await anext(stream)
        assert item.conv_id == made.id


async def test_health_says_how_a_stream_is_doing(fake: FakeBioTorrents) -> None:
    async with client_for(fake) as client:
        store = MemoryStore()
        active = client.inbox.watch(interval=INTERVAL, store=store)
        assert active.health.role == "starting"
        assert not active.health.ready
        await active.ready()
        health = active.health
        assert (health.role, health.ready, health.consecutive_failures) == (
            "active",
            True,
            0,
        )
        assert health.last_success is not None
        assert health.holder is not None
        other = client.inbox.watch(interval=INTERVAL, store=store)
        async with other:
            async with asyncio.timeout(5):
                while other.health.role != "standby":  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            assert other.health.holder == health.holder  # who holds it
            fake.faults.schedule(
                Fault.HTML_ERROR, Fault.HTML_ERROR, Fault.HTML_ERROR, action="index"
            )
            async with asyncio.timeout(5):
                while active.health.consecutive_failures == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            assert "HTTP 500" in (active.health.last_error or "")
            await active.aclose()
            # A clean stop hands the cursor over at once.
            await asyncio.wait_for(other.ready(), 5)
            assert other.health.role == "active"


async def test_backoff_is_announced_once_and_kept(
    fake: FakeBioTorrents, caplog: pytest.LogCaptureFixture
) -> None:
    async with client_for(fake, retry=RetryPolicy.none()) as client:
        stream = client.inbox.watch(interval=INTERVAL)
        await stream.ready()
        with caplog.at_level(logging.WARNING, logger="biotorrents_async.watch"):
            failed_at = len(fake.requests)
            fake.faults.schedule(Fault.HTML_ERROR, action="index")
            async with asyncio.timeout(5):
                while not any("next try in" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            (record,) = [r for r in caplog.records if "next try in" in r.getMessage()]
            pause = float(record.getMessage().rsplit("next try in ", 1)[1].rstrip("s"))
            await asyncio.sleep(pause + INTERVAL * 4)
        index_times = [r.time for r in fake.requests[failed_at:] if r.action == "index"]
        # The next index request comes no earlier than announced.
        assert index_times[1] - index_times[0] >= pause * 0.95
        await stream.aclose()


# --- stores that fail clearly -------------------------------------------------------


@pytest.mark.parametrize("case", ["no folder", "read-only", "not sqlite"])
async def test_an_unusable_cursor_file_fails_at_the_start(
    fake: FakeBioTorrents, tmp_path: Path, case: str
) -> None:
    if case == "no folder":
        path = tmp_path / "missing" / "bot.db"
        cause = "folder does not exist"
    elif case == "read-only":
        path = tmp_path / "bot.db"
        FileStore(path)._transaction(lambda c: None)  # an existing, empty store
        path.chmod(0o400)
        if os.geteuid() == 0:  # root writes past the mode: make it immutable
            subprocess.run(["chattr", "+i", str(path)], check=True)  # noqa: S603, S607, ASYNC221
        cause = "read-only"
    else:
        path = tmp_path / "bot.db"
        path.write_text("these are my notes, not a database\n" * 10)
        cause = "not a SQLite database"
    async with client_for(fake) as client:
        sent = len(fake.requests)
        stream = client.inbox.watch(interval=INTERVAL, store=FileStore(path))
        async with asyncio.timeout(5):
            with pytest.raises(CursorFileError) as caught:
                await stream.ready()
        assert str(path) in str(caught.value)
        assert cause in str(caught.value)
        assert isinstance(caught.value, StoreError)
        assert len(fake.requests) == sent  # nothing polled for it
    if case == "read-only" and os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=True)  # noqa: S603, S607, ASYNC221


async def test_a_save_that_fails_mid_run_ends_the_stream(
    fake: FakeBioTorrents, tmp_path: Path
) -> None:
    path = tmp_path / "bot.db"
    async with client_for(fake) as client:
        stream = client.inbox.watch(interval=INTERVAL, store=FileStore(path))
        async with stream:
            await stream.ready()
            made = {
                fake.data.add_conversation(f"C{n}", sender=3, recipient=2).id
                for n in range(2)
            }
            first = await anext(stream)
            # The disk goes away under the bot.
            connection = sqlite3.connect(path)
            connection.execute("DROP TABLE cursors")
            connection.execute("CREATE TABLE cursors (name TEXT)")  # wrong shape
            connection.commit()
            connection.close()
            with pytest.raises(CursorFileError):
                await anext(stream)
            with pytest.raises(CursorFileError):
                await anext(stream)  # ended: nothing more
        assert first.conv_id in made  # the other one never came


# --- misuse ------------------------------------------------------------------------


@pytest.mark.parametrize("interval", [float("inf"), 1e400, float("nan"), 86401, 0, -1])
async def test_absurd_intervals_are_refused(
    fake: FakeBioTorrents, interval: float
) -> None:
    async with client_for(fake) as client:
        with pytest.raises(ValueError, match="interval"):
            client.inbox.watch(interval=interval)
    with pytest.raises(ValueError, match="watch_interval"):
        BioTorrentsClient("t" * 32, watch_interval=interval)


async def test_two_kinds_cannot_share_a_name_in_one_store(
    fake: FakeBioTorrents, tmp_path: Path
) -> None:
    for store in (MemoryStore(), FileStore(tmp_path / "bot.db")):
        async with client_for(fake) as client:
            inbox = client.inbox.watch(interval=INTERVAL, store=store, name="bot")
            await inbox.ready()
            alerts = client.notifications.watch_alerts(
                interval=INTERVAL, store=store, name="bot"
            )
            with pytest.raises(ValueError, match="inbox stream"):
                await alerts.ready()
            await inbox.aclose()
            await alerts.aclose()


async def test_watching_on_a_closed_client_says_so(fake: FakeBioTorrents) -> None:
    client = client_for(fake)
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        client.inbox.watch()


def test_the_hubs_machinery_is_private() -> None:
    from biotorrents_async import WatchStream

    public = {n for n in vars(WatchStream) if not n.startswith("_")}
    assert public == {"aclose", "event", "health", "key", "kind", "ready"}


async def test_one_interval_for_every_stream_of_a_client(fake: FakeBioTorrents) -> None:
    async with client_for(fake, watch_interval=0.2) as client:
        inbox = client.inbox.watch()
        alerts = client.notifications.watch_alerts(interval=0.05)
        assert inbox.interval == 0.2
        assert alerts.interval == 0.05  # its own keyword wins


# --- a restart keeps the rule ---------------------------------------------------


async def test_a_clean_restart_sends_into_no_full_window(tmp_path: Path) -> None:
    rule = RateLimit(2, 1.0)
    async with FakeBioTorrents(rate_limit=rule) as fake:
        store = FileStore(tmp_path / "bot.db")
        for _ in range(3):  # a bot stopped and started again at once
            async with client_for(fake, rate_limit=rule, retry=RetryPolicy()) as client:
                stream = client.inbox.watch(interval=0.1, store=store)
                async with stream:
                    await stream.ready()
                    fake.data.add_conversation("Hi", sender=3, recipient=2)
                    await anext(stream)
        assert [r for r in fake.requests if r.outcome == "rate-limited"] == []


async def test_a_lost_lease_sends_nothing_still_queued(fake: FakeBioTorrents) -> None:
    store = MemoryStore()
    async with client_for(fake) as client:
        stream = client.inbox.watch(interval=INTERVAL, store=store, lease=0.3)
        async with stream:
            await stream.ready()
            for n in range(3):
                fake.data.add_conversation(f"C{n}", sender=3, recipient=2)
            async with asyncio.timeout(5):
                while stream._queue.qsize() < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            # Another replica took over (its clock ran ahead): the fence moved on,
            # though this one's own lease clock still says it holds.
            record = store._leases["inbox"]
            record[1], record[2] = "elsewhere", record[2] + 1
            record[3] = time.monotonic() + 60
            await asyncio.sleep(0.25)  # its next renewal is refused
            with pytest.raises(LeaseLostError):
                await anext(stream)
            assert stream.health.role == "ended"


# --- the lease contract of every store, and the holes a review found ----------------


@pytest.fixture(params=["memory", "file", "redis"])
async def leased(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "file":
        yield FileStore(tmp_path / "bot.db")
    else:
        url = request.getfixturevalue("redis_url")
        store = RedisStore(url, prefix=f"test-{os.getpid()}-{time.time_ns()}:")
        yield store
        await store.aclose()


async def test_every_store_fences_a_holder_that_lost_its_lease(leased: Any) -> None:
    a = await leased.acquire("inbox", kind="inbox", holder="a", ttl=0.2)
    assert a.fence is not None
    held = await leased.acquire("inbox", kind="inbox", holder="b", ttl=0.2)
    assert (held.fence, held.holder) == (None, "a")  # a holds it: b stands by
    assert 0 < held.expires_in <= 0.2
    await asyncio.sleep(0.3)  # a is paused past its lease
    b = await leased.acquire("inbox", kind="inbox", holder="b", ttl=5)
    assert b.fence is not None
    assert b.fence > a.fence
    with pytest.raises(LeaseLostError):
        await leased.save("inbox", {"v": 2, "by": "a"}, fence=a.fence)
    assert not await leased.renew("inbox", holder="a", fence=a.fence, ttl=5)
    await leased.save("inbox", {"v": 2, "by": "b"}, fence=b.fence)
    assert await leased.renew("inbox", holder="b", fence=b.fence, ttl=5)
    await leased.release("inbox", holder="b", fence=b.fence)
    assert not await leased.renew("inbox", holder="a", fence=a.fence, ttl=5)
    assert (await leased.load("inbox"))["by"] == "b"
    c = await leased.acquire("inbox", kind="inbox", holder="c", ttl=5)
    assert c.fence is not None  # free at once after a release
    assert c.fence > b.fence
    with pytest.raises(ValueError, match="inbox stream"):
        await leased.acquire("inbox", kind="alerts", holder="d", ttl=5)


async def test_a_redis_fence_lost_with_its_key_is_not_handed_out_again(
    redis_url: str,
) -> None:
    import redis.asyncio

    store = RedisStore(redis_url, prefix=f"test-{time.time_ns()}:")
    try:
        old = await store.acquire("inbox", kind="inbox", holder="a", ttl=0.1)
        admin = redis.asyncio.from_url(redis_url)
        try:  # a restart without persistence, an eviction: the keys are gone
            await admin.delete(
                store._key("inbox", ":fence"), store._key("inbox", ":lease")
            )
        finally:
            await admin.aclose()
        new = await store.acquire("inbox", kind="inbox", holder="b", ttl=5)
        assert new.fence is not None
        assert old.fence is not None
        assert new.fence > old.fence
        with pytest.raises(LeaseLostError):
            await store.save("inbox", {"by": "a"}, fence=old.fence)
    finally:
        await store.aclose()


async def test_a_listing_that_fails_inside_index_counts_for_fail_after(
    fake: FakeBioTorrents,
) -> None:
    async with client_for(fake) as client:
        stream = client.inbox.watch(interval=INTERVAL, fail_after=0.5)
        await stream.ready()
        # index answers; every inbox listing it runs fails.
        fake.faults.schedule(*[Fault.HTML_ERROR] * 500, action="inbox")

        async def new_mail_every_round() -> None:
            while True:
                fake.data.add_conversation("Hi", sender=3, recipient=2)
                await asyncio.sleep(INTERVAL)

        feeder = asyncio.create_task(new_mail_every_round())
        try:
            async with asyncio.timeout(10):
                with pytest.raises(StreamFailedError):
                    async with stream:
                        await anext(stream)
        finally:
            feeder.cancel()
            fake.faults.clear()


async def test_ready_says_so_when_the_stream_ends_before_its_baseline(
    fake: FakeBioTorrents,
) -> None:
    client = client_for(fake)
    stream = client.inbox.watch(interval=INTERVAL)
    fake.faults.schedule(*[Fault.HTML_ERROR] * 50)  # the baseline keeps failing
    waiting = asyncio.create_task(stream.ready())
    await asyncio.sleep(0.2)
    await client.aclose()
    async with asyncio.timeout(5):
        with pytest.raises(RuntimeError, match="before its baseline"):
            await waiting
    fake.faults.clear()


async def test_a_stream_woken_past_its_lease_yields_nothing(
    fake: FakeBioTorrents,
) -> None:
    store = MemoryStore()
    async with client_for(fake) as client:
        frozen = client.inbox.watch(interval=INTERVAL, store=store, lease=0.3)
        async with frozen:
            await frozen.ready()
            fake.data.add_conversation("Queued", sender=3, recipient=2)
            async with asyncio.timeout(5):
                while frozen._queue.empty():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            # Frozen: its renewals stop (a paused process), its lease runs out,
            # and another replica takes the cursor over.
            assert frozen._lease_task is not None
            frozen._lease_task.cancel()
            await asyncio.gather(frozen._lease_task, return_exceptions=True)
            await asyncio.sleep(0.35)
            taken = await store.acquire("inbox", kind="inbox", holder="other", ttl=60)
            assert taken.fence is not None
            with pytest.raises(LeaseLostError):
                await anext(frozen)  # woken up: the queued item is not sent


async def test_fail_after_starts_over_after_a_success(fake: FakeBioTorrents) -> None:
    async with client_for(fake, retry=RetryPolicy.none()) as client:
        stream = client.notifications.watch_alerts(interval=INTERVAL, fail_after=0.6)
        await stream.ready()
        fake.faults.schedule(Fault.HTML_ERROR, action="get_user_notifications")
        await asyncio.sleep(0.8)  # one failure, then successes, past fail_after
        assert stream.health.consecutive_failures == 0
        fake.faults.schedule(Fault.HTML_ERROR, action="get_user_notifications")
        await asyncio.sleep(0.5)
        # One more failure, long after the first: not "failing for 0.6 s".
        assert stream.health.role == "active"
        fake.data.add_alert(2, "StaffPM", "Still here", "staffpm.php")
        async with asyncio.timeout(5):
            async with stream:
                assert (await anext(stream)).kind == "StaffPM"

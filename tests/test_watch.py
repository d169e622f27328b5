"""Watch streams against the fake server: every item once, cheap when quiet."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from biotorrents_async import (
    Alert,
    ApiError,
    AuthenticationError,
    BioTorrentsClient,
    CookiesRequiredError,
    FileStore,
    MemoryStore,
    RateLimit,
    RedisStore,
    RetryPolicy,
    SharedStoreError,
    WatchStream,
    item_key,
    merge_streams,
)
from biotorrents_async.testing import FakeBioTorrents, FakeConversation, Fault

RULE = RateLimit(2, 0.02)
INTERVAL = 0.05
FAST = RetryPolicy(attempts=6, backoff_initial=0.005, backoff_max=0.02)


class Ticks:
    """The fake server's clock: one second later at every reading."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeBioTorrents]:
    async with FakeBioTorrents(rate_limit=RULE) as server:
        server.data.now = Ticks()
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


class Consumer:
    """Runs `async with stream: async for ...` in a task and records what came."""

    def __init__(self, stream: WatchStream[Any], client: BioTorrentsClient) -> None:
        self.stream = stream
        self.client = client
        self.items: list[tuple[int, Any]] = []  # (hub round when received, item)
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with self.stream:
            async for item in self.stream:
                self.items.append((self.client._hub._round, item))
                self.arrived.set()

    async def wait_for(self, count: int, within: float = 20) -> None:
        async with asyncio.timeout(within):
            while len(self.items) < count:
                self.arrived.clear()
                await self.arrived.wait()

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def started(client: BioTorrentsClient, *streams: WatchStream[Any]) -> None:
    """Wait until every stream has its baseline."""
    async with asyncio.timeout(10):
        while not all(s._tracker.started for s in streams):  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    rounds = client._hub._round
    async with asyncio.timeout(10):
        while client._hub._round < rounds + 1:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def crash(client: BioTorrentsClient, stream: WatchStream[Any]) -> None:
    """The process dies: nothing is closed, nothing more is saved.

    Its lease is left to run out; these tests skip the wait (the lease tests
    measure it with real processes).
    """
    await client._hub.remove(stream)
    if stream._lease_task is not None:
        stream._lease_task.cancel()
        await asyncio.gather(stream._lease_task, return_exceptions=True)
    await client.aclose()
    await expire_lease(stream._store, stream.name)


async def expire_lease(store: Any, name: str) -> None:
    """As if the dead holder's lease had run out."""
    if isinstance(store, MemoryStore):
        store._leases[name][3] = 0.0
    elif isinstance(store, FileStore):
        await asyncio.to_thread(
            store._transaction,
            lambda c: c.execute(
                "UPDATE leases SET expires = 0 WHERE name = ?", (name,)
            ),
        )
    elif isinstance(store, RedisStore):
        await store._redis.delete(store._key(name, ":lease"))


async def after_restart(
    fake: FakeBioTorrents,
    watch: Callable[[BioTorrentsClient], WatchStream[Any]],
    count: int,
) -> list[Any]:
    """A new process on the same store: the items that come, once no more do."""
    async with client_for(fake) as client:
        consumer = Consumer(watch(client), client)
        await consumer.wait_for(count)
        await asyncio.sleep(INTERVAL * 4)  # and nothing after them
        await consumer.stop()
    return [item for _, item in consumer.items]


async def rounds_done(client: BioTorrentsClient, last: int) -> None:
    """Wait until the hub's round ``last`` is over and its items are consumed."""
    async with asyncio.timeout(20):
        while client._hub._round <= last:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    await asyncio.sleep(0.01)  # the consumers take what was queued


def mark_all_read(fake: FakeBioTorrents) -> None:
    for conv in fake.data.conversations.values():
        conv.unread_for.discard(2)


def hit(fake: FakeBioTorrents, name: str) -> int:
    group = fake.data.add_group(name)
    torrent = fake.data.add_torrent(group, uploader=3)
    fake.data.add_notification(2, torrent)
    return torrent.id


# --- items injected while streams run --------------------------------------------


async def test_each_new_item_once_within_two_rounds(
    fake: FakeBioTorrents, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The periodic re-listing takes a round's place; it has a test of its own.
    monkeypatch.setattr("biotorrents_async._hub.RESYNC", 10**9)
    mark_all_read(fake)  # no unread mail: the counters see every change
    async with client_for(fake) as client:
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        hits = Consumer(client.notifications.watch_torrents(interval=INTERVAL), client)
        alerts = Consumer(client.notifications.watch_alerts(interval=INTERVAL), client)
        await started(client, inbox.stream, hits.stream, alerts.stream)
        assert inbox.items == hits.items == alerts.items == []  # only what is new
        old = fake.data.conversations[5]
        steps = [
            (inbox, lambda: fake.data.add_conversation("Hi", sender=3, recipient=2)),
            (inbox, lambda: [fake.data.add_reply(old, sender=_other(old)), old][1]),
            (hits, lambda: hit(fake, "New data set")),
            (alerts, lambda: fake.data.add_alert(2, "Quotes", "Quote", "q.php")),
        ]
        for consumer, make in steps:
            # Two checks take turns (the counters, the alerts) while no
            # conversation is unread; a third joins when one is.
            await quiet(client)
            injected = client._hub._round
            made = make()
            await rounds_done(client, injected + 2)
            mine = [(r, item) for r, item in consumer.items if _is(item, made)]
            assert len(mine) == 1, (consumer.items, made)
            assert mine[0][0] - injected <= 2
            for each in (inbox, hits, alerts):
                each.items.clear()
            mark_all_read(fake)
        for consumer in (inbox, hits, alerts):
            await consumer.stop()


def _is(item: Any, made: Any) -> bool:
    if isinstance(made, FakeConversation):
        return getattr(item, "conv_id", None) == made.id
    if isinstance(made, int):
        return getattr(item, "torrent_id", None) == made
    return getattr(item, "kind", None) == "Quotes"


async def quiet(client: BioTorrentsClient) -> None:
    """Wait until the hub's counters say no conversation is unread."""
    async with asyncio.timeout(10):
        while client._hub._unread:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_a_reply_to_an_unread_conversation_is_seen(
    fake: FakeBioTorrents,
) -> None:
    # The counters cannot see it (the conversation was unread already); page 1
    # of the inbox joins the rotation while unread conversations exist.
    async with client_for(fake) as client:
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        await started(client, inbox.stream)
        unread = next(
            c
            for c in fake.data.conversations.values()
            if 2 in c.unread_for and c.participants[1] == 2
        )
        injected = client._hub._round
        fake.data.add_reply(unread, sender=unread.participants[0])
        await inbox.wait_for(1)
        [(round_, conv)] = inbox.items
        assert conv.conv_id == unread.id
        assert round_ - injected <= 2  # the rotation is index + inbox page 1
        await inbox.stop()


async def test_a_hit_read_on_the_site_before_a_check_still_comes(
    fake: FakeBioTorrents, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The counter is back to 0 before the watcher looks: only the periodic
    # listing can see the hit.
    monkeypatch.setattr("biotorrents_async._hub.RESYNC", 4)
    async with client_for(fake) as client:
        hits = Consumer(client.notifications.watch_torrents(interval=INTERVAL), client)
        await started(client, hits.stream)
        injected = client._hub._round
        torrent = hit(fake, "Read on the site at once")
        fake.data.notifications[-1].unread = False
        await hits.wait_for(1)
        assert [h.torrent_id for _, h in hits.items] == [torrent]
        assert hits.items[0][0] - injected <= 4 + 1
        await hits.stop()


async def test_five_hundred_items_in_bursts_through_faults(
    fake: FakeBioTorrents,
) -> None:
    fake.faults.randomly(0.2, seed=7)
    rng = random.Random(3)
    async with client_for(fake) as client:
        inbox = Consumer(client.inbox.watch(interval=0.01), client)
        hits = Consumer(client.notifications.watch_torrents(interval=0.01), client)
        await started(client, inbox.stream, hits.stream)
        expected_convs: list[tuple[int, dt.datetime]] = []
        expected_hits: list[int] = []
        mine = [c for c in fake.data.conversations.values() if 2 in c.participants]
        while len(expected_convs) + len(expected_hits) < 500:
            burst = rng.choice([1, 3, 10, 30, 60])  # 60 spans three inbox pages
            for _ in range(burst):
                roll = rng.random()
                if roll < 0.3:
                    conv = fake.data.add_conversation("New", sender=3, recipient=2)
                    mine.append(conv)
                elif roll < 0.5:
                    conv = rng.choice(mine)
                    if conv.id in {c for c, _ in expected_convs[-burst:]}:
                        continue  # one reply per conversation and burst
                    fake.data.add_reply(conv, sender=_other(conv))
                else:
                    expected_hits.append(hit(fake, "Burst"))
                    continue
                expected_convs.append((conv.id, _last_received(conv)))
            await inbox.wait_for(_count(expected_convs), within=60)
            await hits.wait_for(len(expected_hits), within=60)
        await asyncio.sleep(0.1)  # nothing more comes
        got_convs = [(c.conv_id, c.date) for _, c in inbox.items]
        got_hits = [h.torrent_id for _, h in hits.items]
        assert sorted(got_convs) == sorted(set(expected_convs))
        assert Counter(got_hits) == Counter(expected_hits)
        faults = sum(fake.faults.injected.values())
        assert faults >= 0.1 * len(fake.requests)
        await inbox.stop()
        await hits.stop()


def _other(conv: FakeConversation) -> int:
    return next(p for p in conv.participants if p != 2)


def _last_received(conv: FakeConversation) -> dt.datetime:
    return max(m.sent for m in conv.messages if m.sender_id != 2)


def _count(expected: list[tuple[int, dt.datetime]]) -> int:
    return len(set(expected))


async def test_alerts_once_per_appearance(fake: FakeBioTorrents) -> None:
    async with client_for(fake) as client:
        alerts = Consumer(client.notifications.watch_alerts(interval=INTERVAL), client)
        await started(client, alerts.stream)
        fake.data.add_alert(2, "Quotes", "New quote", "quotes.php")
        await alerts.wait_for(1)
        await asyncio.sleep(INTERVAL * 3)
        fake.data.users[2].alerts.pop("Quotes")  # read on the site
        await asyncio.sleep(INTERVAL * 3)
        fake.data.add_alert(2, "Quotes", "New quote", "quotes.php")  # again
        await alerts.wait_for(2)
        await asyncio.sleep(INTERVAL * 3)
        kinds = [a.kind for _, a in alerts.items]
        assert kinds == ["Quotes", "Quotes"]
        assert all(isinstance(a, Alert) for _, a in alerts.items)
        await alerts.stop()


async def test_include_unread_yields_what_is_unread_once(fake: FakeBioTorrents) -> None:
    unread = sorted(
        c.id
        for c in fake.data.conversations.values()
        if 2 in c.unread_for and any(m.sender_id != 2 for m in c.messages)
    )
    assert len(unread) > 5
    async with client_for(fake) as client:
        inbox = Consumer(
            client.inbox.watch(interval=INTERVAL, include_unread=True), client
        )
        await inbox.wait_for(len(unread))
        fresh = fake.data.add_conversation("After the start", sender=3, recipient=2)
        await inbox.wait_for(len(unread) + 1)
        await asyncio.sleep(INTERVAL * 3)
        ids = [c.conv_id for _, c in inbox.items]
        assert sorted(ids[:-1]) == unread
        assert ids[-1] == fresh.id
        await inbox.stop()


async def test_a_retried_notifications_answer_hides_nothing(
    fake: FakeBioTorrents,
) -> None:
    async with client_for(fake) as client:
        hits = Consumer(client.notifications.watch_torrents(interval=INTERVAL), client)
        await started(client, hits.stream)
        # The server marks the hit read, then the answer is cut off: the retry
        # sees it with unread: false. The stream does not care.
        fake.faults.schedule(
            Fault.TRUNCATE, Fault.DROP_AFTER, Fault.HTML_ERROR, action="notifications"
        )
        torrent = hit(fake, "Marked read in flight")
        await hits.wait_for(1)
        assert [h.torrent_id for _, h in hits.items] == [torrent]
        assert hits.items[0][1].unread is False
        await hits.stop()


async def test_include_unread_takes_every_unread_hit_past_page_one(
    fake: FakeBioTorrents,
) -> None:
    # Listing page 1 marks every hit read, so page 2's flags say nothing.
    unread = [hit(fake, f"Unread {n}") for n in range(65)]
    seeded = sorted({n.torrent_id for n in fake.data.notifications if n.unread})
    assert len(seeded) == 65 + 5
    async with client_for(fake) as client:
        hits = Consumer(
            client.notifications.watch_torrents(interval=INTERVAL, include_unread=True),
            client,
        )
        await hits.wait_for(70)
        await asyncio.sleep(INTERVAL * 3)
        got = [h.torrent_id for _, h in hits.items]
        assert sorted(got) == sorted(seeded)
        assert got[-len(unread) :] == unread  # oldest first
        await hits.stop()


async def test_a_crash_in_the_unread_backlog_sends_no_read_mail(
    fake: FakeBioTorrents, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "cursor.db")
    client = client_for(fake)
    stream = client.inbox.watch(interval=INTERVAL, store=store, include_unread=True)
    await stream.__aenter__()
    first = [await anext(stream), await anext(stream)]  # the second in hand
    assert all(c.unread for c in first)
    await crash(client, stream)  # mid-backlog
    fresh = fake.data.add_conversation("After the crash", sender=3, recipient=2)
    items = await after_restart(
        fake, lambda c: c.inbox.watch(interval=INTERVAL, store=store), 1
    )
    # The backlog is offered once; read conversations never come.
    assert [c.conv_id for c in items] == [fresh.id]


async def test_the_alert_backlog_is_offered_once(
    fake: FakeBioTorrents, tmp_path: Path
) -> None:
    fake.data.add_alert(2, "Quotes", "New quote", "quotes.php")
    fake.data.add_alert(2, "Collages", "New collage", "collages.php")
    store = FileStore(tmp_path / "cursor.db")
    client = client_for(fake)
    stream = client.notifications.watch_alerts(
        interval=INTERVAL, store=store, include_unread=True
    )
    await stream.__aenter__()
    first = await anext(stream)  # in hand when the process dies
    await crash(client, stream)
    fake.data.add_alert(2, "Subscriptions", "New post", "userhistory.php")
    items = await after_restart(
        fake, lambda c: c.notifications.watch_alerts(interval=INTERVAL, store=store), 1
    )
    # As with the listings: the backlog was offered once, and what the bot did
    # not take before it stopped is not new.
    assert isinstance(first, Alert)
    assert [a.kind for a in items] == ["Subscriptions"]


class FlakyStore(MemoryStore):
    """A shared store that fails its first save (Redis gone for a moment)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def save(self, name: str, cursor: Any, *, fence: int | None = None) -> None:
        if not self.failed:
            self.failed = True
            raise SharedStoreError("store unreachable")
        await super().save(name, cursor, fence=fence)


@pytest.mark.parametrize("kind", ["inbox", "alerts"])
async def test_a_failed_first_save_loses_no_backlog(
    fake: FakeBioTorrents, kind: str
) -> None:
    fake.data.add_alert(2, "Quotes", "New quote", "quotes.php")
    store = FlakyStore()
    async with client_for(fake) as client:
        if kind == "inbox":
            stream: WatchStream[Any] = client.inbox.watch(
                interval=INTERVAL, store=store, include_unread=True
            )
            expected = sum(
                2 in c.unread_for and any(m.sender_id != 2 for m in c.messages)
                for c in fake.data.conversations.values()
            )
        else:
            stream = client.notifications.watch_alerts(
                interval=INTERVAL, store=store, include_unread=True
            )
            # Every alert but the counters (they repeat the other streams).
            pending = await client.notifications.alerts()
            expected = len(set(pending) - {"Inbox", "Torrents"})
        consumer = Consumer(stream, client)
        await consumer.wait_for(expected)
        await asyncio.sleep(INTERVAL * 4)
        assert store.failed
        assert len(consumer.items) == expected  # each once, none lost
        assert await store.load(stream.name) is not None  # saved at the next try
        await consumer.stop()


async def test_a_listing_that_failed_whole_is_done_again(
    fake: FakeBioTorrents, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("biotorrents_async._hub.RESYNC", 10**9)
    async with client_for(
        fake, retry=RetryPolicy(attempts=2, backoff_initial=0)
    ) as client:
        hits = Consumer(client.notifications.watch_torrents(interval=INTERVAL), client)
        await started(client, hits.stream)
        # The server marks the hit read and the answer is lost, twice: the
        # listing fails, and the counter says 0 from then on.
        fake.faults.schedule(Fault.DROP_AFTER, Fault.DROP_AFTER, action="notifications")
        injected = client._hub._round
        torrent = hit(fake, "Lost twice")
        await hits.wait_for(1)
        assert [h.torrent_id for _, h in hits.items] == [torrent]
        # Again once its own backoff (2 to 4 intervals) has passed, while the
        # index checks go on meanwhile; not at some later listing.
        assert hits.items[0][0] - injected <= 8
        await hits.stop()


async def test_an_alert_gone_and_back_while_down_comes_again(
    fake: FakeBioTorrents,
) -> None:
    store = MemoryStore()
    async with client_for(fake) as client:
        alerts = Consumer(
            client.notifications.watch_alerts(interval=INTERVAL, store=store), client
        )
        await started(client, alerts.stream)
        fake.data.add_alert(2, "Quotes", "New quote", "quotes.php")
        await alerts.wait_for(1)
        await rounds_done(client, client._hub._round + 1)  # handed over by now
        fake.data.users[2].alerts.pop("Quotes")  # read on the site
        await rounds_done(client, client._hub._round + 2)
        await alerts.stop()
    fake.data.add_alert(2, "Quotes", "New quote", "quotes.php")  # while down
    async with client_for(fake) as client:
        again = Consumer(
            client.notifications.watch_alerts(interval=INTERVAL, store=store), client
        )
        await again.wait_for(1)
        assert [a.kind for _, a in again.items] == ["Quotes"]
        await again.stop()


async def test_streams_poll_at_the_shortest_interval(fake: FakeBioTorrents) -> None:
    async with client_for(fake) as client:
        slow = Consumer(client.inbox.watch(interval=30), client)
        await started(client, slow.stream)
        # A second stream wakes the hub at once for its baseline, and from then
        # on the hub polls at the shorter of the two intervals.
        fast = Consumer(client.notifications.watch_alerts(interval=INTERVAL), client)
        async with asyncio.timeout(2):
            await started(client, fast.stream)
        rounds = client._hub._round
        await asyncio.sleep(INTERVAL * 10)
        assert client._hub._round - rounds >= 5
        await fast.stop()
        await slow.stop()


async def test_watching_again_after_every_stream_closed(fake: FakeBioTorrents) -> None:
    async with client_for(fake) as client:
        first = Consumer(client.inbox.watch(interval=INTERVAL), client)
        await started(client, first.stream)
        await first.stop()
        second = Consumer(client.inbox.watch(interval=INTERVAL), client)
        await started(client, second.stream)
        conv = fake.data.add_conversation("Again", sender=3, recipient=2)
        await second.wait_for(1)
        assert second.items[0][1].conv_id == conv.id
        await second.stop()


# --- stop and restart --------------------------------------------------------------


async def test_restart_on_a_file_store_loses_and_repeats_nothing(
    fake: FakeBioTorrents, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "cursor.db")
    async with client_for(fake) as client:
        stream = client.inbox.watch(interval=INTERVAL, store=store)
        async with stream:
            await started(client, stream)
            first = fake.data.add_conversation("Before the stop", sender=3, recipient=2)
            async for conv in stream:
                assert conv.conv_id == first.id
                break  # a clean stop: handed over
    # While the bot is down:
    down = [
        fake.data.add_conversation(f"While down {n}", sender=4, recipient=2).id
        for n in range(30)
    ]
    # Stopped by cancellation while waiting: everything yielded is handed over.
    items = await after_restart(
        fake, lambda c: c.inbox.watch(interval=INTERVAL, store=store), 30
    )
    assert [c.conv_id for c in items] == down  # oldest first
    after = fake.data.add_conversation("After a cancel", sender=3, recipient=2)
    items = await after_restart(
        fake, lambda c: c.inbox.watch(interval=INTERVAL, store=store), 1
    )
    assert [c.conv_id for c in items] == [after.id]


async def test_after_a_crash_only_the_item_in_hand_comes_again(
    fake: FakeBioTorrents, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "cursor.db")
    client = client_for(fake)
    stream = client.notifications.watch_torrents(interval=INTERVAL, store=store)
    await stream.__aenter__()
    await started(client, stream)
    ids = [hit(fake, f"Hit {n}") for n in range(3)]
    got = [await anext(stream), await anext(stream)]  # the second is in hand
    assert [h.torrent_id for h in got] == ids[:2]
    await crash(client, stream)
    items = await after_restart(
        fake,
        lambda c: c.notifications.watch_torrents(interval=INTERVAL, store=store),
        2,
    )
    assert [h.torrent_id for h in items] == ids[1:]


async def test_a_consumer_that_fails_does_not_hand_its_item_over(
    fake: FakeBioTorrents,
) -> None:
    store = MemoryStore()
    async with client_for(fake) as client:
        stream = client.inbox.watch(interval=INTERVAL, store=store)
        conv = fake.data.add_conversation("Before", sender=3, recipient=2)

        async def bot() -> None:
            async with stream:
                async for _ in stream:
                    raise ZeroDivisionError  # the webhook failed

        task = asyncio.create_task(bot())
        await started(client, stream)
        conv = fake.data.add_conversation("Boom", sender=3, recipient=2)
        with pytest.raises(ZeroDivisionError):
            await task
        inbox = Consumer(client.inbox.watch(interval=INTERVAL, store=store), client)
        await inbox.wait_for(1)
        assert inbox.items[0][1].conv_id == conv.id
        await inbox.stop()


_WRITER = """
import asyncio, sys
from biotorrents_async import FileStore

async def main():
    store = FileStore(sys.argv[1])
    n = 0
    while True:
        n += 1
        cursor = {"top": "2026-01-01T00:00:00", "edge": list(range(n % 500))}
        await store.save("inbox", cursor)

asyncio.run(main())
"""


async def test_a_file_store_killed_mid_write_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "cursor.db"
    store = FileStore(path)
    for attempt in range(5):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WRITER, str(path)
        )
        async with asyncio.timeout(30):
            while await store.load("inbox") is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05 * attempt)  # somewhere in a write
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        cursor = await FileStore(path).load("inbox")
        assert cursor is not None
        assert cursor["top"] == "2026-01-01T00:00:00"
        assert cursor["edge"] == list(range(len(cursor["edge"])))


async def test_a_merged_stream_hands_over_only_what_was_yielded(
    fake: FakeBioTorrents,
) -> None:
    store = MemoryStore()
    async with client_for(fake) as client:
        inbox = client.inbox.watch(interval=INTERVAL, store=store)
        hits = client.notifications.watch_torrents(interval=INTERVAL, store=store)
        async with inbox, hits:
            await started(client, inbox, hits)
            conv = fake.data.add_conversation("Mail", sender=3, recipient=2)
            torrent = hit(fake, "Hit")
            await rounds_done(client, client._hub._round + 3)
            merged = merge_streams(inbox, hits)
            _, first = await anext(merged)  # one seen; the other taken, unseen
            await merged.aclose()
    seen = first.conv_id if hasattr(first, "conv_id") else first.torrent_id
    async with client_for(fake) as again:
        inbox = Consumer(again.inbox.watch(interval=INTERVAL, store=store), again)
        hits = Consumer(
            again.notifications.watch_torrents(interval=INTERVAL, store=store), again
        )
        await asyncio.sleep(INTERVAL * 6)
        got = [c.conv_id for _, c in inbox.items] + [
            h.torrent_id for _, h in hits.items
        ]
        assert got == [i for i in (conv.id, torrent) if i != seen]
        await inbox.stop()
        await hits.stop()


async def test_an_unreachable_redis_store_is_a_shared_store_error() -> None:
    from support import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(SharedStoreError, match="cursor store"):
        await store.load("inbox")
    with pytest.raises(SharedStoreError):
        await store.save("inbox", {"top": "x"})
    await store.aclose()


async def test_replicas_share_a_redis_store(
    fake: FakeBioTorrents, redis_url: str
) -> None:
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    first_store = RedisStore(redis_url, prefix=prefix)
    async with client_for(fake) as client:
        stream = client.inbox.watch(interval=INTERVAL, store=first_store)
        async with stream:
            await started(client, stream)
            seen = fake.data.add_conversation("Seen by one", sender=3, recipient=2)
            async for conv in stream:
                assert conv.conv_id == seen.id
                break
    await first_store.aclose()
    new = fake.data.add_conversation("For the other", sender=3, recipient=2)
    second_store = RedisStore(redis_url, prefix=prefix)
    async with client_for(fake) as other:
        inbox = Consumer(
            other.inbox.watch(interval=INTERVAL, store=second_store), other
        )
        await inbox.wait_for(1)
        await asyncio.sleep(INTERVAL * 3)
        assert [c.conv_id for _, c in inbox.items] == [new.id]
        await inbox.stop()
    await second_store.aclose()


# --- the budget --------------------------------------------------------------------


async def test_a_quiet_account_costs_one_request_per_interval(
    fake: FakeBioTorrents,
) -> None:
    interval = 0.1
    async with client_for(fake) as client:
        consumers = [
            Consumer(client.inbox.watch(interval=interval), client),
            Consumer(client.notifications.watch_torrents(interval=interval), client),
            Consumer(client.notifications.watch_alerts(interval=interval), client),
        ]
        await started(client, *(c.stream for c in consumers))
        before = len(fake.requests)
        started_at = asyncio.get_running_loop().time()
        await asyncio.sleep(2.0)
        elapsed = asyncio.get_running_loop().time() - started_at
        quiet = fake.requests[before:]
        assert len(quiet) <= elapsed / interval + 1
        assert {r.params.get("page", "1") for r in quiet} == {"1"}  # never page 2
        for consumer in consumers:
            await consumer.stop()
            assert consumer.items == []


async def test_direct_calls_wait_at_most_one_slot_behind_watchers() -> None:
    rule = RateLimit(1, 0.03, margin=0)
    async with (
        FakeBioTorrents(rate_limit=rule) as fake,
        client_for(fake, rate_limit=rule) as client,
    ):
        # Polling faster than the rule allows: watchers would take it all.
        consumers = [
            Consumer(client.inbox.watch(interval=0.001), client),
            Consumer(client.notifications.watch_alerts(interval=0.001), client),
        ]
        await started(client, *(c.stream for c in consumers))
        for user_id in (1, 3, 4):
            sent_before = len(fake.requests)
            await client.users.get(user_id)
            after = [r.action for r in fake.requests[sent_before:]]
            # One watcher request may hold the place; then the direct call.
            assert after.index("user") <= 1, after
        outcomes = Counter(r.outcome for r in fake.requests)
        assert outcomes["rate-limited"] == 0
        for consumer in consumers:
            await consumer.stop()


async def test_cancelling_a_stream_leaves_the_client_usable(
    fake: FakeBioTorrents,
) -> None:
    async with client_for(fake) as client:
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        await started(client, inbox.stream)
        await inbox.stop()
        assert client._hub._task is None  # no stream left: no polling
        sent = len(fake.requests)
        await asyncio.sleep(INTERVAL * 3)
        assert len(fake.requests) == sent
        me = await client.index()
        assert me.id == 2


async def test_two_streams_and_direct_calls_keep_the_rule() -> None:
    rule = RateLimit(2, 0.06)
    async with FakeBioTorrents(rate_limit=rule, latency=(0.001, 0.004)) as fake:
        fake.data.now = Ticks()
        async with client_for(fake, rate_limit=rule) as client:
            consumers = [
                Consumer(client.inbox.watch(interval=0.01), client),
                Consumer(client.notifications.watch_torrents(interval=0.01), client),
            ]
            for n in range(30):
                await client.users.search("a", page=1 + n % 4)
                if n % 3 == 0:
                    hit(fake, f"Hit {n}")
                    fake.data.add_conversation(f"Conv {n}", sender=3, recipient=2)
            for consumer in consumers:
                await consumer.stop()
    assert sum(r.outcome == "rate-limited" for r in fake.requests) == 0


# --- errors ------------------------------------------------------------------------


async def test_an_auth_failure_ends_the_stream(fake: FakeBioTorrents) -> None:
    token = fake.add_token(2)
    async with BioTorrentsClient(
        token, base_url=fake.url, rate_limit=RULE, retry=FAST
    ) as client:
        stream = client.inbox.watch(interval=INTERVAL)
        async with stream:
            await started(client, stream)
            fake.revoke_token(token)
            with pytest.raises(AuthenticationError, match="token revoked"):
                await asyncio.wait_for(_drain(stream), 5)
            # Asked again (a bot's retry loop), it says so again: no hang.
            with pytest.raises(AuthenticationError, match="token revoked"):
                await asyncio.wait_for(anext(stream), 5)


async def _drain(stream: WatchStream[Any]) -> None:
    async for _ in stream:
        pass


async def test_watching_again_after_the_credentials_are_fixed(
    fake: FakeBioTorrents,
) -> None:
    token = fake.add_token(2)
    async with BioTorrentsClient(
        token, base_url=fake.url, rate_limit=RULE, retry=FAST
    ) as client:
        stream = client.inbox.watch(interval=INTERVAL)
        async with stream:
            await started(client, stream)
            fake.revoke_token(token)
            with pytest.raises(AuthenticationError):
                await asyncio.wait_for(_drain(stream), 5)
        fake._tokens[token] = 2  # re-issued on the site
        fake._revoked.discard(token)
        client.rearm()
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        await started(client, inbox.stream)
        conv = fake.data.add_conversation("After the fix", sender=3, recipient=2)
        await inbox.wait_for(1)
        assert inbox.items[0][1].conv_id == conv.id
        await inbox.stop()


def test_token_only_torrent_watch_fails_at_once() -> None:
    client = BioTorrentsClient("token-only", base_url="https://bio.example")
    with pytest.raises(CookiesRequiredError):
        client.notifications.watch_torrents()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"interval": -1},
        {"interval": "5"},
        {"store": object()},
        {"include_unread": "yes"},
        {"name": ""},
    ],
)
def test_bad_watch_arguments_raise_at_the_call(kwargs: dict[str, Any]) -> None:
    client = BioTorrentsClient("t0ken-value", base_url="https://bio.example")
    with pytest.raises(ValueError):  # noqa: PT011
        client.inbox.watch(**kwargs)


def test_the_default_interval_leaves_half_the_allowance() -> None:
    client = BioTorrentsClient("t0ken-value", base_url="https://bio.example")
    stream = client.inbox.watch()
    rule = RateLimit.default()
    # One request per interval is half of `requests` per window.
    assert 1 / stream.interval <= 0.5 * rule.requests / rule.window + 1e-9
    assert isinstance(stream, WatchStream)


# --- what a mutation review of the streams found -----------------------------------


async def test_async_for_alone_starts_the_stream(fake: FakeBioTorrents) -> None:
    async with client_for(fake) as client:
        stream = client.inbox.watch(interval=INTERVAL)

        async def first() -> Any:
            async for conv in stream:  # no `async with`: iterating starts it
                return conv
            return None

        task = asyncio.create_task(first())
        await started(client, stream)
        conv = fake.data.add_conversation("Without async with", sender=3, recipient=2)
        got = await asyncio.wait_for(task, 10)
        assert got.conv_id == conv.id
        await stream.aclose()


async def test_closing_the_client_ends_its_streams(fake: FakeBioTorrents) -> None:
    client = client_for(fake)
    inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
    alerts = Consumer(client.notifications.watch_alerts(interval=INTERVAL), client)
    await started(client, inbox.stream, alerts.stream)
    await client.aclose()
    # The consumers' `async for` loops end, without an error and without hanging.
    await asyncio.wait_for(asyncio.gather(inbox.task, alerts.task), 5)


async def test_handed_over_alerts_do_not_come_again_after_a_restart(
    fake: FakeBioTorrents, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "cursor.db")
    async with client_for(fake) as client:
        stream = client.notifications.watch_alerts(interval=INTERVAL, store=store)
        async with stream:
            await started(client, stream)
            fake.data.add_alert(2, "Quotes", "New quote", "quotes.php")
            async for alert in stream:
                assert alert.kind == "Quotes"
                break  # a clean stop: handed over
    # While the bot is down (the first alert is still pending on the site):
    fake.data.add_alert(2, "Collages", "New collage", "collages.php")
    items = await after_restart(
        fake, lambda c: c.notifications.watch_alerts(interval=INTERVAL, store=store), 1
    )
    assert [a.kind for a in items] == ["Collages"]


@pytest.mark.parametrize("resumed", [False, True])
async def test_same_second_items_keep_the_one_in_hand(
    fake: FakeBioTorrents, tmp_path: Path, resumed: bool
) -> None:
    """The cursor names what was handed over, not what was only seen."""
    store = FileStore(tmp_path / "cursor.db")
    second = dt.datetime(2026, 6, 1, 12, 0, 0)
    if resumed:
        async with client_for(fake) as client:
            stream = client.inbox.watch(interval=INTERVAL, store=store)
            async with stream:
                await started(client, stream)
                fake.data.add_conversation("a", sender=3, recipient=2, sent=second)
                async for _ in stream:
                    break  # handed over: the cursor's top is that second
    else:
        # The newest conversation at the very first start: the baseline's top.
        fake.data.add_conversation("a", sender=3, recipient=2, sent=second)
    client = client_for(fake)
    stream = client.inbox.watch(interval=INTERVAL, store=store)
    await stream.__aenter__()
    await started(client, stream)
    # Two more in that very second.
    later = [
        fake.data.add_conversation(s, sender=3, recipient=2, sent=second).id
        for s in ("b", "c")
    ]
    got = [await anext(stream), await anext(stream)]  # one handed over, one in hand
    assert sorted(c.conv_id for c in got) == later
    await crash(client, stream)
    items = await after_restart(
        fake, lambda c: c.inbox.watch(interval=INTERVAL, store=store), 1
    )
    assert [c.conv_id for c in items] == [got[1].conv_id]


async def test_include_unread_reads_past_a_sticky_read_conversation(
    fake: FakeBioTorrents,
) -> None:
    # Sticky conversations come first even with unread_first, read or not.
    read = next(c for c in fake.data.conversations.values() if 2 not in c.unread_for)
    read.sticky = True
    older = dt.datetime(2020, 1, 1)
    for n in range(60):  # unread, and older than everything: past page 1
        fake.data.add_conversation(
            f"Old unread {n}", sender=3, recipient=2, sent=older + dt.timedelta(n)
        )
    unread = {
        c.id
        for c in fake.data.conversations.values()
        if 2 in c.unread_for and any(m.sender_id != 2 for m in c.messages)
    }
    assert len(unread) > 60
    async with client_for(fake) as client:
        inbox = Consumer(
            client.inbox.watch(interval=INTERVAL, include_unread=True), client
        )
        await inbox.wait_for(len(unread))
        await asyncio.sleep(INTERVAL * 3)
        ids = [c.conv_id for _, c in inbox.items]
        assert len(ids) == len(set(ids))
        assert set(ids) == unread
        await inbox.stop()


async def test_an_item_that_moves_down_a_page_comes_once(
    fake: FakeBioTorrents,
) -> None:
    async with client_for(fake) as client:
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        await started(client, inbox.stream)
        hub = client._hub
        listing = hub._conversations
        burst: list[int] = []
        injected: list[int] = []

        async def conversations(page: int, unread_first: bool) -> Any:
            if page != 1 or burst:
                return await listing(page, unread_first)
            # 40 arrive just before a listing reads page 1, so it must read
            # page 2 as well; one more arrives in between, so page 2 starts
            # with page 1's last conversation.
            burst.extend(
                fake.data.add_conversation(f"Burst {n}", sender=4, recipient=2).id
                for n in range(40)
            )
            result = await listing(page, unread_first)
            conv = fake.data.add_conversation("Mid-way", sender=3, recipient=2)
            injected.append(conv.id)
            return result

        hub._conversations = conversations  # type: ignore[method-assign]
        await inbox.wait_for(41)
        await asyncio.sleep(INTERVAL * 4)
        ids = [c.conv_id for _, c in inbox.items]
        assert len(ids) == len(set(ids)) == 41
        assert set(ids) == {*burst, *injected}
        await inbox.stop()


@pytest.mark.parametrize("with_inbox", [False, True])
async def test_every_listing_takes_its_turn_at_the_periodic_listing(
    fake: FakeBioTorrents, monkeypatch: pytest.MonkeyPatch, with_inbox: bool
) -> None:
    # A hit read on the site before the watcher looks: only the periodic
    # listing can see it, and with two listings they take turns.
    monkeypatch.setattr("biotorrents_async._hub.RESYNC", 4)
    async with client_for(fake) as client:
        hits = Consumer(client.notifications.watch_torrents(interval=INTERVAL), client)
        consumers = [hits]
        if with_inbox:
            consumers.append(Consumer(client.inbox.watch(interval=INTERVAL), client))
        streams = [c.stream for c in consumers]
        await started(client, *streams)
        injected = client._hub._round
        torrent = hit(fake, "Read on the site at once")
        fake.data.notifications[-1].unread = False
        await hits.wait_for(1)
        assert [h.torrent_id for _, h in hits.items] == [torrent]
        assert hits.items[0][0] - injected <= 4 * len(streams) + 1
        for consumer in consumers:
            await consumer.stop()


async def test_failed_checks_back_off_and_a_success_resets_it(
    fake: FakeBioTorrents, caplog: pytest.LogCaptureFixture
) -> None:
    def logged() -> list[float]:
        return [
            float(r.getMessage().rsplit("next try in ", 1)[1].rstrip("s"))
            for r in caplog.records
            if "the index check failed" in r.getMessage()
        ]

    async with client_for(fake, retry=RetryPolicy.none()) as client:
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        await started(client, inbox.stream)
        with caplog.at_level("WARNING", logger="biotorrents_async"):
            # Each check backs off on its own: these fail the index check only.
            fake.faults.schedule(
                Fault.HTTP_502, Fault.HTTP_502, Fault.HTTP_502, action="index"
            )
            async with asyncio.timeout(10):
                while len(logged()) < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            await rounds_done(client, client._hub._round + 2)  # successes
            while "index" in client._hub._failures:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            fake.faults.schedule(Fault.HTTP_502, action="index")
            async with asyncio.timeout(10):
                while len(logged()) < 4:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        pauses = logged()
        # Doubling (with jitter below 2x): the third wait outlasts the first...
        assert pauses[2] > pauses[0] * 1.9
        assert pauses[2] >= 8 * INTERVAL * 0.99
        # ...and after a success, the next failure starts over (2x-4x, not 16x).
        assert pauses[3] < 8 * INTERVAL
        await inbox.stop()


async def test_a_same_second_reply_listed_after_a_seen_one_comes(
    fake: FakeBioTorrents,
) -> None:
    second = dt.datetime(2026, 6, 1, 12, 0, 0)
    older = fake.data.add_conversation(
        "Older", sender=3, recipient=2, sent=second - dt.timedelta(days=1)
    )
    async with client_for(fake) as client:
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        await started(client, inbox.stream)
        seen = fake.data.add_conversation("Seen", sender=3, recipient=2, sent=second)
        await inbox.wait_for(1)
        # A reply in that same second to an older conversation: the listing
        # shows it after the one already seen (same date, lower id).
        fake.data.add_reply(older, sender=3, sent=second)
        await inbox.wait_for(2)
        await asyncio.sleep(INTERVAL * 3)
        assert [c.conv_id for _, c in inbox.items] == [seen.id, older.id]
        await inbox.stop()


# --- what real servers do: grouped pages, clock steps, deletions, short counts ----


def filtered_hit(fake: FakeBioTorrents, name: str, filter_id: int) -> int:
    torrent = fake.data.add_torrent(fake.data.add_group(name), uploader=3)
    fake.data.add_notification(2, torrent, filter_id=filter_id)
    return torrent.id


async def test_hits_of_a_second_filter_come_though_the_page_is_grouped(
    fake: FakeBioTorrents,
) -> None:
    async with client_for(fake) as client:
        hits = Consumer(client.notifications.watch_torrents(interval=INTERVAL), client)
        await started(client, hits.stream)
        # Served as [c, a, <filter 1's older rows>, b, <filter 2's>]: the page is
        # grouped by filter, so b sits below rows that were already seen.
        a = filtered_hit(fake, "A", 1)
        b = filtered_hit(fake, "B", 2)
        c = filtered_hit(fake, "C", 1)
        page = await client.notifications.torrents()
        assert [h.torrent_id for h in page.items][:2] == [c, a]  # not newest first
        await hits.wait_for(3)
        await asyncio.sleep(INTERVAL * 4)
        assert [h.torrent_id for _, h in hits.items] == [a, b, c]
        await hits.stop()


async def test_include_unread_hands_over_exactly_the_unread_hits(
    fake: FakeBioTorrents,
) -> None:
    unread = sorted(n.torrent_id for n in fake.data.notifications if n.unread)
    # The seed puts one of the five unread hits in the second filter's group.
    filters = {n.filter_id for n in fake.data.notifications if n.unread}
    assert len(unread) == 5
    assert filters == {1, 2}
    async with client_for(fake) as client:
        hits = Consumer(
            client.notifications.watch_torrents(interval=INTERVAL, include_unread=True),
            client,
        )
        await hits.wait_for(5)
        await asyncio.sleep(INTERVAL * 4)
        assert [h.torrent_id for _, h in hits.items] == unread
        await hits.stop()


async def test_a_torrent_listed_twice_comes_once(fake: FakeBioTorrents) -> None:
    async with client_for(fake) as client:
        listing = client._hub._torrents

        async def torrents(number: int) -> Any:
            page = await listing(number)
            # A listing that repeats a row (the real table cannot, but a proxy
            # or a later schema might): the torrent is yielded once.
            return type(page)([*page.items, *page.items[:2]], page.current_page, 1)

        client._hub._torrents = torrents  # type: ignore[method-assign]
        hits = Consumer(client.notifications.watch_torrents(interval=INTERVAL), client)
        await started(client, hits.stream)
        made = hit(fake, "Once only")
        await hits.wait_for(1)
        await asyncio.sleep(INTERVAL * 6)
        assert [h.torrent_id for _, h in hits.items] == [made]
        await hits.stop()


async def test_a_future_dated_item_does_not_blind_the_stream(
    fake: FakeBioTorrents, caplog: pytest.LogCaptureFixture
) -> None:
    mark_all_read(fake)
    async with client_for(fake) as client:
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        await started(client, inbox.stream)
        # The server's clock stepped an hour forward, then back.
        ahead = fake.data.now() + dt.timedelta(hours=1)
        early = fake.data.add_conversation("From the future", sender=3, recipient=2)
        early.messages[-1].sent = ahead
        await inbox.wait_for(1)
        new = fake.data.add_conversation("After the correction", sender=4, recipient=2)
        old = fake.data.conversations[5]
        fake.data.add_reply(old, sender=_other(old))
        await inbox.wait_for(3)
        await asyncio.sleep(INTERVAL * 4)
        got = [c.conv_id for _, c in inbox.items]
        assert got[0] == early.id
        assert sorted(got[1:]) == sorted([new.id, old.id])
        assert len(got) == 3
        # Something the counters see but no listing shows (older than anything
        # the stream remembers): a WARNING says so.
        with caplog.at_level("WARNING", logger="biotorrents_async.watch"):
            fake.data.add_conversation(
                "Dated 2001", sender=3, recipient=2, sent=dt.datetime(2001, 1, 1)
            )
            async with asyncio.timeout(10):
                while not any("counters say" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        await inbox.stop()


@pytest.mark.parametrize(
    ("past_page_1", "doomed_at"),
    [
        (1, 10),  # only page 1 had something new; its oldest starts on page 2
        (5, -3),  # new items past page 1 too
    ],
)
async def test_a_deletion_during_a_catch_up_hides_nothing(
    fake: FakeBioTorrents, past_page_1: int, doomed_at: int
) -> None:
    mark_all_read(fake)
    async with client_for(fake) as client:
        hub = client._hub
        listing = hub._conversations
        doomed: list[int] = []

        async def conversations(number: int, unread_first: bool) -> Any:
            page = await listing(number, unread_first)
            if number == 1 and doomed:
                # Deleted on the site right after we read page 1: the next
                # conversation moves up from page 2 onto page 1, already read.
                del fake.data.conversations[doomed.pop()]
            return page

        hub._conversations = conversations  # type: ignore[method-assign]
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        await started(client, inbox.stream)
        # Page 1 holds 25 below its sticky conversations.
        pinned = sum(c.sticky for c in fake.data.conversations.values())
        size = 25 - pinned + past_page_1
        burst = [
            fake.data.add_conversation(f"Burst {n}", sender=3, recipient=2).id
            for n in range(size)
        ]
        gone = burst[doomed_at]
        doomed.append(gone)
        await inbox.wait_for(size - 1)
        await asyncio.sleep(INTERVAL * 4)
        got = [c.conv_id for _, c in inbox.items]
        # The deleted one may have come (it was there when page 1 was read).
        assert set(got) - {gone} == set(burst) - {gone}
        assert len(got) == len(set(got))
        await inbox.stop()


async def test_a_pages_count_that_under_reports_ends_no_burst_early(
    fake: FakeBioTorrents,
) -> None:
    mark_all_read(fake)
    async with client_for(fake) as client:
        listing = client._hub._conversations

        async def conversations(number: int, unread_first: bool) -> Any:
            page = await listing(number, unread_first)
            # "pages" says this is the last page while page 1 is full.
            return type(page)(page.items, page.current_page, page.current_page)

        client._hub._conversations = conversations  # type: ignore[method-assign]
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        await started(client, inbox.stream)
        burst = [
            fake.data.add_conversation(f"Burst {n}", sender=3, recipient=2).id
            for n in range(30)
        ]
        await inbox.wait_for(30)
        await asyncio.sleep(INTERVAL * 4)
        assert sorted(c.conv_id for _, c in inbox.items) == sorted(burst)
        assert len(inbox.items) == 30
        await inbox.stop()


async def test_leaving_a_merge_and_going_on_loses_nothing(
    fake: FakeBioTorrents,
) -> None:
    mark_all_read(fake)
    async with (
        client_for(fake) as client,
        client.inbox.watch(interval=INTERVAL) as inbox,
        client.notifications.watch_torrents(interval=INTERVAL) as hits,
    ):
        await started(client, inbox, hits)
        made = {
            ("inbox", fake.data.add_conversation(f"C{n}", sender=3, recipient=2).id)
            for n in range(5)
        }
        made |= {("torrents", hit(fake, f"T{n}")) for n in range(4)}
        async with asyncio.timeout(10):
            # Both streams have items waiting: each merge takes one of each.
            while inbox._queue.qsize() < 5 or hits._queue.qsize() < 4:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        got: list[tuple[str, int]] = []
        async with asyncio.timeout(20):
            while len(got) < len(made):
                # In batches of two, leaving the merge each time.
                async for stream, item in merge_streams(inbox, hits):
                    ident = item.conv_id if stream.kind == "inbox" else item.torrent_id
                    got.append((stream.kind, ident))
                    if len(got) % 2 == 0 or len(got) == len(made):
                        break
        await asyncio.sleep(INTERVAL * 4)
        assert len(got) == len(set(got)) == len(made)
        assert set(got) == made


async def test_a_refused_check_ends_its_stream_and_the_others_go_on(
    fake: FakeBioTorrents,
) -> None:
    mark_all_read(fake)
    async with client_for(fake) as client:
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        hits = Consumer(client.notifications.watch_torrents(interval=INTERVAL), client)
        await started(client, inbox.stream, hits.stream)
        # The account loses torrent notifications: "bad parameters" for good.
        fake.data.users[2].class_name = "User"
        fake.data.add_notification(
            2, fake.data.add_torrent(fake.data.add_group("X"), uploader=3)
        )
        async with asyncio.timeout(10):
            with pytest.raises(ApiError):
                await hits.task
        made = fake.data.add_conversation("Still here", sender=3, recipient=2)
        await inbox.wait_for(1)
        assert [c.conv_id for _, c in inbox.items] == [made.id]
        await inbox.stop()


async def test_a_broken_inbox_does_not_starve_the_alerts(
    fake: FakeBioTorrents, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("biotorrents_async._hub.RESYNC", 10**9)
    async with client_for(fake, retry=RetryPolicy.none()) as client:
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        alerts = Consumer(client.notifications.watch_alerts(interval=INTERVAL), client)
        await started(client, inbox.stream, alerts.stream)
        # A PHP fatal error on every inbox request from now on.
        fake.faults.schedule(*[Fault.HTML_ERROR] * 400, action="inbox")
        fake.data.add_conversation("Never listed", sender=3, recipient=2)
        await asyncio.sleep(INTERVAL * 60)  # the inbox check backs off for seconds
        fake.data.add_alert(2, "StaffPM", "A staff message", "staffpm.php")
        # Within a few intervals, as if the inbox were fine.
        async with asyncio.timeout(INTERVAL * 20):
            while not any(a.kind == "StaffPM" for _, a in alerts.items):  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        fake.faults.clear()
        await inbox.stop()
        await alerts.stop()


async def test_a_consumer_slower_than_an_interval_gets_no_alert_again(
    fake: FakeBioTorrents,
) -> None:
    async with client_for(fake) as client:
        stream = client.notifications.watch_alerts(interval=INTERVAL)
        got: list[str] = []
        async with stream:
            await started(client, stream)
            fake.data.add_alert(2, "StaffPM", "One", "staffpm.php")
            fake.data.add_alert(2, "Collages", "Two", "collages.php")
            fake.data.add_alert(2, "Global", "Three", "index.php")
            async with asyncio.timeout(10):
                async for alert in stream:
                    got.append(alert.kind)
                    # Busy for several checks while the others wait in line.
                    await asyncio.sleep(INTERVAL * 5)
                    if len(got) == 3:
                        break
            await asyncio.sleep(INTERVAL * 5)
            assert stream._queue.empty()
        assert sorted(got) == ["Collages", "Global", "StaffPM"]


async def test_each_item_has_a_stable_key_and_says_what_it_is(
    fake: FakeBioTorrents,
) -> None:
    mark_all_read(fake)
    async with client_for(fake) as client:
        inbox = client.inbox.watch(interval=INTERVAL)
        async with inbox:
            await inbox.ready()
            new = fake.data.add_conversation("Hello", sender=3, recipient=2)
            first = await anext(inbox)
            old = fake.data.conversations[5]  # there before the stream started
            fake.data.add_reply(old, sender=_other(old))
            second = await anext(inbox)
            fake.data.add_reply(new, sender=3)
            third = await anext(inbox)
            assert [(c.conv_id, inbox.event(c)) for c in (first, second, third)] == [
                (new.id, "new"),
                (old.id, "reply"),
                (new.id, "reply"),
            ]
            keys = [inbox.key(c) for c in (first, second, third)]
            assert keys[0] == f"inbox:{new.id}:{first.date.isoformat()}"  # type: ignore[union-attr]
            assert len(set(keys)) == 3  # a reply is another event
    # The same event has the same key in any process: it is made of the item.
    assert item_key(first) == keys[0]
    with pytest.raises(ValueError, match="no key"):
        item_key(object())


async def test_the_alert_stream_leaves_the_counters_out_unless_asked(
    fake: FakeBioTorrents,
) -> None:
    mark_all_read(fake)
    async with client_for(fake) as client:
        default = client.notifications.watch_alerts(interval=INTERVAL)
        counters = client.notifications.watch_alerts(
            interval=INTERVAL, kinds=["Inbox"], store=MemoryStore()
        )
        async with default, counters:
            await default.ready()
            await counters.ready()
            fake.data.add_conversation("Hi", sender=3, recipient=2)
            fake.data.add_alert(2, "StaffPM", "Staff", "staffpm.php")
            got = await anext(default)
            inbox = await anext(counters)
            await asyncio.sleep(INTERVAL * 6)
            assert got.kind == "StaffPM"
            assert default._queue.empty()  # no "You have a new message"
            assert inbox.kind == "Inbox"
            assert counters._queue.empty()  # and nothing but Inbox


async def test_a_news_alert_flagged_by_index_comes_in_the_same_round(
    fake: FakeBioTorrents, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("biotorrents_async._hub.RESYNC", 10**9)
    mark_all_read(fake)  # a quiet account: index and alerts take turns
    fake.data.users[2].last_read_news = max(n for n, _ in fake.data.news)
    async with client_for(fake) as client:
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        alerts = Consumer(client.notifications.watch_alerts(interval=INTERVAL), client)
        await started(client, inbox.stream, alerts.stream)
        for n in range(4):
            # Land it right after an alerts check: only index can see it early.
            async with asyncio.timeout(5):
                while client._hub.checks[-1] != "alerts":  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
            injected = client._hub._round
            fake.data.add_news(f"Maintenance {n}")
            await alerts.wait_for(n + 1)
            assert alerts.items[-1][1].kind == "News"
            assert alerts.items[-1][0] - injected <= 1  # the next round, index
            fake.data.users[2].last_read_news = fake.data.news[-1][0]  # read it
            async with asyncio.timeout(5):
                while client._hub._flags[0]:  # noqa: ASYNC110 - index saw it read
                    await asyncio.sleep(0.001)
        await inbox.stop()
        await alerts.stop()


# --- holes a mutation review found ------------------------------------------------


async def test_the_alert_in_hand_at_a_crash_comes_again(
    fake: FakeBioTorrents, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "cursor.db")
    client = client_for(fake)
    stream = client.notifications.watch_alerts(interval=INTERVAL, store=store)
    await stream.__aenter__()
    await stream.ready()
    fake.data.add_alert(2, "StaffPM", "Read me", "staffpm.php")
    held = await anext(stream)  # in hand when the process dies
    await crash(client, stream)
    again = await after_restart(
        fake, lambda c: c.notifications.watch_alerts(interval=INTERVAL, store=store), 1
    )
    assert [a.message for a in again] == [held.message]


async def test_starting_a_merge_hands_over_what_was_held(
    fake: FakeBioTorrents, tmp_path: Path
) -> None:
    mark_all_read(fake)
    store = FileStore(tmp_path / "cursor.db")
    async with client_for(fake) as client:  # noqa: SIM117 - the stream needs it
        async with client.inbox.watch(interval=INTERVAL, store=store) as inbox:
            await inbox.ready()
            first = fake.data.add_conversation("First", sender=3, recipient=2)
            got = await anext(inbox)  # held, outside any merge
            second = fake.data.add_conversation("Second", sender=3, recipient=2)
            async for _, item in merge_streams(inbox):
                assert item.conv_id == second.id
                break
            assert got.conv_id == first.id
    third = fake.data.add_conversation("Third", sender=3, recipient=2)
    items = await after_restart(
        fake, lambda c: c.inbox.watch(interval=INTERVAL, store=store), 1
    )
    assert [c.conv_id for c in items] == [third.id]  # neither first nor second


async def test_a_stream_that_ended_during_a_merge_ends_after_it(
    fake: FakeBioTorrents,
) -> None:
    async with client_for(fake) as client:
        inbox = client.inbox.watch(interval=INTERVAL)
        alerts = client.notifications.watch_alerts(interval=INTERVAL)
        async with inbox, alerts:
            await inbox.ready()
            await alerts.ready()
            fake.data.add_alert(2, "StaffPM", "One", "staffpm.php")
            inbox._end()  # the inbox stream is over (its client closing, say)
            async for stream, _ in merge_streams(inbox, alerts):
                assert stream is alerts
                break
            async with asyncio.timeout(5):
                with pytest.raises(StopAsyncIteration):
                    await anext(inbox)


async def test_items_found_before_a_refusal_still_come(fake: FakeBioTorrents) -> None:
    mark_all_read(fake)
    async with client_for(fake) as client:
        stream = client.notifications.watch_torrents(interval=INTERVAL)
        async with stream:
            await stream.ready()
            made = hit(fake, "Found before")
            async with asyncio.timeout(5):
                while stream._queue.empty():  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            fake.data.users[2].class_name = "User"  # refused for good from now
            hit(fake, "Never listed")
            assert (await anext(stream)).torrent_id == made
            async with asyncio.timeout(5):
                with pytest.raises(ApiError):
                    await anext(stream)
        sent = len(fake.requests)
        await asyncio.sleep(INTERVAL * 6)
        # Its check is no longer sent for it.
        assert not [r for r in fake.requests[sent:] if r.action == "notifications"]


async def test_cursors_of_the_last_release_are_read(fake: FakeBioTorrents) -> None:
    mark_all_read(fake)
    at = dt.datetime(2026, 5, 1, 12, 0, 0)
    seen = fake.data.add_conversation("Seen", sender=3, recipient=2, sent=at)
    same_second = fake.data.add_conversation(
        "Same second", sender=4, recipient=2, sent=at
    )
    older = fake.data.conversations[5]
    store = MemoryStore()
    # What release 0.x wrote: a watermark and the ids at it.
    await store.save("inbox", {"top": at.isoformat(), "edge": [seen.id]})
    newest = max(n.torrent_id for n in fake.data.notifications)
    await store.save("torrents", {"top": at.isoformat(), "edge": [newest - 1, newest]})
    async with client_for(fake) as client:
        inbox = client.inbox.watch(interval=INTERVAL, store=store)
        hits = client.notifications.watch_torrents(interval=INTERVAL, store=store)
        async with inbox, hits:
            got = await asyncio.wait_for(anext(inbox), 5)
            assert got.conv_id == same_second.id  # at the watermark, not in edge
            assert inbox.event(got) == "new"  # above every id the cursor names
            later = at + dt.timedelta(hours=1)
            fake.data.add_reply(older, sender=_other(older), sent=later)
            reply = await asyncio.wait_for(anext(inbox), 5)
            assert reply.conv_id == older.id
            assert inbox.event(reply) == "reply"
            new = hit(fake, "After the upgrade")
            assert (await asyncio.wait_for(anext(hits), 5)).torrent_id == new
            await asyncio.sleep(INTERVAL * 4)
            assert hits._queue.empty()  # nothing at or below the old edge


def test_an_alert_key_tells_links_apart() -> None:
    one = Alert(0, "New quote", "quotes.php?id=1", "confirmation", kind="Quotes")
    two = Alert(0, "New quote", "quotes.php?id=2", "confirmation", kind="Quotes")
    assert item_key(one) != item_key(two)
    assert item_key(one) == item_key(
        Alert(0, "New quote", "quotes.php?id=1", "x", kind="Quotes")
    )


async def test_the_re_read_after_a_catch_up_reads_down_to_where_it_stopped(
    fake: FakeBioTorrents, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deleted items shift the listing up while we page; new mail then pushes
    # the ones we skipped back onto page 2, below an item page 1 ends with that
    # was seen. Only reading down to where the catch-up stopped finds them.
    monkeypatch.setattr("biotorrents_async._hub.RESYNC", 10**9)
    mark_all_read(fake)
    async with client_for(fake) as client:
        hub = client._hub
        listing = hub._conversations
        plan: dict[str, Any] = {"delete": [], "add": 0}

        async def conversations(number: int, unread_first: bool) -> Any:
            page = await listing(number, unread_first)
            if number == 1 and plan["delete"]:
                for conv_id in plan["delete"]:  # read on the site, then deleted
                    del fake.data.conversations[conv_id]
                plan["delete"] = []
            elif number == 2 and plan["add"]:
                for n in range(plan["add"]):
                    plan["new"].append(
                        fake.data.add_conversation(
                            f"Late {n}", sender=5, recipient=2
                        ).id
                    )
                plan["add"] = 0
            return page

        hub._conversations = conversations  # type: ignore[method-assign]
        inbox = Consumer(client.inbox.watch(interval=INTERVAL), client)
        await started(client, inbox.stream)
        burst = [
            fake.data.add_conversation(f"Burst {n}", sender=3, recipient=2).id
            for n in range(40)
        ]
        gone = burst[-9:-4]  # five of page 1
        plan.update(delete=list(gone), add=5, new=[])
        expected = set(burst) - set(gone)

        def everything_came() -> bool:
            got = {c.conv_id for _, c in inbox.items}
            return len(plan["new"]) == 5 and expected | set(plan["new"]) <= got

        async with asyncio.timeout(20):
            while not everything_came():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await asyncio.sleep(INTERVAL * 6)
        got = [c.conv_id for _, c in inbox.items]
        assert set(got) - set(gone) == expected | set(plan["new"])
        assert len(got) == len(set(got))
        await inbox.stop()

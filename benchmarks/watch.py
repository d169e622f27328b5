"""Figures for the watch streams: cost when quiet, and delivery through faults.

    python benchmarks/watch.py [--items 500] [--faults 0.2] [--quiet-rounds 100]

1. Quiet account: the three streams on one client, nothing new arriving; the
   requests the fake receives per poll interval (the target is at most 1) and
   whether any poll read past page 1.
2. Bursts through faults: conversations, replies and torrent hits added in bursts
   of 1 to 60 while a fifth of all requests fail (502, 503, drops before and after
   the server's work, cut and HTML bodies, delays, rate-limit answers); every
   item handed over is checked against what was added: duplicates and misses.

Runs against the fake server over loopback with the rule scaled down (2 per
0.02 s), so it takes well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
from collections import Counter
from typing import Any

from biotorrents_async import BioTorrentsClient, RateLimit, RetryPolicy, WatchStream
from biotorrents_async.testing import FakeBioTorrents

RULE = RateLimit(2, 0.02)
RETRY = RetryPolicy(attempts=6, backoff_initial=0.005, backoff_max=0.02)


class Ticks:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


async def drain(
    stream: WatchStream[Any], into: list[Any], arrived: asyncio.Event | None = None
) -> None:
    async with stream:
        async for item in stream:
            into.append(item)
            if arrived is not None:
                arrived.set()


async def quiet(rounds: int) -> None:
    interval = 0.05
    async with FakeBioTorrents(rate_limit=RULE) as fake:
        fake.data.now = Ticks()
        client = BioTorrentsClient(
            fake.token, cookies=fake.cookies, base_url=fake.url, rate_limit=RULE
        )
        async with client:
            got: list[Any] = []
            streams = [
                client.inbox.watch(interval=interval),
                client.notifications.watch_torrents(interval=interval),
                client.notifications.watch_alerts(interval=interval),
            ]
            tasks = [asyncio.create_task(drain(s, got)) for s in streams]
            await asyncio.sleep(1.0)  # the three baselines
            before, start = len(fake.requests), asyncio.get_running_loop().time()
            await asyncio.sleep(rounds * interval)
            elapsed = asyncio.get_running_loop().time() - start
            quiet_requests = fake.requests[before:]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    per_interval = len(quiet_requests) / (elapsed / interval)
    pages = Counter(r.params.get("page", "1") for r in quiet_requests)
    actions = Counter(r.action for r in quiet_requests)
    print("quiet account, three streams:")
    print(f"  {len(quiet_requests)} requests in {elapsed / interval:.0f} intervals")
    print(f"  = {per_interval:.2f} requests per interval (target <= 1)")
    print(f"  by action: {dict(actions)}; pages: {dict(pages)}; items: {len(got)}")


async def bursts(items: int, faults: float) -> None:
    rng = random.Random(3)
    async with FakeBioTorrents(rate_limit=RULE) as fake:
        fake.data.now = Ticks()
        client = BioTorrentsClient(
            fake.token,
            cookies=fake.cookies,
            base_url=fake.url,
            rate_limit=RULE,
            retry=RETRY,
        )
        async with client:
            convs: list[Any] = []
            hits: list[Any] = []
            arrived = asyncio.Event()
            inbox = client.inbox.watch(interval=0.01)
            torrents = client.notifications.watch_torrents(interval=0.01)
            tasks = [
                asyncio.create_task(drain(inbox, convs, arrived)),
                asyncio.create_task(drain(torrents, hits, arrived)),
            ]
            await asyncio.sleep(0.5)
            fake.faults.randomly(faults, seed=7)
            mine = [c for c in fake.data.conversations.values() if 2 in c.participants]
            want_convs: set[tuple[int, dt.datetime]] = set()
            want_hits: list[int] = []
            added = 0
            while added < items:
                burst = rng.choice([1, 3, 10, 30, 60])
                # One event per conversation and burst: a new one is not
                # replied to in the same burst, nor one replied to twice.
                touched: set[int] = set()
                for _ in range(burst):
                    roll = rng.random()
                    if roll < 0.3:
                        conv = fake.data.add_conversation("New", sender=3, recipient=2)
                        mine.append(conv)
                    elif roll < 0.5:
                        conv = rng.choice(mine)
                        if conv.id in touched:
                            continue
                        other = next(p for p in conv.participants if p != 2)
                        fake.data.add_reply(conv, sender=other)
                    else:
                        group = fake.data.add_group("Burst")
                        torrent = fake.data.add_torrent(group, uploader=3)
                        fake.data.add_notification(2, torrent)
                        want_hits.append(torrent.id)
                        added += 1
                        continue
                    touched.add(conv.id)
                    last = max(m.sent for m in conv.messages if m.sender_id != 2)
                    want_convs.add((conv.id, last))
                    added += 1
                async with asyncio.timeout(120):
                    while len(convs) < len(want_convs) or len(hits) < len(want_hits):
                        arrived.clear()
                        await arrived.wait()
            await asyncio.sleep(0.3)  # anything extra would come now
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    got_convs = Counter((c.conv_id, c.date) for c in convs)
    got_hits = Counter(h.torrent_id for h in hits)
    duplicates = sum(n - 1 for n in got_convs.values() if n > 1) + sum(
        n - 1 for n in got_hits.values() if n > 1
    )
    missed = len(want_convs - set(got_convs)) + len(set(want_hits) - set(got_hits))
    injected = sum(fake.faults.injected.values())
    print(f"bursts through {faults:.0%} faults:")
    print(
        f"  items added: {len(want_convs) + len(want_hits)}; handed over: "
        f"{len(convs) + len(hits)}"
    )
    print(f"  duplicates: {duplicates}; missed: {missed}")
    print(
        f"  requests: {len(fake.requests)}; faults injected: {injected} "
        f"({dict(fake.faults.injected)})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--faults", type=float, default=0.2)
    parser.add_argument("--quiet-rounds", type=int, default=100)
    args = parser.parse_args()
    await quiet(args.quiet_rounds)
    await bursts(args.items, args.faults)


if __name__ == "__main__":
    asyncio.run(main())

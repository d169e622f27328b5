"""What the read cache saves a chat bot: requests, and the wait for an answer.

A chat bot looks people up on command (``!who NAME``: ``users.search(NAME)``,
then ``users.get`` of the hit). This script replays ``--lookups`` such commands
(300 by default) drawn from ``--names`` names (40) with a Zipf-like popularity
(the k-th most popular name is asked for in proportion to ``1 / k``), arriving
at random (a Poisson process) over ``--minutes`` simulated minutes (15), against
the fake server with the real rule scaled down ``--scale`` times (1:20, so
2 requests per 0.3 s; latency 5-50 ms scaled the same way; the cache's
``DEFAULT_TTLS`` scaled too: a search is kept 3 s, a profile 15 s).

Both rows run in the same command, one after the other, each against its own
fake server and with the same arrivals: one client without a cache, one with
``MemoryCache()``. For each: the requests the server received, the share of
lookups answered without any request (both calls from the cache), and the time
from command to answer (arrival to the profile in hand), p50 and p95, in real
seconds (measured time x scale). Without a cache the commands arrive faster
than the allowance serves them (2 requests a lookup, about 10 lookups a
minute), so they queue.

    python benchmarks/cache.py [--lookups 300] [--names 40] [--minutes 15]
                               [--scale 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import random
import statistics
import time
from dataclasses import dataclass

from biotorrents_async import (
    BioTorrentsClient,
    MemoryCache,
    RateLimit,
    ReadCache,
    RetryPolicy,
)
from biotorrents_async._cache import DEFAULT_TTLS, CacheKey, Lookup
from biotorrents_async.testing import FakeBioTorrents

REAL_PER = 6.0
REAL_LATENCY = (0.005, 0.05)

# The cache hits of the lookup running in this task (each lookup is a task).
_hits: contextvars.ContextVar[list[int]] = contextvars.ContextVar("hits")


class CountingCache(MemoryCache):
    """A ``MemoryCache`` that tells each lookup task how many hits it had."""

    async def lookup(self, key: CacheKey, *, read: bool = True) -> Lookup:
        found = await super().lookup(key, read=read)
        if found.text is not None:
            _hits.get()[0] += 1
        return found


@dataclass
class Row:
    name: str
    requests: int
    rejected: int
    without_request: float
    p50: float
    p95: float


def names(count: int) -> list[str]:
    # "reader07x" is no substring of another name: each search has one exact hit.
    return [f"reader{n:02d}x" for n in range(count)]


def workload(args: argparse.Namespace) -> list[tuple[float, str]]:
    """(arrival in scaled seconds, name), the same for both rows."""
    rng = random.Random(args.seed)
    pool = names(args.names)
    weights = [1 / (k + 1) for k in range(len(pool))]
    span = args.minutes * 60 / args.scale
    rate = args.lookups / span
    at, out = 0.0, []
    for _ in range(args.lookups):
        at += rng.expovariate(rate)
        out.append((at, rng.choices(pool, weights)[0]))
    return out


async def run(label: str, cache: ReadCache | None, args: argparse.Namespace) -> Row:
    per = REAL_PER / args.scale
    rule = RateLimit(2, per)
    latency = (REAL_LATENCY[0] / args.scale, REAL_LATENCY[1] / args.scale)
    async with FakeBioTorrents(rate_limit=rule, latency=latency) as fake:
        for name in names(args.names):
            fake.data.add_user(name)
        async with BioTorrentsClient(
            fake.token,
            base_url=fake.url,
            rate_limit=rule,
            retry=RetryPolicy(attempts=4),
            cache=cache,
        ) as client:
            waits: list[float] = []
            cached: list[bool] = []

            async def lookup(arrival: float, name: str) -> None:
                _hits.set([0])
                page = await client.users.search(name)
                (hit,) = [r for r in page.items if r.username == name]
                await client.users.get(hit.user_id)
                waits.append(time.monotonic() - arrival)
                cached.append(_hits.get()[0] == 2)

            start = time.monotonic()
            tasks = []
            for at, name in workload(args):
                await asyncio.sleep(max(0.0, start + at - time.monotonic()))
                tasks.append(asyncio.create_task(lookup(start + at, name)))
            await asyncio.gather(*tasks)
        log = fake.requests
    quantiles = statistics.quantiles(waits, n=20)
    return Row(
        label,
        requests=len(log),
        rejected=sum(r.outcome == "rate-limited" for r in log),
        without_request=sum(cached) / len(cached),
        p50=statistics.median(waits) * args.scale,
        p95=quantiles[18] * args.scale,
    )


async def main(args: argparse.Namespace) -> list[Row]:
    ttls = {action: ttl / args.scale for action, ttl in DEFAULT_TTLS.items()}
    return [
        await run("no cache", None, args),
        await run("MemoryCache()", CountingCache(ttls=ttls), args),
    ]


def table(rows: list[Row]) -> str:
    out = [
        "| client | requests sent | lookups without a request | p50 | p95 | rejected |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.name} | {r.requests} | {r.without_request:.0%} "
            f"| {r.p50:.1f} s | {r.p95:.1f} s | {r.rejected} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--names", type=int, default=40)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--scale", type=float, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.monotonic()
    rows = asyncio.run(main(args))
    print(
        f"{args.lookups} lookups (search + profile) of {args.names} names, Zipf "
        f"1/k, over {args.minutes:g} simulated minutes; rule 2 per 6 s scaled "
        f"1:{args.scale:g}; times in real seconds"
    )
    print()
    print(table(rows))
    print(f"run time {time.monotonic() - started:.0f} s")

"""How much of the rate allowance each pacing strategy gets, and at what cost.

Each strategy drives its own fake server (fixed-window limiter, windows of
per ± per/6 like memcached's one-second expiry on the real 6-second rule,
latency 5-50 ms scaled the same way) with 1, 10 and 100 concurrent callers for
the same number of windows. The allowance is 2 requests per window; the ceiling
for a client that is never rejected is about 6/7 of it (api-reference §2.1).

    python benchmarks/throughput.py [--per 0.3] [--windows 40]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
from pathlib import Path
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter

from biotorrents_async import BioTorrentsClient, RateLimit, RateLimitError, RetryPolicy
from biotorrents_async.testing import FakeBioTorrents

STRATEGIES = (
    "biotorrents_async pacing",
    "naive AsyncLimiter(2, per)",
    "one per window",
)


async def run(
    strategy: str, callers: int, per: float, windows: int, seed: int
) -> dict[str, Any]:
    rule = RateLimit(2, per)
    scale = per / 6.0
    async with FakeBioTorrents(
        rate_limit=rule,
        expiry_jitter=per / 6,  # memcached: a 6 s window lasts 5 to 7 s
        latency=(0.005 * scale, 0.05 * scale),
        seed=seed,
    ) as fake:
        pages = itertools.count(1)
        duration = per * windows
        async with contextlib.AsyncExitStack() as stack:
            if strategy == STRATEGIES[0]:
                client = await stack.enter_async_context(
                    BioTorrentsClient(
                        fake.token,
                        base_url=fake.url,
                        rate_limit=rule,
                        retry=RetryPolicy.none(),
                    )
                )

                async def call() -> None:
                    with contextlib.suppress(RateLimitError):
                        await client.users.search("a", page=next(pages))

            else:
                # The peers' way: bare aiohttp behind an aiolimiter bucket.
                session = await stack.enter_async_context(aiohttp.ClientSession())
                size = 2 if strategy == STRATEGIES[1] else 1
                limiter = AsyncLimiter(size, per)
                headers = {"Authorization": f"Bearer {fake.token}"}

                async def call() -> None:
                    async with limiter:
                        params = {"action": "usersearch", "search": "a"}
                        params["page"] = str(next(pages))
                        async with session.get(
                            f"{fake.url}/api.php", params=params, headers=headers
                        ) as resp:
                            await resp.read()

            async def caller() -> None:
                while True:
                    await call()

            tasks = [asyncio.create_task(caller()) for _ in range(callers)]
            await asyncio.sleep(duration)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        start = fake.requests[0].time if fake.requests else 0.0
        counted = [r for r in fake.requests if r.time < start + duration]
        ok = sum(1 for r in counted if r.outcome == "ok")
        rejected = sum(1 for r in counted if r.outcome == "rate-limited")
    allowance = rule.requests * windows
    return {
        "strategy": strategy,
        "callers": callers,
        "accepted": ok,
        "rejected": rejected,
        "allowance": allowance,
        "fraction": ok / allowance,
    }


async def main(per: float, windows: int) -> list[dict[str, Any]]:
    jobs = [
        run(strategy, callers, per, windows, seed=n)
        for n, (strategy, callers) in enumerate(
            itertools.product(STRATEGIES, (1, 10, 100))
        )
    ]
    return list(await asyncio.gather(*jobs))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per", type=float, default=0.3, help="scaled window (s)")
    parser.add_argument("--windows", type=int, default=40)
    args = parser.parse_args()
    rows = asyncio.run(main(args.per, args.windows))
    print(f"rule 2 per {args.per:g}s (real: 2 per 6 s), {args.windows} windows")
    print(f"{'strategy':28} {'callers':>7} {'of allowance':>12} {'rejected':>8}")
    for row in rows:
        print(
            f"{row['strategy']:28} {row['callers']:>7} "
            f"{row['fraction']:>11.0%} {row['rejected']:>8}"
        )
    Path(__file__).with_suffix(".last.json").write_text(json.dumps(rows))

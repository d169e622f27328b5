"""One OS process of the multi-process tests: callers sharing a RedisPacer.

Usage: python redis_worker.py REDIS_URL BASE_URL TOKEN KEY PER CALLERS CALLS FIRST_PAGE

Prints one line per answer ("ok <page>") and "done" at the end.
"""

from __future__ import annotations

import asyncio
import sys

from biotorrents_async import BioTorrentsClient, RateLimit, RedisPacer, RetryPolicy


async def main(argv: list[str]) -> None:
    redis_url, base_url, token, key, per, callers, calls, first = argv
    rule = RateLimit(2, float(per))
    pacer = RedisPacer(redis_url, rate_limit=rule, key=key, request_timeout=1.0)
    async with BioTorrentsClient(
        token,
        base_url=base_url,
        rate_limit=rule,
        pacer=pacer,
        timeout=1.0,
        retry=RetryPolicy.none(),
    ) as client:

        async def caller(n: int) -> None:
            for k in range(int(calls)):
                # A distinct page each time, so that nothing is coalesced.
                page = int(first) + n * int(calls) + k
                await client.users.search("a", page=page)
                print(f"ok {page}", flush=True)

        await asyncio.gather(*(caller(n) for n in range(int(callers))))
    await pacer.aclose()
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

"""One OS process of the 4-process rows of ``throughput.py`` (not run by hand).

    python _throughput_worker.py BASE_URL TOKEN PER CALLERS FIRST_PAGE TIMEOUT
        [REDIS_URL KEY]

With ``REDIS_URL`` and ``KEY`` the client paces through a shared
:class:`~biotorrents_async.RedisPacer`; without, through its own in-process
pacer (the default ``LocalPacer``). Every call reads a distinct page, so nothing
is coalesced. The worker prints ``ready`` once its client is built, starts its
callers when it reads ``go`` on stdin, stops them when it reads ``stop`` (or
stdin closes), and prints one JSON line with what its callers saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
from collections import Counter

from biotorrents_async import (
    BioTorrentsClient,
    RateLimit,
    RateLimitError,
    RedisPacer,
    RetryPolicy,
)


async def main(argv: list[str]) -> None:
    base_url, token, per, callers, first, timeout, *shared = argv
    rule = RateLimit(2, float(per))
    pacer = None
    if shared:
        redis_url, key = shared
        pacer = RedisPacer(
            redis_url, rate_limit=rule, key=key, request_timeout=float(timeout)
        )
    seen: Counter[str] = Counter()
    pages = itertools.count(int(first))
    async with BioTorrentsClient(
        token,
        base_url=base_url,
        rate_limit=rule,
        pacer=pacer,
        timeout=float(timeout),
        retry=RetryPolicy.none(),
    ) as client:

        async def caller() -> None:
            while True:
                try:
                    await client.users.search("a", page=next(pages))
                    seen["ok"] += 1
                except RateLimitError:
                    seen["rate-limited"] += 1
                except Exception as exc:  # counted and reported
                    seen[f"error:{type(exc).__name__}"] += 1

        print("ready", flush=True)
        if (await asyncio.to_thread(sys.stdin.readline)).strip() != "go":
            return
        tasks = [asyncio.create_task(caller()) for _ in range(int(callers))]
        await asyncio.to_thread(sys.stdin.readline)  # "stop", or EOF
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if pacer is not None:
        with contextlib.suppress(Exception):
            await pacer.aclose()
    print(json.dumps(dict(seen)), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

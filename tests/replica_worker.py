"""One replica of a bot for the lease tests: an inbox stream on a shared store.

Usage: python replica_worker.py BASE_URL STORE OUT LEASE INTERVAL

``STORE`` is a ``redis://`` URL (a ``RedisStore``) or a file path (a
``FileStore``). The session cookie and user id come in ``BIOTORRENTS_COOKIES``.
Writes JSON lines to ``OUT``: ``{"role": ...}`` when the stream's role changes,
``{"key": ...}`` per item, ``{"error": ...}`` if the stream ends with one. On
SIGTERM it stops cleanly (the lease is released with the last save).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

from biotorrents_async import (
    BioTorrentsClient,
    FileStore,
    RateLimit,
    RedisStore,
    RetryPolicy,
)


async def main(argv: list[str]) -> int:
    base_url, spec, out_path, lease, interval = argv
    store: Any = RedisStore(spec) if spec.startswith("redis://") else FileStore(spec)
    cookies = dict(
        part.strip().split("=", 1)
        for part in os.environ["BIOTORRENTS_COOKIES"].split(";")
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    code = 0
    with open(out_path, "a") as out:  # noqa: ASYNC230 - a line per event

        def note(**entry: Any) -> None:
            out.write(json.dumps({"pid": os.getpid(), "t": time.time(), **entry}))
            out.write("\n")
            out.flush()

        async with BioTorrentsClient(
            cookies=cookies,
            base_url=base_url,
            rate_limit=RateLimit(2, 0.05),
            retry=RetryPolicy(attempts=6, backoff_initial=0.01, backoff_max=0.05),
        ) as client:
            stream = client.inbox.watch(
                interval=float(interval), store=store, lease=float(lease)
            )

            async def roles() -> None:
                role = ""
                while True:
                    if stream.health.role != role:
                        role = stream.health.role
                        note(role=role)
                    await asyncio.sleep(0.02)

            watcher = asyncio.create_task(roles())
            try:
                async with stream:
                    reading = asyncio.ensure_future(anext(stream))
                    while True:
                        stopping = asyncio.ensure_future(stop.wait())
                        done, _ = await asyncio.wait(
                            {reading, stopping}, return_when=asyncio.FIRST_COMPLETED
                        )
                        if stopping in done:
                            reading.cancel()
                            await asyncio.gather(reading, return_exceptions=True)
                            break
                        stopping.cancel()
                        item = reading.result()
                        note(key=stream.key(item), event=stream.event(item))
                        reading = asyncio.ensure_future(anext(stream))
            except Exception as exc:  # the stream ended with an error
                note(error=type(exc).__name__)
                code = 3
            finally:
                watcher.cancel()
                note(role="stopped")
    if isinstance(store, RedisStore):
        await store.aclose()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

"""Peak memory while iterating a long inbox: flat in the number of pages.

A small loopback server, in a child process so that tracemalloc sees only the
client, computes each inbox page on the fly; the client iterates 1,000 and then
10,000 conversations (40 and 400 pages) with ``iter_conversations``, and
tracemalloc reports the peak of each run (after one unmeasured pass that fills the
bounded URL caches of yarl). Target: the two peaks about equal.

    python benchmarks/memory.py [--small 1000] [--large 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tracemalloc
from multiprocessing.connection import Connection
from pathlib import Path

from aiohttp import web

from biotorrents_async import BioTorrentsClient, RetryPolicy

ITEM = (
    '{{"convId":{id},"subject":"Dataset #{id} &amp; notes","unread":false,'
    '"sticky":false,"forwardedId":0,"forwardedName":"","senderId":3,'
    '"username":"Ana Jim&eacute;nez","avatar":"","donor":false,"warned":false,'
    '"enabled":true,"date":"2021-01-16 08:41:09"}}'
)


def serve_forever(total: int, port_out: Connection) -> None:
    """Child process: serve an inbox of ``total`` conversations."""

    async def run() -> None:
        runner, url = await serve(total)
        port_out.send(url)
        await asyncio.Event().wait()
        await runner.cleanup()  # pragma: no cover

    asyncio.run(run())


async def serve(total: int) -> tuple[web.AppRunner, str]:
    async def inbox(request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        first = (page - 1) * 25
        items = ",".join(
            ITEM.format(id=total - n) for n in range(first, min(total, first + 25))
        )
        pages = -(-total // 25)
        body = (
            f'{{"status":"success","response":{{"currentPage":{page},'
            f'"pages":{pages},"messages":[{items}]}}}}'
        )
        return web.Response(text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api.php", inbox)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def peak_while_iterating(total: int) -> int:
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(
        target=serve_forever, args=(total, child), daemon=True
    )
    server.start()
    try:
        return await _measure(parent.recv(), total)
    finally:
        server.terminate()
        server.join()


async def _measure(url: str, total: int) -> int:
    async with BioTorrentsClient(
        "t", base_url=url, rate_limit=None, retry=RetryPolicy.none()
    ) as client:
        await client.inbox.conversations()  # warm up: session, converter
        tracemalloc.start()
        tracemalloc.reset_peak()
        count = 0
        async for _ in client.inbox.iter_conversations():
            count += 1
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert count == total
    return peak


async def main(small: int, large: int) -> dict[str, float]:
    # A first, unmeasured pass fills the bounded caches of yarl (URL building),
    # which would otherwise count against one run only.
    await peak_while_iterating(large)
    peak_small = await peak_while_iterating(small)
    peak_large = await peak_while_iterating(large)
    return {
        "small_items": small,
        "large_items": large,
        "small_peak_kib": peak_small / 1024,
        "large_peak_kib": peak_large / 1024,
        "ratio": peak_large / peak_small,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10_000)
    args = parser.parse_args()
    r = asyncio.run(main(args.small, args.large))
    for size in ("small", "large"):
        items = int(r[f"{size}_items"])
        print(
            f"{items:>6} items ({-(-items // 25):>3} pages): "
            f"peak {r[f'{size}_peak_kib']:8.1f} KiB"
        )
    verdict = "flat" if r["ratio"] <= 1.25 else "NOT flat"
    print(f"ratio large/small: {r['ratio']:.2f}x ({verdict})")
    Path(__file__).with_suffix(".last.json").write_text(json.dumps(r))

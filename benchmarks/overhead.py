"""Client overhead per request, pacing off, vs bare aiohttp + json.loads.

Both talk to the same loopback server, which answers every request with the
recorded ``index`` body, each over one kept-alive connection. Short blocks of the
two alternate (ABBA) so that machine noise hits both alike; the figure is the
median of the per-round ratios. Target: ratio <= 1.1.

    python benchmarks/overhead.py [--requests 250] [--rounds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from pathlib import Path

import aiohttp
from aiohttp import web

from biotorrents_async import BioTorrentsClient, RetryPolicy

BODY = (
    b'{"status":"success","response":{"username":"labuser","id":2,'
    b'"authkey":"0123456789abcdef0123456789abcdef",'
    b'"passkey":"fedcba9876543210fedcba9876543210","notifications":{"messages":3,'
    b'"notifications":0,"newAnnouncement":true,"newBlog":false,'
    b'"newSubscriptions":false},"userstats":{"uploaded":5368709120,"downloaded":0,'
    b'"ratio":-1,"requiredratio":0,"class":"User"}},'
    b'"info":{"source":"BioTorrents.de","version":1}}'
)


async def serve() -> tuple[web.AppRunner, str]:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api.php", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def bare(session: aiohttp.ClientSession, url: str, n: int) -> float:
    """Seconds per request of ``n`` plain aiohttp requests + ``json.loads``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(n):
        async with session.get(
            f"{url}/api.php",
            params={"action": "index"},
            headers={"Authorization": "Bearer t"},
        ) as resp:
            doc = json.loads(await resp.read())
            assert doc["response"]["id"] == 2
    return (loop.time() - started) / n


async def client(c: BioTorrentsClient, n: int) -> float:
    """Seconds per request of ``n`` calls of ``index()`` (a typed ``Index``)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(n):
        me = await c.index()
        assert me.id == 2
    return (loop.time() - started) / n


async def main(requests: int, rounds: int) -> dict[str, float]:
    runner, url = await serve()
    try:
        async with (
            aiohttp.ClientSession() as session,
            BioTorrentsClient(
                "t", base_url=url, rate_limit=None, retry=RetryPolicy.none()
            ) as c,
        ):
            await bare(session, url, 200)
            await client(c, 200)  # warm up both paths (connections, hooks)
            bare_times, client_times, ratios = [], [], []
            for n in range(rounds):
                # Short blocks, the order swapped every round (ABBA): a burst
                # of noise from the machine's neighbours hits both sides alike.
                if n % 2:
                    c_time = await client(c, requests)
                    b_time = await bare(session, url, requests)
                else:
                    b_time = await bare(session, url, requests)
                    c_time = await client(c, requests)
                bare_times.append(b_time)
                client_times.append(c_time)
                ratios.append(c_time / b_time)
    finally:
        await runner.cleanup()
    return {
        "bare_us": statistics.median(bare_times) * 1e6,
        "client_us": statistics.median(client_times) * 1e6,
        "ratio": statistics.median(ratios),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    result = asyncio.run(main(args.requests, args.rounds))
    print(f"bare aiohttp + json.loads: {result['bare_us']:8.1f} us/request")
    print(f"BioTorrentsClient.index(): {result['client_us']:8.1f} us/request")
    verdict = "met" if result["ratio"] <= 1.1 else "NOT met"
    print(f"ratio: {result['ratio']:.2f}x (target <= 1.1x: {verdict})")
    Path(__file__).with_suffix(".last.json").write_text(json.dumps(result))

"""Client overhead per request, pacing off, vs bare aiohttp + json.loads.

Both talk to the same loopback server, which answers every request with the
recorded ``index`` body; rounds of the two alternate so that machine noise hits
both alike. Target: ratio <= 1.2.

    python benchmarks/overhead.py [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


async def bare(url: str, n: int) -> float:
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
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


async def client(url: str, n: int) -> float:
    loop = asyncio.get_running_loop()
    async with BioTorrentsClient(
        "t", base_url=url, rate_limit=None, retry=RetryPolicy.none()
    ) as c:
        started = loop.time()
        for _ in range(n):
            me = await c.index()
            assert me.id == 2
        return (loop.time() - started) / n


async def main(requests: int, rounds: int) -> dict[str, float]:
    runner, url = await serve()
    try:
        await bare(url, 50)
        await client(url, 50)  # warm up both paths
        bare_times, client_times = [], []
        for _ in range(rounds):
            bare_times.append(await bare(url, requests))
            client_times.append(await client(url, requests))
    finally:
        await runner.cleanup()
    b, c = sorted(bare_times)[rounds // 2], sorted(client_times)[rounds // 2]
    return {"bare_us": b * 1e6, "client_us": c * 1e6, "ratio": c / b}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    result = asyncio.run(main(args.requests, args.rounds))
    print(f"bare aiohttp + json.loads: {result['bare_us']:8.1f} us/request")
    print(f"BioTorrentsClient.index(): {result['client_us']:8.1f} us/request")
    verdict = "met" if result["ratio"] <= 1.2 else "NOT met"
    print(f"ratio: {result['ratio']:.2f}x (target <= 1.2x: {verdict})")
    Path(__file__).with_suffix(".last.json").write_text(json.dumps(result))

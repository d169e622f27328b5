"""examples/relay_bot.py, tested the way its author would: the pytest plugin's fake."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from support import SECRETS

from biotorrents_async import BioTorrentsClient, FileStore, RateLimit
from biotorrents_async.testing import FakeBioTorrents

EXAMPLE = Path(__file__).parent.parent / "examples" / "relay_bot.py"
_spec = importlib.util.spec_from_file_location("relay_bot", EXAMPLE)
assert _spec is not None and _spec.loader is not None  # noqa: PT018
relay_bot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(relay_bot)


async def test_the_relay_posts_each_new_item_once_with_its_key(
    biotorrents_server: FakeBioTorrents,
    biotorrents_client: BioTorrentsClient,
    tmp_path: Path,
) -> None:
    fake, posted = biotorrents_server, []

    async def post(body: dict[str, Any]) -> None:
        posted.append(body)

    task = asyncio.create_task(
        relay_bot.relay(biotorrents_client, post, FileStore(tmp_path / "bot.db"))
    )
    await asyncio.sleep(0.5)  # the baselines: nothing old is posted
    conv = fake.data.add_conversation("Hello", sender=3, recipient=2)
    fake.data.add_reply(fake.data.conversations[5], sender=3)
    torrent = fake.data.add_torrent(fake.data.add_group("Run 7"), uploader=3)
    fake.data.add_notification(2, torrent)
    fake.data.add_alert(2, "StaffPM", "A word from staff", "staffpm.php")
    async with asyncio.timeout(20):
        while len(posted) < 4:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    events = sorted((p["event"], p["key"].split(":")[0]) for p in posted)
    assert events == [
        ("alert", "alert"),
        ("hit", "torrent"),
        ("new", "inbox"),
        ("reply", "inbox"),
    ]
    assert len({p["key"] for p in posted}) == 4
    assert any(p["item"].get("conv_id") == conv.id for p in posted)
    json.dumps(posted)  # JSON-ready


async def test_the_webhook_is_retried_and_carries_the_key(tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append((request.headers["Idempotency-Key"], await request.json()))
        return web.Response(status=503 if len(seen) == 1 else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            post = relay_bot.webhook(http, f"http://127.0.0.1:{port}/hook")
            await post({"key": "inbox:1:2026-01-01T00:00:00", "event": "new"})
    finally:
        await runner.cleanup()
    assert [key for key, _ in seen] == ["inbox:1:2026-01-01T00:00:00"] * 2


async def test_the_relay_runs_from_the_environment_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    async with FakeBioTorrents(rate_limit=RateLimit(2, 0.05)) as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BIOTORRENTS_")}
        env.pop("WEBHOOK_URL", None)
        env.update(
            BIOTORRENTS_BASE_URL=fake.url,
            BIOTORRENTS_TOKEN=fake.token,
            BIOTORRENTS_COOKIES="; ".join(f"{k}={v}" for k, v in fake.cookies.items()),
            BIOTORRENTS_RATE_LIMIT="2/0.05",
            BOT_STORE=str(tmp_path / "bot.db"),
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLE),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(3)  # started, baselines taken
        fake.data.add_conversation("Hi from the fake", sender=3, recipient=2)
        await asyncio.sleep(3)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [line["item"]["subject"] for line in lines] == ["Hi from the fake"]
    secrets = [*SECRETS, fake.token, fake.cookies["session"]]
    assert not [s for s in secrets if s in out.decode() + err.decode()]
    assert (tmp_path / "bot.db").exists()

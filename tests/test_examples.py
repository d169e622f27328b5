"""The examples run as a new user would run them, against the fake server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import SECRETS, fake_server_process

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture
def fake_url() -> Iterator[str]:
    with fake_server_process() as (url, _):
        yield url


def test_examples_print_what_they_promise_and_no_secret(fake_url: str) -> None:
    env = {
        **os.environ,
        "BIOTORRENTS_BASE_URL": fake_url,
        "BIOTORRENTS_TOKEN": "fake-token-kestrel-0002",
        "BIOTORRENTS_RATE_LIMIT": "none",  # the fake in the child has none either
    }
    runs = {
        name: subprocess.Popen(  # noqa: S603 - our own interpreter and files
            [sys.executable, str(EXAMPLES / name)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("quickstart.py", "read_inbox.py")
    }
    outputs = {name: proc.communicate(timeout=60) for name, proc in runs.items()}
    for name, proc in runs.items():
        assert proc.returncode == 0, outputs[name][1]
    quick, _ = outputs["quickstart.py"]
    assert "You are kestrel (id 2), class Power User" in quick
    assert "Inbox, page 1 of 3:" in quick
    inbox, _ = outputs["read_inbox.py"]
    assert inbox.strip().endswith("55 conversations, 11 unread")
    for out, err in outputs.values():
        assert not [s for s in SECRETS if s in out + err]


def test_examples_without_a_token_say_so() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIOTORRENTS_")}
    done = subprocess.run(  # noqa: S603 - our own interpreter and files
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: set BIOTORRENTS_TOKEN or BIOTORRENTS_COOKIES (or both) to build "
        "a client from the environment"
    )


def _run_bot(tmp_path: Path, seconds: float = 6) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIOTORRENTS_")}
    done = subprocess.run(  # noqa: S603 - our own interpreter and files
        [sys.executable, str(EXAMPLES / "inbox_bot.py"), "--seconds", str(seconds)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_the_bot_shows_new_items_within_seconds(tmp_path: Path) -> None:
    for _ in range(2):  # a second run on a new fake shows new items too
        out, err = _run_bot(tmp_path)
        assert "mail from" in out
        assert "torrent hit: Sequencing run" in out
        assert "New & improved API" not in out  # old news is not new
        assert err.strip() == "stopped"  # a clean stop, by itself
        assert not [s for s in SECRETS if s in out + err]
    assert not list(tmp_path.glob("*.db"))  # no cursor file left on the fake


async def test_the_bot_posts_each_item_to_the_webhook(tmp_path: Path) -> None:
    from aiohttp import web

    received: list[dict[str, str]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES / "inbox_bot.py"),
            "--seconds",
            "6",
            "--webhook",
            f"http://127.0.0.1:{port}/hook",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await runner.cleanup()
    assert proc.returncode == 0, err.decode()
    texts = [r["text"] for r in received]
    assert any(t.startswith("mail from") for t in texts)
    assert any(t.startswith("torrent hit") for t in texts)
    assert len(texts) == len(set(texts))  # each once
    assert "mail from" not in out.decode()  # posted, not printed

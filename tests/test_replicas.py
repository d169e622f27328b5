"""Replicas of a bot on one cursor: one active, the others standing by.

Real OS processes (``replica_worker.py``) on a ``FileStore`` and on a
``RedisStore`` with a real redis-server, against the fake over loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from biotorrents_async import RateLimit
from biotorrents_async.testing import FakeBioTorrents

WORKER = Path(__file__).parent / "replica_worker.py"
LEASE = 1.0
INTERVAL = 0.05


@pytest.fixture
async def fake() -> AsyncIterator[FakeBioTorrents]:
    async with FakeBioTorrents(rate_limit=RateLimit(2, 0.05)) as server:
        for conv in server.data.conversations.values():
            conv.unread_for.discard(2)
        yield server


@pytest.fixture(params=["file", "redis"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return str(tmp_path / "bot.db")
    url: str = request.getfixturevalue("redis_url")
    return url


class Replica:
    def __init__(self, fake: FakeBioTorrents, spec: str, out: Path, name: str) -> None:
        self.out = out
        env = dict(os.environ)
        env["BIOTORRENTS_COOKIES"] = "; ".join(
            f"{k}={v}" for k, v in fake.cookies.items()
        )
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [
                sys.executable,
                str(WORKER),
                fake.url,
                spec,
                str(out),
                str(LEASE),
                str(INTERVAL),
            ],
            env=env,
        )
        self.name = name

    def lines(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def delivered(self) -> list[str]:
        return [e["key"] for e in self.lines() if "key" in e]

    def roles(self) -> list[str]:
        return [e["role"] for e in self.lines() if "role" in e]

    def role_at(self, role: str) -> float | None:
        return next((e["t"] for e in self.lines() if e.get("role") == role), None)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


async def until(check: Callable[[], bool], within: float = 20) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def conversations(fake: FakeBioTorrents, count: int, tag: str) -> list[int]:
    return [
        fake.data.add_conversation(f"{tag} {n}", sender=3, recipient=2).id
        for n in range(count)
    ]


def conv_ids(keys: list[str]) -> list[int]:
    return [int(k.split(":")[1]) for k in keys]


async def test_one_replica_delivers_and_the_standby_takes_over(
    fake: FakeBioTorrents, store_spec: str, tmp_path: Path
) -> None:
    if store_spec.startswith("redis://"):
        # The workers use the default prefix and name: start from nothing.
        import redis.asyncio

        r = redis.asyncio.from_url(store_spec)
        await r.delete(
            *[f"biotorrents:cursor:inbox{p}" for p in ("", ":lease", ":fence", ":kind")]
        )
        await r.aclose()
    fake.faults.randomly(0.1, seed=7)  # 5xx, drops, cut bodies, throttling
    first = Replica(fake, store_spec, tmp_path / "a.jsonl", "a")
    second: Replica | None = None
    third: Replica | None = None
    try:
        await until(lambda: "active" in first.roles())
        second = Replica(fake, store_spec, tmp_path / "b.jsonl", "b")
        await until(lambda: "standby" in second.roles())
        # Both run: only the active one delivers, each item once.
        made = conversations(fake, 8, "Both running")
        await until(lambda: len(first.delivered()) >= 8)
        await asyncio.sleep(LEASE)
        assert sorted(conv_ids(first.delivered())) == sorted(made)
        assert second.delivered() == []

        # kill -9 of the active one: the standby takes over within the lease
        # (plus a poll), and delivers everything after it.
        killed = time.time()
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        after_kill = conversations(fake, 5, "After the kill")
        await until(lambda: set(after_kill) <= set(conv_ids(second.delivered())))
        # Its role line may follow its first items by one look (20 ms).
        await until(lambda: second.role_at("active") is not None)
        took_over = second.role_at("active")
        assert took_over is not None
        assert took_over - killed < LEASE + 2 * INTERVAL + 1.0
        again = [k for k in second.delivered() if k in first.delivered()]
        assert len(again) <= 1  # at most the one the dead one held
        print(f"takeover after kill -9: {took_over - killed:.2f}s, again: {len(again)}")

        # SIGTERM of the active one: the next standby takes over at once.
        third = Replica(fake, store_spec, tmp_path / "c.jsonl", "c")
        await until(lambda: "standby" in third.roles())
        stopped = time.time()
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(10) == 0
        await until(lambda: third.role_at("active") is not None)
        assert third.role_at("active") - stopped < LEASE  # type: ignore[operator]
        after_stop = conversations(fake, 3, "After the stop")
        await until(lambda: set(after_stop) <= set(conv_ids(third.delivered())))
        assert not set(third.delivered()) & set(
            second.delivered()
        )  # a clean stop: none again

        # SIGSTOP of the active one past its lease: another takes over; the
        # paused one, woken up, yields nothing more and ends with an error.
        fourth = Replica(fake, store_spec, tmp_path / "d.jsonl", "d")
        try:
            await until(lambda: "standby" in fourth.roles())
            third.proc.send_signal(signal.SIGSTOP)
            paused_with = len(third.delivered())
            await until(lambda: fourth.role_at("active") is not None)
            after_pause = conversations(fake, 3, "While paused")
            await until(lambda: set(after_pause) <= set(conv_ids(fourth.delivered())))
            third.proc.send_signal(signal.SIGCONT)
            await until(lambda: third.proc.poll() is not None)
            assert third.proc.returncode == 3
            assert any(e.get("error") == "LeaseLostError" for e in third.lines())
            assert len(third.delivered()) == paused_with
        finally:
            fourth.stop()
        everything = [
            *first.delivered(),
            *second.delivered(),
            *third.delivered(),
            *fourth.delivered(),
        ]
        delivered = conv_ids(everything)
        assert set(delivered) == set(made + after_kill + after_stop + after_pause)
        assert len(delivered) - len(set(delivered)) <= 1
    finally:
        for replica in (first, second, third):
            if replica is not None:
                if replica.proc.poll() is None:
                    replica.proc.send_signal(signal.SIGCONT)
                replica.stop()

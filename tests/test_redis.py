"""RedisPacer against a real redis-server: one allowance for many processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import free_port, redis_server

from biotorrents_async import (
    BioTorrentsClient,
    LocalPacer,
    RateLimit,
    RedisPacer,
    RedisStore,
    RetryPolicy,
    SharedStoreError,
)
from biotorrents_async._pacing import BACKGROUND, INTERACTIVE, MAX_BYPASS
from biotorrents_async.testing import FakeBioTorrents

WORKER = Path(__file__).parent / "redis_worker.py"
RULE = RateLimit(2, 0.2)


@pytest.fixture
def key() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBioTorrents]:
    async with FakeBioTorrents(rate_limit=RULE, latency=(0.001, 0.005)) as server:
        yield server


async def take_turn(
    order: list[str], pacer: RedisPacer, name: str, priority: int = INTERACTIVE
) -> None:
    """Hold a place of ``pacer`` for a moment; note when it came."""
    async with pacer.slot(priority):
        order.append(name)


def rejected(fake: FakeBioTorrents) -> int:
    return sum(r.outcome == "rate-limited" for r in fake.requests)


async def test_many_callers_in_one_process(
    redis_url: str, key: str, fake: FakeBioTorrents
) -> None:
    pacer = RedisPacer(redis_url, rate_limit=RULE, key=key)
    async with BioTorrentsClient(
        fake.token, base_url=fake.url, pacer=pacer, retry=RetryPolicy.none()
    ) as client:
        await asyncio.gather(*(client.users.search("a", page=p) for p in range(1, 13)))
    await pacer.aclose()
    assert len(fake.requests) == 12
    assert rejected(fake) == 0


async def _worker(
    redis_url: str, fake: FakeBioTorrents, key: str, callers: int, first: int
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        redis_url,
        fake.url,
        fake.token,
        key,
        str(RULE.per),
        str(callers),
        "1",
        str(first),
        stdout=asyncio.subprocess.PIPE,
    )


async def test_four_processes_share_one_allowance(
    redis_url: str, key: str, fake: FakeBioTorrents
) -> None:
    workers = [await _worker(redis_url, fake, key, 10, 1 + 100 * n) for n in range(4)]
    outputs = await asyncio.wait_for(
        asyncio.gather(*(w.communicate() for w in workers)), 60
    )
    assert [w.returncode for w in workers] == [0] * 4
    assert all(out.decode().splitlines()[-1] == "done" for out, _ in outputs)
    assert len(fake.requests) == 40
    assert rejected(fake) == 0


async def test_kill_9_of_one_process_blocks_the_others_briefly(
    redis_url: str, key: str, fake: FakeBioTorrents
) -> None:
    workers = [await _worker(redis_url, fake, key, 10, 1 + 100 * n) for n in range(4)]
    victim = workers[0]
    assert victim.stdout is not None
    await asyncio.wait_for(victim.stdout.readline(), 30)  # it is under way
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    await victim.wait()
    outputs = await asyncio.wait_for(
        asyncio.gather(*(w.communicate() for w in workers[1:])), 60
    )
    assert [w.returncode for w in workers[1:]] == [0] * 3
    assert all(out.decode().splitlines()[-1] == "done" for out, _ in outputs)
    assert rejected(fake) == 0
    # Its places expire at most request_timeout (1 s) + one window after sending.
    after = [r.time for r in fake.requests if r.time >= killed_at]
    gaps = [b - a for a, b in zip([killed_at, *after], after, strict=False)]
    assert max(gaps) < 1.0 + RULE.window + 0.5


async def test_a_dead_holders_place_expires(redis_url: str, key: str) -> None:
    rule = RateLimit(1, 0.1, margin=0)
    dead = RedisPacer(redis_url, rate_limit=rule, key=key, request_timeout=0.3)
    alive = RedisPacer(redis_url, rate_limit=rule, key=key, request_timeout=0.3)
    await dead.slot().__aenter__()  # sent, and never answered: killed
    started = time.monotonic()
    async with asyncio.timeout(2), alive.slot():
        waited = time.monotonic() - started
    # The lease ends request_timeout + one window after sending, not sooner.
    assert 0.3 + 0.1 - 0.05 < waited < 0.3 + 0.1 + 0.3
    await dead.aclose()
    await alive.aclose()


async def test_priorities_hold_across_processes(redis_url: str, key: str) -> None:
    # A window long enough that both wait in it even on a loaded machine.
    rule = RateLimit(1, 0.5, margin=0)
    first, second, third = (
        RedisPacer(redis_url, rate_limit=rule, key=key) for _ in range(3)
    )
    order: list[str] = []
    await take_turn(
        order, first, "first", INTERACTIVE
    )  # opens the state; holds the place
    background = asyncio.create_task(take_turn(order, second, "background", BACKGROUND))
    await asyncio.sleep(0.02)  # queued in Redis before the direct call
    direct = asyncio.create_task(take_turn(order, third, "direct", INTERACTIVE))
    await asyncio.gather(background, direct)
    assert order == ["first", "direct", "background"]
    for pacer in (first, second, third):
        await pacer.aclose()


async def test_unreachable_redis_is_a_clear_error_and_sends_nothing(
    fake: FakeBioTorrents,
) -> None:
    pacer = RedisPacer(f"redis://127.0.0.1:{free_port()}/0", rate_limit=RULE)
    async with BioTorrentsClient(
        fake.token, base_url=fake.url, pacer=pacer, retry=RetryPolicy.none()
    ) as client:
        started = time.monotonic()
        with pytest.raises(SharedStoreError, match="nothing was sent"):
            await client.index()
    assert time.monotonic() - started < 6
    assert fake.requests == []
    await pacer.aclose()


async def test_an_outage_and_a_restart_mid_run(fake: FakeBioTorrents, key: str) -> None:
    if not os.environ.get("BIOTORRENTS_TEST_REDIS_URL") and not _has_redis():
        pytest.skip("redis-server is not installed")
    port = free_port()
    with redis_server(port) as url:
        pacer = RedisPacer(url, rate_limit=RULE, key=key)
        client = BioTorrentsClient(
            fake.token, base_url=fake.url, pacer=pacer, retry=RetryPolicy.none()
        )
        await client.users.search("a", page=1)
        await client.users.search("a", page=2)
    # Redis is gone: a clear error, quickly, and nothing sent.
    sent = len(fake.requests)
    with pytest.raises(SharedStoreError):
        await client.users.search("a", page=3)
    assert len(fake.requests) == sent
    with redis_server(port):
        # A restarted Redis has no state: nobody sends for one window, so the
        # two places just used are not handed out again at once.
        started = time.monotonic()
        await client.users.search("a", page=4)
        assert time.monotonic() - started >= RULE.window * 0.9
        await asyncio.gather(*(client.users.search("a", page=p) for p in range(5, 9)))
        await client.aclose()
        await pacer.aclose()
    assert rejected(fake) == 0


def _has_redis() -> bool:
    return shutil.which("redis-server") is not None


def test_from_env_leases_places_for_the_clients_timeout(redis_url: str) -> None:
    client = BioTorrentsClient.from_env(
        {"BIOTORRENTS_TOKEN": "t0ken-value", "BIOTORRENTS_REDIS_URL": redis_url},
        timeout=60,
    )
    pacer = client._owned_pacer
    assert isinstance(pacer, RedisPacer)
    window = RateLimit.default().window
    assert pacer._lease_ms == round((60 + window) * 1000)


async def test_two_cli_processes_share_one_allowance(
    redis_url: str, fake: FakeBioTorrents
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BIOTORRENTS_")},
        "BIOTORRENTS_BASE_URL": fake.url,
        "BIOTORRENTS_COOKIES": "session=fake-session-kestrel; userid=2",
    }
    # The key comes from the account (the userid cookie): all three share it.
    commands = [
        ("search", "a", "--all"),
        ("inbox", "--all"),
        ("posts", "2", "--all"),
    ]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "biotorrents_async",
            *command,
            "--json",
            "--rate-limit",
            f"2/{RULE.per}",
            "--redis",
            redis_url,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        for command in commands
    ]
    errors = await asyncio.wait_for(
        asyncio.gather(*(p.communicate() for p in procs)), 60
    )
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert len(fake.requests) >= 9  # every page of each listing
    assert rejected(fake) == 0


async def test_a_shorter_pause_never_shortens_a_longer_one(
    redis_url: str, key: str
) -> None:
    rule = RateLimit(2, 0.05, margin=0)
    pacer = RedisPacer(redis_url, rate_limit=rule, key=key)
    async with pacer.slot():  # past the fresh state's hold
        pass
    await pacer.pause(0.6)
    await pacer.pause(0.05)
    started = time.monotonic()
    async with pacer.slot():
        waited = time.monotonic() - started
    assert waited > 0.45
    await pacer.aclose()


async def test_from_env_keys_the_allowance_by_account(
    redis_url: str, fake: FakeBioTorrents
) -> None:
    """Processes of one account share one allowance; other accounts keep theirs."""
    import redis.asyncio

    prefix = f"test-{uuid.uuid4().hex[:8]}"
    clients = []
    for user in (2, 3, 2):
        cookies = fake.add_session(user)
        env = {
            "BIOTORRENTS_BASE_URL": fake.url,
            "BIOTORRENTS_COOKIES": f"session={cookies['session']}; userid={user}",
            "BIOTORRENTS_REDIS_URL": redis_url,
            "BIOTORRENTS_RATE_LIMIT": "2/0.2",
        }
        client = BioTorrentsClient.from_env(env)
        pacer = client._owned_pacer
        assert isinstance(pacer, RedisPacer)
        # Apart from other tests' keys on this Redis (the CLI tests use user 2).
        pacer._keys = [k.replace("{biotorrents:", f"{{{prefix}:") for k in pacer._keys]
        clients.append(client)
    try:
        for client in clients:
            await client.index()
        r = redis.asyncio.from_url(redis_url)
        try:
            keys = {k.decode() async for k in r.scan_iter(match=f"{{{prefix}:*")}
        finally:
            await r.aclose()
        tags = {k.split("}", 1)[0] + "}" for k in keys}
        assert tags == {f"{{{prefix}:user:2}}", f"{{{prefix}:user:3}}"}
    finally:
        for client in clients:
            await client.aclose()


def test_from_env_keeps_a_pacer_you_give_it(redis_url: str) -> None:
    mine = LocalPacer(RULE)
    client = BioTorrentsClient.from_env(
        {"BIOTORRENTS_TOKEN": "t0ken-value", "BIOTORRENTS_REDIS_URL": redis_url},
        pacer=mine,
    )
    assert client._owned_pacer is None
    assert client._session.pacer is mine


async def test_a_cancelled_head_wakes_the_next_local_waiter(
    redis_url: str, key: str
) -> None:
    rule = RateLimit(1, 0.1, margin=0)
    pacer = RedisPacer(redis_url, rate_limit=rule, key=key)
    order: list[str] = []

    holder = pacer.slot()
    await holder.__aenter__()
    head = asyncio.create_task(take_turn(order, pacer, "head"))
    await asyncio.sleep(0.05)  # head first in the local queue
    behind = asyncio.create_task(take_turn(order, pacer, "behind"))
    await asyncio.sleep(0.05)
    head.cancel()
    await asyncio.gather(head, return_exceptions=True)
    await holder.__aexit__(None, None, None)
    async with asyncio.timeout(3):
        await behind
    assert order == ["behind"]
    await pacer.aclose()


async def test_a_process_whose_waiters_gave_up_leaves_the_shared_queue(
    redis_url: str, key: str
) -> None:
    rule = RateLimit(1, 0.1, margin=0)
    # A long heartbeat: a forgotten entry would stand in the queue for 5 s.
    holder, quitter, waiter = (
        RedisPacer(redis_url, rate_limit=rule, key=key, heartbeat=5.0) for _ in range(3)
    )
    slot = holder.slot()
    await slot.__aenter__()
    gave_up = asyncio.create_task(quitter.slot().__aenter__())
    await asyncio.sleep(0.1)  # first in the shared queue
    waiting = asyncio.create_task(waiter.slot().__aenter__())
    await asyncio.sleep(0.1)
    gave_up.cancel()
    await asyncio.gather(gave_up, return_exceptions=True)
    await slot.__aexit__(None, None, None)
    started = time.monotonic()
    async with asyncio.timeout(10):
        await waiting
    # Served one window after the holder's answer, not after the quitter's
    # heartbeat ran out.
    assert time.monotonic() - started < 2.5
    for pacer in (holder, quitter, waiter):
        await pacer.aclose()


async def test_a_waiter_is_cancelled_at_once_and_takes_no_place(
    redis_url: str, key: str
) -> None:
    """A cancellation that lands during a Redis command is not lost."""
    rule = RateLimit(1, 0.1, margin=0)
    pacer = RedisPacer(redis_url, rate_limit=rule, key=key)
    holder = pacer.slot()
    await holder.__aenter__()  # the only place, leased for request_timeout
    served: list[int] = []

    async def wait(n: int) -> None:
        async with pacer.slot():
            served.append(n)

    for n in range(40):
        task = asyncio.create_task(wait(n))
        await asyncio.sleep(0.002 * (n % 10))  # at varied points of its polls
        task.cancel()
        async with asyncio.timeout(2):
            await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
    assert served == []
    await holder.__aexit__(None, None, None)
    # With the place free, some are granted just as they are cancelled: each
    # gives its lease back, so none is held for a whole lease.
    for n in range(16):
        await asyncio.sleep(rule.window + 0.01)  # the place is free
        task = asyncio.create_task(wait(n))
        await asyncio.sleep(0.0005 * (n % 4))  # while its script runs, or after
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    async with asyncio.timeout(2), pacer.slot():
        pass
    await pacer.aclose()


async def test_closing_a_from_env_client_closes_its_redis_connections(
    redis_url: str, fake: FakeBioTorrents
) -> None:
    import redis.asyncio

    probe = redis.asyncio.from_url(redis_url)

    async def connections() -> int:
        return len(await probe.client_list())

    try:
        before = await connections()
        client = BioTorrentsClient.from_env(
            {
                "BIOTORRENTS_BASE_URL": fake.url,
                "BIOTORRENTS_TOKEN": fake.token,
                "BIOTORRENTS_REDIS_URL": redis_url,
                "BIOTORRENTS_RATE_LIMIT": "2/0.2",
            }
        )
        await client.index()
        assert await connections() > before
        await client.aclose()
        assert await connections() == before  # the pacer it made is closed too
    finally:
        await probe.aclose()


async def test_a_place_given_back_unused_is_free_at_once(
    redis_url: str, key: str
) -> None:
    # A call refused before sending (the client stopped after an auth failure)
    # gives its place back: nobody waits a window for a request never sent.
    rule = RateLimit(1, 1.0, margin=0)
    pacer = RedisPacer(redis_url, rate_limit=rule, key=key)
    async with pacer.slot():
        pass  # the fresh state's hold is over; this one was sent
    await asyncio.sleep(rule.window)
    slot = pacer.slot()
    async with slot:
        slot.unused()
    started = time.monotonic()
    async with asyncio.timeout(5), pacer.slot():
        waited = time.monotonic() - started
    assert waited < rule.window / 2
    await pacer.aclose()


async def test_background_is_passed_over_a_bounded_number_of_times(
    redis_url: str, key: str
) -> None:
    rule = RateLimit(1, 0.3, margin=0)
    holder, crawler, bot = (
        RedisPacer(redis_url, rate_limit=rule, key=key) for _ in range(3)
    )
    order: list[str] = []
    await take_turn(
        order, holder, "first", INTERACTIVE
    )  # opens the state; holds the place
    background = asyncio.create_task(
        take_turn(order, crawler, "background", BACKGROUND)
    )
    await asyncio.sleep(0.05)  # the oldest waiter, in another process
    direct = [
        asyncio.create_task(take_turn(order, bot, f"direct {n}", INTERACTIVE))
        for n in range(6)
    ]
    await asyncio.gather(background, *direct)
    # Direct calls go first, but never more than MAX_BYPASS of them in a row.
    assert order.index("background") == 1 + MAX_BYPASS
    for pacer in (holder, crawler, bot):
        await pacer.aclose()


async def test_a_long_wait_keeps_its_turn_across_processes(
    redis_url: str, key: str
) -> None:
    # The first place frees in 1.5 s, far beyond the 0.2 s heartbeat: the first
    # waiter must keep checking in, or it drops out and the later one goes first.
    rule = RateLimit(1, 1.5, margin=0)
    holder, early, late = (
        RedisPacer(redis_url, rate_limit=rule, key=key, heartbeat=0.2) for _ in range(3)
    )
    order: list[str] = []
    await take_turn(order, holder, "first")  # opens the state; holds the place 1.5 s
    first_waiter = asyncio.create_task(take_turn(order, early, "early"))
    await asyncio.sleep(0.5)
    second_waiter = asyncio.create_task(take_turn(order, late, "late"))
    await asyncio.gather(first_waiter, second_waiter)
    assert order == ["first", "early", "late"]
    for pacer in (holder, early, late):
        await pacer.aclose()


# --- state lost or restored stale, and grants that arrive late ----------------------


def _start_redis(port: int, folder: str) -> subprocess.Popen[bytes]:
    """A redis-server that loads (and can SAVE) ``folder``/dump.rdb."""
    proc = subprocess.Popen(  # noqa: S603 - our own arguments
        [
            shutil.which("redis-server") or "redis-server",
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", folder),
            *("--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.02)


async def test_a_restore_from_a_stale_dump_holds_everyone_a_window(
    key: str, tmp_path: Path
) -> None:
    if not os.environ.get("BIOTORRENTS_TEST_REDIS_URL") and not _has_redis():
        pytest.skip("redis-server is not installed")
    import redis.asyncio

    rule = RateLimit(2, 1.0, margin=0)
    port = free_port()
    proc = _start_redis(port, str(tmp_path))
    url = f"redis://127.0.0.1:{port}/0"
    pacer = RedisPacer(url, rate_limit=rule, key=key)
    try:
        async with pacer.slot():  # a first use waits one window, then sends
            pass
        await asyncio.sleep(rule.window)
        admin = redis.asyncio.from_url(url)
        await admin.save()  # the dump: state, and no place held
        await admin.aclose()
        for _ in range(2):  # both places of the window, after the dump
            async with pacer.slot():
                pass
        proc.kill()  # kill -9: what happened after the dump is lost
        proc.wait(10)
        proc = _start_redis(port, str(tmp_path))
        started = time.monotonic()
        async with asyncio.timeout(10):
            while True:  # the first command after the restart may see it go
                try:
                    async with pacer.slot():
                        break
                except SharedStoreError:
                    await asyncio.sleep(0.05)
        # The restored state is another server run's: nobody sends for a
        # window, so the two places used after the dump are not given again.
        assert time.monotonic() - started >= rule.window * 0.9
    finally:
        await pacer.aclose()
        proc.kill()
        proc.wait(10)


async def test_an_eviction_of_the_places_alone_holds_everyone_a_window(
    redis_url: str, key: str
) -> None:
    import redis.asyncio

    rule = RateLimit(2, 1.0, margin=0)
    pacer = RedisPacer(redis_url, rate_limit=rule, key=key)
    async with pacer.slot():
        pass
    await asyncio.sleep(rule.window)
    for _ in range(2):
        async with pacer.slot():
            pass
    admin = redis.asyncio.from_url(redis_url)
    try:
        # An eviction policy took the held places but kept the rest.
        assert await admin.delete(pacer._keys[0]) == 1
    finally:
        await admin.aclose()
    started = time.monotonic()
    async with asyncio.timeout(5), pacer.slot():
        waited = time.monotonic() - started
    assert waited >= rule.window * 0.9
    await pacer.aclose()


async def test_a_grant_that_arrives_after_its_lease_is_asked_for_again(
    redis_url: str, key: str
) -> None:
    rule = RateLimit(1, 0.2, margin=0)
    # Paused between the grant and sending: its lease (0.1 + 0.2 s) runs out.
    frozen = RedisPacer(redis_url, rate_limit=rule, key=key, request_timeout=0.1)
    other = RedisPacer(redis_url, rate_limit=rule, key=key, request_timeout=10)
    async with other.slot():
        pass
    await asyncio.sleep(rule.window)  # the fresh state's hold is over
    original = frozen._eval
    delayed = False

    async def late(*args: str | int) -> list[int]:
        nonlocal delayed
        result = await original(*args)
        if args[0] == "acquire" and result[0] == 1 and not delayed:
            delayed = True
            await asyncio.sleep(0.6)  # SIGSTOP, a VM pause, a blocking call
        return result

    frozen._eval = late  # type: ignore[method-assign]
    spans: dict[str, tuple[float, float]] = {}

    async def hold(name: str, pacer: RedisPacer, after: float, length: float) -> None:
        await asyncio.sleep(after)
        async with pacer.slot():
            begun = time.monotonic()
            await asyncio.sleep(length)
        spans[name] = (begun, time.monotonic())

    async with asyncio.timeout(10):
        # The other process asks once the frozen one's lease has expired, and
        # gets the place; the frozen one wakes up while it is in use.
        await asyncio.gather(
            hold("frozen", frozen, 0, 0), hold("other", other, 0.4, 0.8)
        )
    assert delayed
    # Never both at once with one place: the late grant was given back.
    assert spans["frozen"][0] >= spans["other"][1]
    await frozen.aclose()
    await other.aclose()


async def test_redis_store_close_waits_for_a_save_in_flight(
    redis_url: str, key: str
) -> None:
    import redis.asyncio

    store = RedisStore(redis_url, prefix=f"{key}:")
    admin = redis.asyncio.from_url(redis_url)
    try:
        await admin.execute_command("CLIENT", "PAUSE", "300", "WRITE")
        save = asyncio.create_task(store.save("inbox", {"v": 2, "n": 1}))
        await asyncio.sleep(0.05)
        save.cancel()  # the caller gives up; the save is still kept
        await asyncio.gather(save, return_exceptions=True)
        await store.aclose()  # waits for it
        assert await admin.get(f"{key}:inbox") is not None
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()


async def test_a_frozen_redis_is_a_clear_error_within_the_socket_timeout() -> None:
    # A Redis that accepts and never answers (frozen, or a black-holed proxy):
    # the short socket timeouts of a URL-made connection end the wait, with
    # every redis-py the package allows (pyproject's floor is run by hand).
    async def swallow(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await reader.read(1024):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pacer = RedisPacer(f"redis://127.0.0.1:{port}/0", rate_limit=RULE)
    started = time.monotonic()
    try:
        async with asyncio.timeout(40):
            with pytest.raises(SharedStoreError):
                async with pacer.slot():
                    pass
        # 5 s per attempt; redis-py 6 and later try a timed-out command again.
        assert time.monotonic() - started < 25
    finally:
        await pacer.aclose()
        server.close()
        await server.wait_closed()

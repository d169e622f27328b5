"""How much of the rate allowance each pacing strategy gets, and at what cost.

One command measures every row in the same run, against the fake server with
the real server's model scaled down ``--scale`` times (default 1:20, so the
stated rule is 2 per 0.3 s): a fixed window opens when the first counted
request arrives and closes between ``per - per/6`` and ``per`` after it (the
real 6 s window lasts 5 to 6 s, memcached's whole-second expiry), plus up to
``per/60`` when the expiry tick runs late; latency 5-50 ms, scaled the same way.
Every call reads a distinct page (``users.search("a", page=N)``), so nothing is
coalesced, and no strategy retries.

Rows at 1, 10 and 100 callers in one process, each with its own fake server:

- this client's pacing: ``BioTorrentsClient(..., rate_limit=RateLimit(2, per))``;
- naive: ``aiolimiter.AsyncLimiter(2, per)`` in front of plain aiohttp;
- one request per window: ``AsyncLimiter(1, per)`` in front of plain aiohttp.

And two rows of 4 OS processes x 10 callers on one account, against one fake
server run in this process (the workers, ``_throughput_worker.py``, get its URL
and token):

- shared: every process paces through ``RedisPacer`` with the same key on one
  Redis (``--redis URL``, or a throwaway ``redis-server`` started on a free
  loopback port with ``--save "" --appendonly no`` and stopped at the end);
- unshared: every process with its own in-process pacer (the default).

Startup is not counted. RedisPacer holds everyone for one window the first time
a key is used (it cannot know what was sent just before), so this script warms
a fresh key up first: it takes one place through a RedisPacer and gives it back
unused, which waits out that hold and sends nothing. The workers then build
their clients and report ready, and all are told to start at once. In every
row, what is measured begins ``--warmup`` windows after the first request
reached the server, which also leaves out connection setup and the first burst.

Share of the nominal allowance is ``accepted / (2 * elapsed / per)``. Rather
than counting the requests in a fixed interval (which is off by up to a pair of
requests, 2.5 % of 40 windows, depending on where the interval cuts the
pattern), ``elapsed`` runs from the first accepted arrival after the warm-up to
the accepted arrival that follows the last one counted, over an even number of
gaps: for a client that sends a pair every ``c`` seconds it is exactly
``per / c``. Rejections are counted over the whole run, warm-up included.

A client that is never rejected holds each place for ``RateLimit.window`` =
``per + per/60`` after the answer, so its ceiling is about
``per / (window + latency)`` = 0.98 of the nominal allowance; windows shorter
than ``per`` let a strategy that risks rejections exceed 1.

    python benchmarks/throughput.py [--scale 20] [--windows 40] [--quick]
                                    [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
from aiolimiter import AsyncLimiter

from biotorrents_async import (
    BioTorrentsClient,
    RateLimit,
    RateLimitError,
    RedisPacer,
    RetryPolicy,
)
from biotorrents_async.testing import FakeBioTorrents

WORKER = Path(__file__).with_name("_throughput_worker.py")
REAL_PER = 6.0  # the real rule: 2 requests per 6 s
REAL_LATENCY = (0.005, 0.05)
CALLERS = (1, 10, 100)
PROCESSES = 4
PROCESS_CALLERS = 10
TAIL = 2  # windows run past the measured ones, to find the next arrival
TIMEOUT = 5.0  # seconds per request (and RedisPacer's request_timeout)

CLIENT = "biotorrents_async pacing, RateLimit(2, per)"
NAIVE = "naive AsyncLimiter(2, per) + aiohttp"
ONE = "one per window, AsyncLimiter(1, per) + aiohttp"
STRATEGIES = (CLIENT, NAIVE, ONE)
SHARED = "shared: RedisPacer, one key on one Redis"
UNSHARED = "unshared: own in-process pacer each"


@dataclass
class Params:
    scale: float
    windows: int
    warmup: int
    seed: int

    @property
    def per(self) -> float:
        return REAL_PER / self.scale

    @property
    def latency(self) -> tuple[float, float]:
        low, high = REAL_LATENCY
        return (low / self.scale, high / self.scale)

    @property
    def rule(self) -> RateLimit:
        return RateLimit(2, self.per)

    @property
    def run_windows(self) -> int:
        """Windows from the first request to the end of the run."""
        return self.warmup + self.windows + TAIL


@dataclass
class Row:
    strategy: str
    callers: str
    accepted: int  # accepted arrivals counted in the share
    elapsed: float  # seconds they span
    share: float
    rejected: int  # whole run
    notes: list[str] = field(default_factory=list)


def measure(fake: FakeBioTorrents, since: float, params: Params) -> Row:
    """Share of the allowance and rejections, from the fake's request log."""
    log = [r for r in fake.requests if r.time >= since]
    rejected = sum(r.outcome == "rate-limited" for r in log)
    others = Counter(r.outcome for r in log if r.outcome not in ("ok", "rate-limited"))
    notes = [f"{n} {outcome}" for outcome, n in others.items()]
    ok = sorted(r.time for r in log if r.outcome == "ok")
    if not ok:
        return Row("", "", 0, 0.0, 0.0, rejected, [*notes, "nothing accepted"])
    begin = log[0].time + params.warmup * params.per
    end = begin + params.windows * params.per
    first = next((i for i, t in enumerate(ok) if t >= begin), len(ok))
    after = next((i for i, t in enumerate(ok) if t >= end), len(ok) - 1)
    gaps = after - first
    gaps -= gaps % 2  # whole periods of a paired pattern
    if gaps <= 0:
        return Row("", "", 0, 0.0, 0.0, rejected, [*notes, "too few accepted"])
    elapsed = ok[first + gaps] - ok[first]
    share = gaps / (params.rule.requests * elapsed / params.per)
    return Row("", "", gaps, elapsed, share, rejected, notes)


def new_fake(params: Params, seed: int) -> FakeBioTorrents:
    # expiry_resolution and late_tick default to per/6 and per/60: the real model.
    return FakeBioTorrents(rate_limit=params.rule, latency=params.latency, seed=seed)


async def run_until_measured(fake: FakeBioTorrents, since: float, p: Params) -> None:
    """Return once the run has lasted ``run_windows`` past its first request."""
    length = p.run_windows * p.per
    await asyncio.sleep(length)
    first = next((r.time for r in fake.requests if r.time >= since), None)
    if first is None:
        raise RuntimeError("no request reached the fake server")
    await asyncio.sleep(max(0.0, first + length - time.monotonic()))


# --- one process: 1, 10 and 100 callers ---------------------------------------------


async def one_process(strategy: str, callers: int, p: Params, seed: int) -> Row:
    async with new_fake(p, seed) as fake, contextlib.AsyncExitStack() as stack:
        pages = itertools.count(1)
        call: Callable[[], Awaitable[None]]
        if strategy == CLIENT:
            client = await stack.enter_async_context(
                BioTorrentsClient(
                    fake.token,
                    base_url=fake.url,
                    rate_limit=p.rule,
                    timeout=TIMEOUT,
                    retry=RetryPolicy.none(),
                )
            )

            async def call() -> None:
                with contextlib.suppress(RateLimitError):
                    await client.users.search("a", page=next(pages))

        else:
            # The peers' way: bare aiohttp behind an aiolimiter bucket.
            session = await stack.enter_async_context(aiohttp.ClientSession())
            limiter = AsyncLimiter(2 if strategy == NAIVE else 1, p.per)
            headers = {"Authorization": f"Bearer {fake.token}"}
            url = f"{fake.url}/api.php"

            async def call() -> None:
                async with limiter:
                    params = {"action": "usersearch", "search": "a"}
                    params["page"] = str(next(pages))
                    async with session.get(url, params=params, headers=headers) as r:
                        await r.read()

        async def caller() -> None:
            while True:
                await call()

        since = time.monotonic()
        tasks = [asyncio.create_task(caller()) for _ in range(callers)]
        try:
            await run_until_measured(fake, since, p)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if not isinstance(r, asyncio.CancelledError)]
        if errors:
            raise RuntimeError(f"{strategy}, {callers} callers: {errors[0]!r}")
    row = measure(fake, since, p)
    row.strategy, row.callers = strategy, str(callers)
    return row


# --- four processes on one account ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Run a throwaway redis-server on a free loopback port; yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", folder]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def warm_up(redis_url: str, key: str, rule: RateLimit) -> float:
    """Spend a fresh key's one-window startup hold without sending anything."""
    pacer = RedisPacer(redis_url, rate_limit=rule, key=key, request_timeout=TIMEOUT)
    started = time.monotonic()
    slot = pacer.slot()
    async with slot:
        slot.unused()
    await pacer.aclose()
    return time.monotonic() - started


async def processes(name: str, p: Params, seed: int, redis_url: str | None) -> Row:
    notes = []
    async with new_fake(p, seed) as fake:
        shared: list[str] = []
        if redis_url is not None:
            key = f"throughput-{uuid.uuid4().hex[:12]}"
            held = await warm_up(redis_url, key, p.rule)
            notes.append(f"fresh-key hold waited out before the start: {held:.3f} s")
            shared = [redis_url, key]
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKER),
                fake.url,
                fake.token,
                repr(p.per),
                str(PROCESS_CALLERS),
                str(1 + n * 10_000_000),  # distinct pages in every process
                repr(TIMEOUT),
                *shared,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for n in range(PROCESSES)
        ]
        try:
            for worker in workers:
                assert worker.stdout is not None
                line = await asyncio.wait_for(worker.stdout.readline(), 60)
                if line.strip() != b"ready":
                    raise RuntimeError(f"{name}: a worker failed to start: {line!r}")
            since = time.monotonic()
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write(b"go\n")
            await asyncio.gather(*(w.stdin.drain() for w in workers if w.stdin))
            await run_until_measured(fake, since, p)
            outputs = await asyncio.wait_for(
                asyncio.gather(*(w.communicate(b"stop\n") for w in workers)), 60
            )
        finally:
            for worker in workers:
                if worker.returncode is None:
                    worker.kill()
                    await worker.wait()
        if any(w.returncode for w in workers):
            raise RuntimeError(f"{name}: a worker failed")
        seen: Counter[str] = Counter()
        for out, _ in outputs:
            seen.update(json.loads(out.decode().splitlines()[-1]))
        errors = {k: n for k, n in seen.items() if k.startswith("error:")}
        if errors:
            notes.append(f"workers' errors: {errors}")
    row = measure(fake, since, p)
    row.strategy, row.callers = name, f"{PROCESSES} x {PROCESS_CALLERS}"
    row.notes = notes + row.notes
    return row


# --- the run --------------------------------------------------------------------------


async def main(p: Params, redis: str | None) -> tuple[list[Row], list[str]]:
    rows = []
    notes = []
    seeds = itertools.count(p.seed)
    for strategy in STRATEGIES:
        for callers in CALLERS:
            rows.append(await one_process(strategy, callers, p, next(seeds)))
    with contextlib.ExitStack() as stack:
        if redis is None:
            try:
                redis = stack.enter_context(redis_server())
            except FileNotFoundError:
                notes.append(
                    "redis-server is not installed (and no --redis URL given): "
                    "the shared row is skipped"
                )
        if redis is not None:
            rows.append(await processes(SHARED, p, next(seeds), redis))
    rows.append(await processes(UNSHARED, p, next(seeds), None))
    return rows, notes


def table(rows: Sequence[Row]) -> str:
    by = {(r.strategy, r.callers): r for r in rows}
    out = [
        "| strategy | 1 caller | 10 callers | 100 callers | rejected (1 / 10 / 100) |",
        "|---|---|---|---|---|",
    ]
    for strategy in STRATEGIES:
        cells = [by[strategy, str(n)] for n in CALLERS]
        shares = " | ".join(f"{r.share:.3f}" for r in cells)
        rejected = " / ".join(str(r.rejected) for r in cells)
        out.append(f"| {strategy} | {shares} | {rejected} |")
    out += [
        "",
        f"| {PROCESSES} processes x {PROCESS_CALLERS} callers, one account "
        "| share | rejected |",
        "|---|---|---|",
    ]
    for strategy in (SHARED, UNSHARED):
        for r in rows:
            if r.strategy == strategy:
                out.append(f"| {strategy} | {r.share:.3f} | {r.rejected} |")
    return "\n".join(out)


def verdicts(rows: Sequence[Row]) -> list[str]:
    def check(name: str, picked: list[Row], target: float) -> str:
        if not picked:
            return f"{name}: not measured"
        met = all(r.share >= target and r.rejected == 0 for r in picked)
        worst = min(r.share for r in picked)
        rejected = sum(r.rejected for r in picked)
        return (
            f"{name} >= {target:.2f} with 0 rejections: "
            f"{'met' if met else 'NOT met'} (lowest {worst:.3f}, {rejected} rejected)"
        )

    return [
        check("this client", [r for r in rows if r.strategy == CLIENT], 0.95),
        check("shared RedisPacer", [r for r in rows if r.strategy == SHARED], 0.93),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=20, help="time scale-down (20: per = 0.3 s)"
    )
    parser.add_argument("--windows", type=int, default=40, help="windows measured")
    parser.add_argument("--warmup", type=int, default=2, help="windows not measured")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redis", help="use this Redis instead of a throwaway one")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    if args.quick:
        args.windows, args.warmup = 6, 1
    params = Params(args.scale, args.windows, args.warmup, args.seed)
    started = time.monotonic()
    rows, notes = asyncio.run(main(params, args.redis))
    took = time.monotonic() - started
    per, (low, high) = params.per, params.latency
    rule = params.rule
    print(
        f"scale 1:{args.scale:g}: rule 2 per {per:g} s (real: 2 per 6 s); "
        f"server windows {per - per / 6:.3f}-{per:.3f} s + late tick "
        f"<= {per / 60:.4f} s; client holds a place {rule.window:.4f} s after "
        f"its answer"
    )
    print(
        f"latency {low * 1000:.2f}-{high * 1000:.2f} ms; {params.windows} windows "
        f"measured after {params.warmup} warm-up windows; seed {params.seed}; "
        f"ceiling without rejections ~{per / (rule.window + (low + high) / 2):.3f}"
    )
    print()
    print(table(rows))
    print()
    for line in verdicts(rows):
        print(line)
    for note in notes:
        print(f"note: {note}")
    for r in rows:
        for note in r.notes:
            print(f"note ({r.strategy}, {r.callers}): {note}")
    print(f"run time {took:.0f} s")
    Path(__file__).with_suffix(".last.json").write_text(
        json.dumps({"params": asdict(params), "rows": [asdict(r) for r in rows]})
    )

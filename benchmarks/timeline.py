"""Draw docs/img/timeline.png: requests against the server's windows, two ways.

A real run against the fake server with the rule scaled 1:10 (2 requests per
window; each window closes 0.5 to 0.6 s after it opens, like the real server's
5 to 6 s), with a few concurrent callers. Top: this client's pacing. Bottom: a
naive token bucket, ``aiolimiter.AsyncLimiter(2, per)`` in front of plain aiohttp.
Times on the picture are multiplied back to the real scale.

    python benchmarks/timeline.py [--out docs/img/timeline.png] [--seconds 5]

Needs matplotlib (``pip install ".[docs]"``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter

from biotorrents_async import BioTorrentsClient, RateLimit, RetryPolicy
from biotorrents_async.testing import FakeBioTorrents

SCALE = 0.1  # 1 s on the fake is 10 s for real
PER = 6.0 * SCALE  # the rule the server states: 2 per 6 s
# The fake models the real windows: 0.5 to 0.6 s here (plus a late tick), as
# memcached's whole-second expiry makes the real 6 s windows last 5 to 6 s.
FAKE_RULE = RateLimit(2, PER)
LATENCY = (0.005, 0.04)  # 50-400 ms for real
CALLERS = 2
THINK = 10.0 * SCALE
OUT = Path(__file__).resolve().parent.parent / "docs" / "img" / "timeline.png"


def watch_windows(fake: FakeBioTorrents) -> list[tuple[float, float]]:
    """Record each window the fake opens as ``(opened, closes)``.

    The fake keeps its windows private; this reads them for the picture only.
    """
    windows = fake._windows
    assert windows is not None
    original = windows.allow
    seen: list[tuple[float, float]] = []

    def allow(user_id: int, now: float) -> bool:
        before = windows._counters.get(user_id)
        expires_before = before[0] if before else None
        allowed = original(user_id, now)
        expires = windows._counters[user_id][0]
        if expires != expires_before:
            seen.append((now, expires))
        return allowed

    windows.allow = allow  # type: ignore[method-assign]
    return seen


def tracer(sent: list[tuple[str, float]], answered: dict[str, float]) -> Any:
    """An aiohttp trace config noting when each request leaves and its answer ends."""
    trace = aiohttp.TraceConfig()
    counts: Counter[str] = Counter()

    async def on_start(_s: Any, ctx: SimpleNamespace, params: Any) -> None:
        page = params.url.query.get("page", "")
        counts[page] += 1
        ctx.key = f"{page}#{counts[page]}"
        sent.append((ctx.key, time.monotonic()))

    async def on_end(_s: Any, ctx: SimpleNamespace, _params: Any) -> None:
        answered[ctx.key] = time.monotonic()

    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    trace.on_request_exception.append(on_end)
    return trace


async def run(strategy: str, seconds: float, seed: int) -> dict[str, Any]:
    """Drive one fake with ``CALLERS`` tasks for ``seconds``; return the record."""
    sent: list[tuple[str, float]] = []
    answered: dict[str, float] = {}
    pages = itertools.count(1)
    async with (
        FakeBioTorrents(rate_limit=FAKE_RULE, latency=LATENCY, seed=seed) as fake,
        aiohttp.ClientSession(trace_configs=[tracer(sent, answered)]) as session,
    ):
        windows = watch_windows(fake)
        if strategy == "client":
            client = BioTorrentsClient(
                fake.token,
                base_url=fake.url,
                session=session,
                rate_limit=RateLimit(2, PER),
                retry=RetryPolicy.none(),
            )

            async def call() -> None:
                with contextlib.suppress(Exception):
                    await client.users.search("a", page=next(pages))

        else:
            limiter = AsyncLimiter(2, PER)
            headers = {"Authorization": f"Bearer {fake.token}"}

            async def call() -> None:
                async with limiter:
                    params = {"action": "usersearch", "search": "a"}
                    params["page"] = str(next(pages))
                    async with session.get(
                        f"{fake.url}/api.php", params=params, headers=headers
                    ) as resp:
                        await resp.read()

        rng = random.Random(seed)

        async def caller() -> None:
            # A bot's demand comes in bursts: a call, then 0 to 10 s (real) of
            # thinking. The bucket refills while callers think, then bursts.
            while True:
                await call()
                await asyncio.sleep(rng.uniform(0, THINK))

        start = time.monotonic()
        tasks = [asyncio.create_task(caller()) for _ in range(CALLERS)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if strategy == "client":
            await client.aclose()
        # The fake's log in arrival order; match each entry to the client's send.
        counts: Counter[str] = Counter()
        arrivals = {}
        for req in fake.requests:
            page = req.params.get("page", "")
            counts[page] += 1
            arrivals[f"{page}#{counts[page]}"] = (req.time, req.outcome)
    rows = []
    for key, when in sent:
        if key in arrivals and key in answered:
            arrived, outcome = arrivals[key]
            rows.append((when, arrived, answered[key], outcome))
    return {"start": start, "end": start + seconds, "rows": rows, "windows": windows}


def draw(results: dict[str, dict[str, Any]], out: Path) -> None:
    """Draw both runs, one panel each, on a shared real-scale time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    titles = {
        "client": "biotorrents_async: 2 places, each held from sending\n"
        "until one window after the answer",
        "naive": "naive token bucket: aiolimiter.AsyncLimiter(2, 6 s)\n"
        "in front of plain aiohttp",
    }
    rule_window = RateLimit(2, PER).window
    fig, axes = plt.subplots(2, 1, figsize=(8.6, 7.0), sharex=True)
    for ax, (name, result) in zip(axes, results.items(), strict=True):
        t0 = result["start"]

        def real(t: float, t0: float = t0) -> float:
            return (t - t0) / SCALE

        end = real(result["end"])
        for n, (opened, closes) in enumerate(result["windows"]):
            if real(opened) > end:
                break
            ax.axvspan(
                real(opened),
                min(real(closes), end),
                color="#4c72b0" if n % 2 else "#55a868",
                alpha=0.13,
                lw=0,
            )
        rows = [r for r in result["rows"] if real(r[0]) <= end]
        ok = rejected = 0
        for y, (sent, arrived, answered, outcome) in enumerate(rows, start=1):
            counted = outcome == "ok"
            ok += counted
            rejected += outcome == "rate-limited"
            colour = "#2a7d2a" if counted else "#c0392b"
            ax.plot([real(sent), real(answered)], [y, y], color="#444", lw=1.6)
            if name == "client":
                # The place stays held for one window after the answer.
                held_until = min(real(answered + rule_window), end)
                ax.plot(
                    [real(answered), held_until],
                    [y, y],
                    color="#888",
                    lw=1,
                    ls=":",
                )
            ax.plot(
                real(arrived),
                y,
                marker="o" if counted else "X",
                color=colour,
                ms=7 if counted else 9,
                mec="white" if counted else colour,
                zorder=3,
            )
        verdict = f"{len(rows)} sent, {ok} counted, {rejected} rejected"
        ax.set_title(f"{titles[name]}\n{verdict}", fontsize=10, loc="left")
        ax.set_ylabel("request, in sending order")
        ax.set_ylim(len(rows) + 1, 0)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0, end)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel(
        "seconds, at the real scale (the run used the rule scaled 1:10)"
    )
    legend = [
        Patch(color="#55a868", alpha=0.3, label="a server window (5-6 s)"),
        Line2D([], [], color="#444", lw=1.6, label="sent → answer received"),
        Line2D([], [], color="#888", lw=1, ls=":", label="place still held"),
        Line2D(
            [], [], marker="o", color="#2a7d2a", ls="", label="arrived: counted (ok)"
        ),
        Line2D(
            [],
            [],
            marker="X",
            color="#c0392b",
            ls="",
            ms=9,
            label='arrived: rejected ("rate limit exceeded")',
        ),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


async def main(seconds: float) -> dict[str, dict[str, Any]]:
    client, naive = await asyncio.gather(
        run("client", seconds, seed=1), run("naive", seconds, seed=1)
    )
    return {"client": client, "naive": naive}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="length of each run (scaled)"
    )
    args = parser.parse_args()
    results = asyncio.run(main(args.seconds))
    draw(results, args.out)
    for name, result in results.items():
        outcomes = Counter(row[3] for row in result["rows"])
        print(f"{name:6} {dict(outcomes)}")
    print(f"wrote {args.out}")

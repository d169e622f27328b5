"""Instructions per request under valgrind: client vs bare aiohttp + json.loads.

The same two sides as overhead.py, counted instead of timed: callgrind counts the
instructions of a run of N requests and of a run of none, and the difference over
N is one request's count (client and server together, both in this process).
Counts hardly move between runs, so a change of a few per cent shows where
overhead.py's timings on a shared machine cannot. Needs ``valgrind`` (``apt-get
install valgrind``); about a minute.

    python benchmarks/instructions.py [--requests 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
from overhead import bare, client, serve

from biotorrents_async import BioTorrentsClient, RetryPolicy


async def drive(side: str, n: int) -> None:
    """Warm up both sides, then send ``n`` requests of ``side`` (overhead.py's)."""
    runner, url = await serve()
    try:
        async with (
            aiohttp.ClientSession() as session,
            BioTorrentsClient(
                "t", base_url=url, rate_limit=None, retry=RetryPolicy.none()
            ) as c,
        ):
            await bare(session, url, 50)
            await client(c, 50)
            if n:
                await (bare(session, url, n) if side == "bare" else client(c, n))
    finally:
        await runner.cleanup()


def count(side: str, n: int) -> int:
    """Instructions of a whole run of ``side`` with ``n`` requests."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--drive",
            side,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=True,
        # Fixed string hashing: the dicts' collisions are the same in every run.
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    assert found, done.stderr
    return int(found.group(1))


def main(requests: int) -> dict[str, float]:
    per = {}
    for side in ("bare", "client"):
        per[side] = (count(side, requests) - count(side, 0)) / requests
    return {
        "bare_instructions": per["bare"],
        "client_instructions": per["client"],
        "ratio": per["client"] / per["bare"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument(
        "--drive", nargs=2, metavar=("SIDE", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.drive:
        asyncio.run(drive(args.drive[0], int(args.drive[1])))
        sys.exit(0)
    if shutil.which("valgrind") is None:
        sys.exit("needs valgrind: apt-get install valgrind")
    result = main(args.requests)
    for label, key in (
        ("bare aiohttp + json.loads", "bare_instructions"),
        ("BioTorrentsClient.index()", "client_instructions"),
    ):
        print(f"{label}: {result[key]:9.0f} instructions/request")
    print(f"ratio: {result['ratio']:.3f}x")
    Path(__file__).with_suffix(".last.json").write_text(json.dumps(result))

"""Helpers shared by the benchmarks (each benchmark is one runnable script)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable


async def best_of(rounds: int, run: Callable[[], Awaitable[float]]) -> float:
    """Run ``run`` ``rounds`` times and return the median of what it returns."""
    return statistics.median([await run() for _ in range(rounds)])


def clock() -> float:
    """A monotonic clock with the best resolution."""
    return time.perf_counter()

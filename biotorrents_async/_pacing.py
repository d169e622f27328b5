"""Client-side pacing against the server's fixed-window rate limit.

The server (api-reference §2.1) opens a window when the first counted request
arrives, admits ``requests`` requests in it and rejects the rest until it expires.
The client cannot see when a request arrives, only when it was sent and when its
answer came back, so it counts each request as holding a place from the moment it
is sent until one ``window`` after its answer. Whenever fewer than ``requests``
places are held, the next caller may send. Any ``requests + 1`` consecutive
requests then arrive more than a window apart, so no server window can ever see
more than ``requests`` of them, whatever the latency and the number of callers.

:class:`Pacer` is the small interface the session uses; :class:`LocalPacer` keeps
the state in this process. A shared store for several processes can implement the
same three members.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from ._policy import RateLimit

__all__ = ["LocalPacer", "Pacer"]

logger = logging.getLogger("biotorrents_async")


class Pacer(Protocol):
    """Where a client's pacing state lives.

    ``slot()`` is held around every HTTP attempt; ``pause(seconds)`` stops every
    caller from sending for that long (the server said "rate limit exceeded").
    """

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait for a free place, hold it for one attempt, release it after."""
        ...

    def pause(self, seconds: float) -> None:
        """Let nobody send for ``seconds`` from now."""
        ...


class LocalPacer:
    """In-process pacing state shared by every task using one client.

    Waiters are served first come, first served. A cancelled waiter takes no place;
    a cancelled request gives its place back as if it had completed at that moment.

    Args:
        limit: The server's rule, or ``None`` for no pacing (Donor accounts); the
            pause after a server rejection still applies.
        clock: Monotonic seconds; injectable for tests.
        sleep: The coroutine used to wait; injectable for tests.
    """

    def __init__(
        self,
        limit: RateLimit | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._limit = limit
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._done: deque[float] = deque(maxlen=limit.requests if limit else 1)
        self._paused_until = float("-inf")
        self._queue = asyncio.Lock()  # FIFO: the holder is the next to send
        self._released = asyncio.Event()
        self.waits = 0
        """How many times a caller had to wait for a place or a pause."""

    @property
    def limit(self) -> RateLimit | None:
        """The rule being kept, or ``None``."""
        return self._limit

    def pause(self, seconds: float) -> None:
        """Let nobody send for ``seconds`` from now (never shortens a pause)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _wait_needed(self) -> float:
        now = self._clock()
        wait = self._paused_until - now
        limit = self._limit
        if limit is None:
            return wait
        if self._in_flight >= limit.requests:
            return float("inf")
        held = [t for t in self._done if t + limit.window > now]
        free_after = len(held) + self._in_flight - limit.requests
        if free_after >= 0:
            # The (free_after+1)-th oldest place frees first.
            wait = max(wait, held[free_after] + limit.window - now)
        return wait

    async def _acquire(self) -> None:
        async with self._queue:
            waited = False
            while True:
                wait = self._wait_needed()
                if wait <= 0:
                    break
                if not waited:
                    waited = True
                    self.waits += 1
                if wait == float("inf"):
                    self._released.clear()
                    await self._released.wait()
                else:
                    logger.debug("pacing: waiting %.3fs for a free slot", wait)
                    await self._sleep(wait)
            self._in_flight += 1

    def _release(self) -> None:
        self._in_flight -= 1
        self._done.append(self._clock())
        self._released.set()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a free place, hold it for one attempt, release it after."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()

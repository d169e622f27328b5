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
same two members.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Protocol

from ._policy import RateLimit

__all__ = [
    "BACKGROUND",
    "INTERACTIVE",
    "LocalPacer",
    "Pacer",
    "background",
    "current_priority",
]

logger = logging.getLogger("biotorrents_async")

#: Priority of calls made directly by the user: served first.
INTERACTIVE = 0
#: Priority of page fetches by ``iter_*`` and of calls inside
#: :meth:`BioTorrentsClient.background`: served when no direct call waits.
BACKGROUND = 1

#: The priority of calls made in the current context.
current_priority: ContextVar[int] = ContextVar(
    "biotorrents_async_priority", default=INTERACTIVE
)


@contextlib.contextmanager
def background() -> Iterator[None]:
    """Mark every call made inside the ``with`` block as background work."""
    token = current_priority.set(BACKGROUND)
    try:
        yield
    finally:
        current_priority.reset(token)


class Pacer(Protocol):
    """Where a client's pacing state lives.

    ``slot(priority)`` is held around every HTTP attempt; lower priority numbers
    go first. ``pause(seconds)`` stops every caller from sending for that long (the
    server said "rate limit exceeded").
    """

    def slot(self, priority: int = 0) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait for a free place, hold it for one attempt, release it after."""
        ...

    def pause(self, seconds: float) -> None:
        """Let nobody send for ``seconds`` from now."""
        ...


class LocalPacer:
    """In-process pacing state shared by every task using one client.

    Waiters are served by priority (:data:`INTERACTIVE` before :data:`BACKGROUND`),
    first come, first served within a priority. A cancelled waiter takes no place;
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
        # A heap of waiters; the head is the next to send.
        self._waiting: list[tuple[int, int, asyncio.Event]] = []
        self._tickets = itertools.count()
        self.waits = 0
        """How many callers had to wait for a place or a pause."""

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

    def _wake_head(self) -> None:
        if self._waiting:
            self._waiting[0][2].set()

    async def _acquire(self, priority: int) -> None:
        if not self._waiting and self._wait_needed() <= 0:
            self._in_flight += 1  # nobody queued and a place is free
            return
        entry = (priority, next(self._tickets), asyncio.Event())
        heapq.heappush(self._waiting, entry)
        waited = False
        try:
            while True:
                entry[2].clear()
                wait = (
                    self._wait_needed() if self._waiting[0] is entry else float("inf")
                )
                if wait <= 0:
                    break
                if not waited:
                    waited = True
                    self.waits += 1
                if wait == float("inf"):
                    # Not our turn, or every place is in flight: a release, or
                    # becoming the head, sets our event.
                    await entry[2].wait()
                else:
                    # Nothing can free a place sooner than the clock does.
                    logger.debug("pacing: waiting %.3fs for a free slot", wait)
                    await self._sleep(wait)
        except BaseException:
            self._waiting.remove(entry)
            heapq.heapify(self._waiting)
            self._wake_head()
            raise
        heapq.heappop(self._waiting)
        self._in_flight += 1
        self._wake_head()

    def _release(self) -> None:
        self._in_flight -= 1
        self._done.append(self._clock())
        self._wake_head()

    def slot(self, priority: int = INTERACTIVE) -> _Slot:
        """Wait for a free place, hold it for one attempt, release it after.

        Args:
            priority: :data:`INTERACTIVE` (default) or :data:`BACKGROUND`.
        """
        return _Slot(self, priority)


class _Slot:
    """``async with pacer.slot():`` without a generator on the hot path."""

    __slots__ = ("_pacer", "_priority")

    def __init__(self, pacer: LocalPacer, priority: int) -> None:
        self._pacer = pacer
        self._priority = priority

    async def __aenter__(self) -> None:
        await self._pacer._acquire(self._priority)

    async def __aexit__(self, *exc_info: object) -> None:
        self._pacer._release()

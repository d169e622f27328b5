"""Client-side pacing against the server's fixed-window rate limit.

The server (docs/server-behaviour.md, "Rate limit") opens a window when the first
counted request arrives, admits ``requests`` requests in it and rejects the rest
until it expires. The client cannot see when a request arrives, only when it was
sent and when its answer came back, so it counts each request as holding a place
from the moment it is sent until one ``window`` after its answer. Whenever fewer
than ``requests`` places are held, the next caller may send. Any ``requests + 1``
consecutive requests then arrive more than a window apart, so no server window can
ever see more than ``requests`` of them, whatever the latency and the number of
callers.

``Pacer`` is the small interface the session uses; ``LocalPacer`` keeps
the state in this process and ``RedisPacer`` shares it
between processes. Both serve waiters through a ``WaitQueue``: by priority,
first come first served within a priority, and with a bounded bypass so that
background work is never starved by a steady stream of direct calls.
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
    "MAX_BYPASS",
    "LocalPacer",
    "Pacer",
    "QueuedSlot",
    "Slot",
    "WaitQueue",
    "background",
    "current_priority",
]

logger = logging.getLogger("biotorrents_async.pacing")

#: Priority of calls made directly by the user: served first.
INTERACTIVE = 0
#: Priority of page fetches by ``iter_*``, of watch streams and of calls inside
#: ``BioTorrentsClient.background``: served when no direct call waits, but
#: never passed over more than ``MAX_BYPASS`` times in a row.
BACKGROUND = 1
#: How many grants may go to later, more urgent waiters while the oldest waiter
#: keeps waiting; the next grant then goes to the oldest. With the default rule
#: (2 per 6 s) a background call waits at most about two windows however many
#: direct calls arrive, and a direct call waits for at most one background call.
MAX_BYPASS = 3

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


class Slot(Protocol):
    """One place of the allowance, held around one HTTP attempt.

    ``async with`` waits for the place and holds it; leaving the block releases it
    (the place then stays counted for one window). ``prioritize`` lets a waiting
    slot move ahead when a more urgent caller comes to depend on it; ``unused``
    says, inside the block, that nothing was sent, so the place is given back
    without being counted.
    """

    async def __aenter__(self) -> None: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    def prioritize(self, priority: int) -> None:
        """Raise this slot's priority (a lower number) while it waits."""
        ...

    def unused(self) -> None:
        """Give the place back uncounted: no request left the machine."""
        ...


class Pacer(Protocol):
    """Where a client's pacing state lives.

    ``slot(priority)`` is held around every HTTP attempt; lower priority numbers
    go first. ``pause(seconds)`` stops every caller from sending for that long (the
    server said "rate limit exceeded").
    """

    def slot(self, priority: int = INTERACTIVE) -> Slot:
        """Return a slot to hold around one attempt."""
        ...

    async def pause(self, seconds: float) -> None:
        """Let nobody send for ``seconds`` from now."""
        ...


class Waiter:
    """One caller waiting in a ``WaitQueue``."""

    __slots__ = ("event", "live", "priority", "ticket")

    def __init__(self, priority: int, ticket: int) -> None:
        self.priority = priority
        self.ticket = ticket
        self.live = True
        self.event = asyncio.Event()


class WaitQueue:
    """Waiters by priority, then arrival, with a bounded bypass of the oldest.

    Removal and re-prioritisation are lazy (the stale heap entry is skipped when
    it surfaces), so cancelling any number of waiters costs O(log n) each.

    Args:
        max_bypass: Grants that may go to others while the oldest waiter waits.
    """

    def __init__(self, max_bypass: int = MAX_BYPASS) -> None:
        self._by_rank: list[tuple[int, int, Waiter]] = []
        self._by_age: list[tuple[int, Waiter]] = []
        self._tickets = itertools.count()
        self._live = 0
        self._bypassed = 0
        self._max_bypass = max_bypass

    def __len__(self) -> int:
        return self._live

    def push(self, priority: int) -> Waiter:
        """Add a waiter at the back of its priority."""
        waiter = Waiter(priority, next(self._tickets))
        heapq.heappush(self._by_rank, (priority, waiter.ticket, waiter))
        heapq.heappush(self._by_age, (waiter.ticket, waiter))
        self._live += 1
        return waiter

    def prioritize(self, waiter: Waiter, priority: int) -> bool:
        """Raise ``waiter`` to ``priority``, keeping its place in arrival order.

        Returns:
            Whether anything changed.
        """
        if not waiter.live or priority >= waiter.priority:
            return False
        waiter.priority = priority
        heapq.heappush(self._by_rank, (priority, waiter.ticket, waiter))
        return True

    def remove(self, waiter: Waiter) -> None:
        """Take ``waiter`` out (cancelled, or granted)."""
        if waiter.live:
            waiter.live = False
            self._live -= 1

    def _oldest(self) -> Waiter | None:
        by_age = self._by_age
        while by_age and not by_age[0][1].live:
            heapq.heappop(by_age)
        return by_age[0][1] if by_age else None

    def head(self) -> Waiter | None:
        """Return the waiter to serve next, or ``None``."""
        by_rank = self._by_rank
        while by_rank and (
            not by_rank[0][2].live or by_rank[0][0] != by_rank[0][2].priority
        ):
            heapq.heappop(by_rank)
        if not by_rank:
            return None
        if self._bypassed >= self._max_bypass:
            return self._oldest()
        return by_rank[0][2]

    def grant(self, waiter: Waiter) -> None:
        """Remove the served ``waiter``, counting a bypass if an older one waits."""
        oldest = self._oldest()
        self.remove(waiter)
        self._bypassed = 0 if oldest is None or oldest is waiter else self._bypassed + 1

    def wake_head(self) -> None:
        """Wake the head so that it re-checks whether it may go."""
        head = self.head()
        if head is not None:
            head.event.set()


class LocalPacer:
    """In-process pacing state shared by every task using one client.

    Waiters are served by priority (``INTERACTIVE`` before ``BACKGROUND``),
    first come, first served within a priority, and the oldest waiter is never
    passed over more than ``MAX_BYPASS`` times in a row. A cancelled waiter
    takes no place; a cancelled request gives its place back as if it had
    completed at that moment.

    Args:
        limit: The server's rule, or ``None`` for no pacing (Donor accounts); the
            pause after a server rejection still applies.
        clock: Monotonic seconds; injectable for tests.
        sleep: The coroutine used to wait; injectable for tests.
        max_bypass: See ``MAX_BYPASS``.
    """

    def __init__(
        self,
        limit: RateLimit | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_bypass: int = MAX_BYPASS,
    ) -> None:
        self._limit = limit
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._done: deque[float] = deque(maxlen=limit.requests if limit else 1)
        self._paused_until = float("-inf")
        self._queue = WaitQueue(max_bypass)
        self.waits = 0
        """How many callers had to wait for a place or a pause."""

    @property
    def limit(self) -> RateLimit | None:
        """The rule being kept, or ``None``."""
        return self._limit

    async def pause(self, seconds: float) -> None:
        """Let nobody send for ``seconds`` from now (never shortens a pause)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def snapshot(self) -> list[float]:
        """The places still held, as the wall-clock times of their answers.

        For a process that ends soon and a next one on the same account
        (the ``biotorrents`` command, run in a loop): see :meth:`restore`.
        """
        now, wall = self._clock(), time.time()
        window = self._limit.window if self._limit else 0.0
        return [wall - (now - t) for t in self._done if t + window > now]

    def restore(self, answers: list[float]) -> None:
        """Count places that another process's answers still hold (wall clock)."""
        now, wall = self._clock(), time.time()
        for answered in (
            sorted(answers)[-self._done.maxlen :] if self._done.maxlen else []
        ):
            self._done.append(now - (wall - answered))

    def held_places(self) -> int:
        """Places held now: requests in flight and answers still in their window."""
        if self._limit is None:
            return self._in_flight
        now, window = self._clock(), self._limit.window
        return self._in_flight + sum(1 for t in self._done if t + window > now)

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

    async def _acquire(self, slot: _LocalSlot) -> None:
        """Wait in the queue for a place (``_LocalSlot`` took the free one)."""
        queue = self._queue
        waiter = slot.waiter = queue.push(slot.priority)
        waited = False
        try:
            while True:
                waiter.event.clear()
                wait = self._wait_needed() if queue.head() is waiter else float("inf")
                if wait <= 0:
                    break
                if not waited:
                    waited = True
                    self.waits += 1
                if wait == float("inf"):
                    # Not our turn, or every place is in flight: a release, a
                    # cancellation or becoming the head sets our event.
                    await waiter.event.wait()
                else:
                    # Nothing but the clock can free a place sooner.
                    logger.debug("pacing: waiting %.3fs for a free slot", wait)
                    await self._sleep(wait)
        except BaseException:
            queue.remove(waiter)
            queue.wake_head()
            raise
        finally:
            slot.waiter = None
        queue.grant(waiter)
        self._in_flight += 1
        queue.wake_head()

    def slot(self, priority: int = INTERACTIVE) -> _LocalSlot:
        """Return a slot to hold around one attempt.

        Args:
            priority: ``INTERACTIVE`` (default) or ``BACKGROUND``.
        """
        return _LocalSlot(self, priority)


class QueuedSlot:
    """What every pacer's slot shares: a place in a ``WaitQueue`` while it waits.

    Subclasses add ``__aenter__``/``__aexit__``; ``used`` tells the release
    whether a request left the machine.
    """

    __slots__ = ("_queue", "priority", "used", "waiter")

    def __init__(self, queue: WaitQueue, priority: int) -> None:
        self._queue = queue
        self.priority = priority
        self.used = True
        self.waiter: Waiter | None = None

    def prioritize(self, priority: int) -> None:
        """Raise this slot's priority while it waits (a lower number)."""
        self.priority = min(self.priority, priority)
        waiter = self.waiter
        if waiter is not None and self._queue.prioritize(waiter, priority):
            self._queue.wake_head()

    def unused(self) -> None:
        """Give the place back uncounted when the block ends."""
        self.used = False


class _LocalSlot(QueuedSlot):
    """``async with pacer.slot():`` without a generator on the hot path."""

    __slots__ = ("_pacer",)

    def __init__(self, pacer: LocalPacer, priority: int) -> None:
        # QueuedSlot's fields set here: one call fewer on every request.
        self._queue = pacer._queue
        self.priority = priority
        self.used = True
        self.waiter = None
        self._pacer = pacer

    async def __aenter__(self) -> None:
        pacer = self._pacer
        if not pacer._queue._live and pacer._wait_needed() <= 0:
            pacer._in_flight += 1  # nobody queued and a place is free
            return
        await pacer._acquire(self)

    async def __aexit__(self, *exc_info: object) -> None:
        # LocalPacer._release, inline: one call fewer on every request.
        pacer = self._pacer
        pacer._in_flight -= 1
        if self.used and pacer._limit is not None:
            pacer._done.append(pacer._clock())
        if pacer._queue._live:
            pacer._queue.wake_head()

"""Watch streams, the consumer's side: hand-over, saves, close, and merging.

An item counts as handed over when the consumer asks for the next one, or the
stream closes cleanly; only then is it written to the cursor store. The hub
(``_hub.py``) feeds a stream; its tracker (``_trackers.py``) says what is new.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from ._hub import default_interval
from ._policy import RateLimit
from ._stores import CursorStore, MemoryStore
from ._trackers import TRACKERS, Tracker
from .exceptions import ArgumentError

if TYPE_CHECKING:
    from ._hub import WatchHub

__all__ = ["WatchStream", "merge_streams", "open_stream"]

T = TypeVar("T")


def open_stream(
    hub: WatchHub,
    kind: str,
    *,
    rule: RateLimit | None,
    interval: float | None,
    store: CursorStore | None,
    include_unread: bool,
    name: str | None,
) -> WatchStream[Any]:
    """Validate a ``watch*`` call's arguments and return its stream (not started).

    Raises:
        ValueError: An argument is out of range or of the wrong type.
    """
    if interval is None:
        interval = default_interval(rule)
    elif isinstance(interval, bool) or not isinstance(interval, int | float):
        raise ArgumentError(f"interval must be a number, got {type(interval).__name__}")
    elif not interval > 0:
        raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
    if store is None:
        store = MemoryStore()
    elif not callable(getattr(store, "load", None)) or not callable(
        getattr(store, "save", None)
    ):
        raise ArgumentError("store must have async load(name) and save(name, cursor)")
    if not isinstance(include_unread, bool):
        raise ArgumentError("include_unread must be a bool")
    if name is None:
        name = kind
    elif not isinstance(name, str) or not name:
        raise ArgumentError("name must be a non-empty str")
    return WatchStream(
        hub, TRACKERS[kind](include_unread), name=name, interval=interval, store=store
    )


class WatchStream(Generic[T]):
    """An async iterator of new items that runs until closed or cancelled.

    Use it with ``async with`` (or call ``aclose``) so that the last item is
    recorded as handed over:

        async with client.inbox.watch(store=FileStore("bot.db")) as stream:
            async for conversation in stream:
                ...

    Raises (from the iteration):
        AuthenticationError: The server refused the credentials; the stream ends.
    """

    def __init__(
        self,
        hub: WatchHub,
        tracker: Tracker[T],
        *,
        name: str,
        interval: float,
        store: CursorStore,
    ) -> None:
        self._hub = hub
        self._tracker = tracker
        self.name = name
        self.interval = interval
        self._store = store
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        # Taken but never yielded (a merge ended first): these come next.
        self._returned: deque[Any] = deque()
        self._in_hand: Any = None
        self._has_in_hand = False
        self._started = False
        self._closed = False
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<WatchStream {self.name!r} every {self.interval:g}s>"

    @property
    def kind(self) -> str:
        """``"inbox"``, ``"torrents"`` or ``"alerts"``."""
        return self._tracker.kind

    async def _start(self) -> None:
        self._started = True
        cursor = await self._store.load(self.name)
        if cursor is not None:
            self._tracker.load(cursor)
        self._hub.add(self)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        await self._hand_over()
        item: T = await self._take()
        self._hold(item)
        return item

    async def _take(self) -> Any:
        """The next item, not yet in the consumer's hands."""
        if self._closed:
            raise StopAsyncIteration
        if not self._started:
            await self._start()
        while True:
            if self._returned:
                raw = self._returned.popleft()
                break
            if self._error is not None and self._queue.empty():
                raise self._error
            raw = await self._queue.get()
            if raw is not _WAKE:  # _WAKE: something was given back meanwhile
                break
        if raw is _END:
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        return raw

    def _hold(self, item: Any) -> None:
        self._in_hand, self._has_in_hand = item, True

    def _give_back(self, raw: Any) -> None:
        """Put an item taken with ``_take`` but never yielded back in front."""
        self._returned.appendleft(raw)
        self._queue.put_nowait(_WAKE)  # a taker already waiting sees it

    async def _save(self) -> None:
        """Write the cursor (after a baseline: the start is remembered)."""
        await self._store.save(self.name, self._tracker.cursor())

    async def _hand_over(self) -> None:
        # The consumer asked for more (or closes cleanly): the item it held is
        # handed over; the cursor says so before anything else happens.
        if self._has_in_hand:
            self._has_in_hand = False
            self._tracker.handed_over(self._in_hand)
            await self._save()

    async def aclose(self) -> None:
        """Stop watching; the item last yielded counts as handed over."""
        if self._closed:
            return
        self._closed = True
        await self._hub.remove(self)
        await self._hand_over()

    async def __aenter__(self) -> Self:
        if not self._started:
            await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            # The consumer failed, or was cancelled, while holding an item: it
            # was not handed over, and comes again after a restart.
            self._has_in_hand = False
        await self.aclose()

    # --- fed by the hub -----------------------------------------------------------

    def _push(self, items: Sequence[Any]) -> None:
        for item in items:
            self._queue.put_nowait(item)

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._queue.put_nowait(_END)

    def _end(self) -> None:
        self._queue.put_nowait(_END)


_END: Any = object()
_WAKE: Any = object()


async def merge_streams(
    *streams: WatchStream[Any],
) -> AsyncIterator[tuple[WatchStream[Any], Any]]:
    """Yield ``(stream, item)`` from several watch streams, as items come.

    An item still counts as handed over only when the consumer asks for the next
    one, whichever stream it came from. Open the streams first (``async with``),
    so that closing them records the last item:

        async with (
            client.inbox.watch() as inbox,
            client.notifications.watch_alerts() as alerts,
        ):
            async for stream, item in merge_streams(inbox, alerts):
                print(stream.kind, item)

    Raises:
        BioTorrentsError: A stream ended with an error (authentication refused).
    """
    queue: asyncio.Queue[tuple[WatchStream[Any], Any, asyncio.Event | None]]
    queue = asyncio.Queue()

    async def pump(stream: WatchStream[Any]) -> None:
        # Takes items without putting them in the consumer's hands: one that is
        # taken but never yielded (the consumer stopped) is not handed over.
        try:
            while True:
                item = await stream._take()
                done = asyncio.Event()
                await queue.put((stream, item, done))
                await done.wait()  # the consumer asked for its next item
        except StopAsyncIteration:
            await queue.put((stream, _END, None))
        except Exception as exc:  # handed to the consumer
            await queue.put((stream, exc, None))

    for stream in streams:
        # Asking a merge for items asks each stream for its next one: what the
        # consumer held from an earlier read of it is handed over now.
        await stream._hand_over()
    tasks = [asyncio.create_task(pump(s)) for s in streams]
    live = len(tasks)
    held: tuple[WatchStream[Any], asyncio.Event] | None = None
    try:
        while live:
            if held is not None:
                # Asked for the next item: the one yielded is handed over now,
                # here, not later in its stream's task.
                await held[0]._hand_over()
                held[1].set()
                held = None
            stream, item, signal = await queue.get()
            if signal is None:
                if item is _END:
                    live -= 1
                    continue
                raise item
            held = (stream, signal)
            stream._hold(item)
            yield stream, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Taken from their streams but never yielded: give them back, so that a
        # later read of the same streams (or a later merge) yields them first,
        # before anything handed over after them moves the cursor past them.
        while not queue.empty():
            stream, item, signal = queue.get_nowait()
            if signal is not None or item is _END:
                stream._give_back(item)

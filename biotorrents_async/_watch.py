"""Watch streams: every new conversation, torrent hit and alert, exactly once.

One ``WatchHub`` per client polls for all of its streams, as background work,
with **one request per interval on a quiet account**. Each interval it runs the
next *check* of a rotation:

- ``index``: the unread-conversation and torrent-notification counters (when the
  inbox or torrent stream is open). A changed conversation count lists the inbox;
  a non-zero torrent count lists the notifications;
- ``alerts``: the pending notices (when the alert stream is open);
- ``inbox``: page 1 of the inbox, while unread conversations exist (a reply to a
  conversation that is already unread does not change the counter);
- every 30th round, a listing of the inbox or the notifications instead, for
  what the counters cannot show (you read something on the site meanwhile).

Only when something changed are further pages fetched, and only as many as it
takes to reach what was already seen (a burst of 60 conversations reads three
pages; a quiet poll never reads page 2).

Nothing relies on the server's ``unread`` flags: listings are compared with a
watermark (the newest date handed over, plus the ids at that date), so the
read-marking of ``notifications`` and a retried answer cannot hide an item.
A round that fails part-way is dropped whole and done again, so nothing is
skipped; items are handed over oldest first. An item counts as handed over when
the consumer asks for the next one, or the stream closes cleanly; only then is it
written to the cursor store.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from ._pacing import background
from ._policy import RateLimit
from ._stores import Cursor, CursorStore, MemoryStore
from .exceptions import ArgumentError, AuthenticationError, BioTorrentsError
from .models import Alert, ConversationSummary, Index, Page, TorrentNotification

__all__ = [
    "WatchHub",
    "WatchStream",
    "default_interval",
    "merge_streams",
    "open_stream",
]

logger = logging.getLogger("biotorrents_async.watch")

T = TypeVar("T")
#: Every how many rounds a listing takes a round's place, for what the counters
#: cannot show (something read on the site between two checks).
RESYNC = 30
_EPOCH = _dt.datetime.min


def default_interval(rule: RateLimit | None) -> float:
    """Seconds between polls that leave at least half of the allowance free.

    One request per ``2 * window / requests`` seconds is half of what the rule
    allows (6.1 s for BioTorrents' 2 per 6 s).
    """
    rule = rule or RateLimit.default()
    return 2 * rule.window / rule.requests


class _Tracker(Generic[T]):
    """What one stream has seen (detection) and handed over (its cursor)."""

    kind = ""

    def __init__(self, include_unread: bool) -> None:
        self.include_unread = include_unread
        self.started = False  # a baseline (or a loaded cursor) exists

    def load(self, cursor: Cursor) -> None:
        raise NotImplementedError

    def cursor(self) -> Cursor:
        raise NotImplementedError

    def handed_over(self, item: T) -> None:
        raise NotImplementedError


class _ListingTracker(_Tracker[T]):
    """For listings sorted newest first: a watermark of (date, ids at that date).

    An item is new when its date is after the watermark, or at it with an id not
    seen at that date. Dates are the server's, at second resolution, so the ids
    at the watermark break ties.
    """

    def __init__(self, include_unread: bool) -> None:
        super().__init__(include_unread)
        self.top = _EPOCH  # what has been queued
        self.edge: set[int] = set()
        self.done_top = _EPOCH  # what has been handed over
        self.done_edge: set[int] = set()
        # After a catch-up that found new items past page 1: the watermark it
        # started from, and what it found. A deletion during that catch-up can
        # shift an item from page 2 onto page 1 behind our back; the next
        # listing reads down to that watermark again and yields what it missed.
        self.verify: tuple[_dt.datetime, set[tuple[int, _dt.datetime]]] | None = None

    @staticmethod
    def key(item: T) -> tuple[_dt.datetime, int]:
        raise NotImplementedError

    @staticmethod
    def pinned(item: T) -> bool:
        """Whether the listing puts this item first whatever its date (sticky)."""
        return False

    def is_new(self, item: T) -> bool:
        date, ident = self.key(item)
        if date > self.top or (date == self.top and ident not in self.edge):
            return True
        if self.verify is None:
            return False
        floor, found = self.verify
        return date > floor and (ident, date) not in found

    def reached_known(self, item: T) -> bool:
        """Whether the listing has passed into what was seen: stop paging."""
        floor = self.top if self.verify is None else self.verify[0]
        return not self.pinned(item) and self.key(item)[0] < floor

    def accept(self, items: Sequence[T], *, deep: bool = False) -> list[T]:
        """Move the watermark past ``items``; return them oldest first.

        ``deep``: some of them were found past page 1 (see ``verify``).
        """
        before = self.top
        ordered = sorted(items, key=self.key)
        for item in ordered:
            self.top, self.edge = _advance(self.top, self.edge, *self.key(item))
        # This round read down to the old watermark: nothing else was hidden.
        self.verify = None
        if deep:
            found = {(ident, date) for date, ident in map(self.key, ordered)}
            self.verify = (before, found)
        return ordered

    def handed_over(self, item: T) -> None:
        self.done_top, self.done_edge = _advance(
            self.done_top, self.done_edge, *self.key(item)
        )

    def load(self, cursor: Cursor) -> None:
        top = cursor.get("top")
        self.top = self.done_top = (
            _dt.datetime.fromisoformat(top) if isinstance(top, str) else _EPOCH
        )
        edge = cursor.get("edge", [])
        self.edge = set(edge)
        self.done_edge = set(edge)
        self.started = True

    def cursor(self) -> Cursor:
        return {"top": self.done_top.isoformat(), "edge": sorted(self.done_edge)}

    def baseline(self, newest: Sequence[T], unread: Sequence[T]) -> list[T]:
        """First start with an empty store: note what exists, hand over nothing.

        ``newest`` is page 1 of the listing; ``unread`` the unread items to hand
        over when the stream was asked to include them.
        """
        self.accept([*newest, *unread])
        # The cursor starts after all of it, the unread backlog included: that
        # backlog is offered once, and if the bot stops before handing all of it
        # over, the rest is not offered again (it is not new).
        self.done_top, self.done_edge = self.top, set(self.edge)
        self.started = True
        return sorted({self.key(i)[1]: i for i in unread}.values(), key=self.key)


def _advance(
    top: _dt.datetime, edge: set[int], date: _dt.datetime, ident: int
) -> tuple[_dt.datetime, set[int]]:
    """A watermark moved to take in an item of ``date``: the ids at the top."""
    if date > top:
        return date, {ident}
    if date == top:
        edge.add(ident)
    return top, edge


class _InboxTracker(_ListingTracker[ConversationSummary]):
    kind = "inbox"

    @staticmethod
    def key(item: ConversationSummary) -> tuple[_dt.datetime, int]:
        return (item.date or _EPOCH, item.conv_id)

    @staticmethod
    def pinned(item: ConversationSummary) -> bool:
        # Sticky conversations come first whatever their date.
        return item.sticky


class _TorrentTracker(_ListingTracker[TorrentNotification]):
    kind = "torrents"

    @staticmethod
    def key(item: TorrentNotification) -> tuple[_dt.datetime, int]:
        # notificationTime is the torrent's upload time: newest first.
        return (item.notification_time or _EPOCH, item.torrent_id)


def _alert_key(alert: Alert) -> list[Hashable]:
    return [alert.kind, alert.id, alert.message, alert.url]


class _AlertTracker(_Tracker[Alert]):
    """The set of pending notices: an alert is new when it was not pending."""

    kind = "alerts"

    def __init__(self, include_unread: bool) -> None:
        super().__init__(include_unread)
        self.pending: list[list[Hashable]] = []  # at the last check
        self.done: list[list[Hashable]] = []  # handed over, and still pending
        self.pruned = False  # the last check forgot a handed-over alert

    def check(self, alerts: dict[str, Alert]) -> list[Alert]:
        current = list(alerts.values())
        keys = [_alert_key(a) for a in current]
        if not self.started:
            # First start with an empty store: what is pending now is the past,
            # unless the caller asked for it.
            self.started = True
            self.pending = keys
            # Handed over in the cursor's eyes, the backlog included: like the
            # listings' backlog, it is offered once, and what a bot that stops
            # part-way did not take is not offered again (it is not new).
            self.done = list(keys)
            return current if self.include_unread else []
        new = [a for a, k in zip(current, keys, strict=True) if k not in self.pending]
        self.pending = keys
        # Gone from the server: forget it, so that it counts anew if it returns
        # (while the bot is down, too: the hub saves the pruned cursor).
        kept = [k for k in self.done if k in keys]
        self.pruned = len(kept) < len(self.done)
        self.done = kept
        return new

    def handed_over(self, item: Alert) -> None:
        key = _alert_key(item)
        if key not in self.done:
            self.done.append(key)

    def load(self, cursor: Cursor) -> None:
        done = [list(k) for k in cursor.get("pending", [])]
        self.pending, self.done = list(done), done
        self.started = True

    def cursor(self) -> Cursor:
        return {"pending": self.done}


_TRACKERS: dict[str, type[_Tracker[Any]]] = {
    "inbox": _InboxTracker,
    "torrents": _TorrentTracker,
    "alerts": _AlertTracker,
}


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
        hub, _TRACKERS[kind](include_unread), name=name, interval=interval, store=store
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
        tracker: _Tracker[T],
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
        if self._error is not None and self._queue.empty():
            raise self._error
        raw = await self._queue.get()
        if raw is _END:
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        return raw

    def _hold(self, item: Any) -> None:
        self._in_hand, self._has_in_hand = item, True

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

    def push(self, items: Sequence[Any]) -> None:
        for item in items:
            self._queue.put_nowait(item)

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._queue.put_nowait(_END)

    def end(self) -> None:
        self._queue.put_nowait(_END)


_END: Any = object()


class WatchHub:
    """Polls for every open watch stream of one client, one request per interval.

    Args:
        index: ``client.index``.
        conversations: ``client.inbox.conversations`` (page, ``unread_first``).
        torrents: ``client.notifications.torrents`` (by page number).
        alerts: ``client.notifications.alerts``.
        closed: Whether the client is closed.
    """

    def __init__(
        self,
        *,
        index: Callable[[], Awaitable[Index]],
        conversations: Callable[[int, bool], Awaitable[Page[ConversationSummary]]],
        torrents: Callable[[int], Awaitable[Page[TorrentNotification]]],
        alerts: Callable[[], Awaitable[dict[str, Alert]]],
        closed: Callable[[], bool],
    ) -> None:
        self._index = index
        self._conversations = conversations
        self._torrents = torrents
        self._alerts = alerts
        self._closed = closed
        self._streams: list[WatchStream[Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._round = 0
        self._last_run: dict[str, int] = {}
        # Checks that failed part-way: done again before anything else, since a
        # lost listing may have marked things read (the counters then say 0).
        self._owed: list[str] = []
        self._unread: int | None = None  # conversations unread at the last index
        self.checks: deque[str] = deque(maxlen=1000)
        """The latest checks done, in order (for tests and curious users)."""

    def add(self, stream: WatchStream[Any]) -> None:
        self._streams.append(stream)
        if stream._tracker.started and stream.kind != "alerts":
            # Resumed from a cursor: anything may have happened meanwhile,
            # including hits marked read (their counter says 0). List first.
            self._owed.append(stream.kind)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="biotorrents-watch")

    async def remove(self, stream: WatchStream[Any]) -> None:
        """Stop polling for ``stream``; with the last one, stop polling at all."""
        if stream in self._streams:
            self._streams.remove(stream)
        if not self._streams and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            if task is not asyncio.current_task():
                # Nothing of ours is in flight once the last stream is closed.
                await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        """End every stream (the client is closing)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for stream in self._streams:
            stream.end()

    def _of(self, kind: str) -> list[WatchStream[Any]]:
        return [s for s in self._streams if s.kind == kind]

    def _rotation(self) -> list[str]:
        inbox, torrents = self._of("inbox"), self._of("torrents")
        checks = []
        if inbox or torrents:
            checks.append("index")
        if self._of("alerts"):
            checks.append("alerts")
        if inbox and self._unread:
            checks.append("inbox")
        return checks

    def _next_check(self) -> str:
        self._round += 1
        # A stream that has not seen anything yet goes first (its baseline).
        for stream in self._streams:
            if not stream._tracker.started:
                return stream.kind
        while self._owed:
            owed = self._owed.pop(0)
            if owed == "index" or self._of("alerts" if owed == "alerts" else owed):
                return owed
        if self._round % RESYNC == 0:
            listings = [k for k in ("inbox", "torrents") if self._of(k)]
            if listings:
                return listings[(self._round // RESYNC) % len(listings)]
        # The check of the rotation that waited longest: each runs at least
        # once every len(rotation) rounds, even as the rotation changes.
        rotation = self._rotation()
        check = min(rotation, key=lambda c: self._last_run.get(c, -1))
        self._last_run[check] = self._round
        return check

    async def _run(self) -> None:
        failures = 0
        try:
            with background():
                while self._streams and not self._closed():
                    interval = min(s.interval for s in self._streams)
                    started = time.monotonic()
                    baseline = any(not s._tracker.started for s in self._streams)
                    check = self._next_check()
                    self.checks.append(check)
                    try:
                        await self._do(check)
                        failures = 0
                    except BioTorrentsError as exc:
                        if isinstance(exc, AuthenticationError):
                            raise
                        # Transient (the session already retried): absorb it,
                        # and do the same work again next.
                        if check not in self._owed:
                            self._owed.append(check)
                        failures += 1
                        pause = min(interval * 2**failures, 300.0)
                        pause *= 1 + random.random()
                        logger.warning(
                            "watch: the %s check failed (%s); next try in %.1fs",
                            check,
                            exc,
                            pause,
                        )
                        await self._sleep(pause)
                        continue
                    if not baseline:
                        elapsed = time.monotonic() - started
                        await self._sleep(max(0.0, interval - elapsed))
        except Exception as exc:
            if not (isinstance(exc, RuntimeError) and self._closed()):
                # The credentials were refused (or a bug): the streams end with it.
                for stream in list(self._streams):
                    stream.fail(exc)
                return
        for stream in list(self._streams):
            stream.end()

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                # A new stream wakes the loop for its baseline, even one added
                # while the last round was under way.
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _do(self, check: str) -> None:
        if check == "index":
            me = await self._index()
            messages = me.notifications.messages
            if self._of("inbox") and messages != self._unread:
                await self._list("inbox")
            if self._of("torrents") and me.notifications.notifications:
                await self._list("torrents")
            self._unread = messages
        elif check == "alerts":
            alerts = await self._alerts()
            for stream in self._of("alerts"):
                tracker: _AlertTracker = stream._tracker  # type: ignore[assignment]
                first = not tracker.started
                new = tracker.check(alerts)
                try:
                    if first or tracker.pruned:
                        await stream._save()  # before the consumer sees anything
                finally:
                    stream.push(new)  # a failed save must not lose them
        else:
            await self._list(check)

    async def _list(self, kind: str) -> None:
        """Page through a listing until every stream of ``kind`` is caught up.

        A stream that starts with an empty store takes page 1 as its baseline.
        Watermarks move only once the whole round has succeeded.
        """
        streams = self._of(kind)
        if kind not in self._owed:
            self._owed.append(kind)  # until this listing has succeeded whole
        unread_hits = None
        if kind == "torrents" and any(
            not s._tracker.started and s._tracker.include_unread for s in streams
        ):
            # Listing marks every hit read: count the unread ones first.
            unread_hits = (await self._index()).notifications.notifications
        found: dict[int, list[Any]] = {id(s): [] for s in streams}
        deep: set[int] = set()  # streams with new items past page 1
        pending = {id(s) for s in streams if s._tracker.started}
        seen: set[int] = set()
        number = 1
        while True:
            page = await self._page(kind, number)
            if number == 1:
                first = page
            for stream in streams:
                tracker: _ListingTracker[Any] = stream._tracker  # type: ignore[assignment]
                if id(stream) not in pending:
                    continue
                for item in page.items:
                    if tracker.reached_known(item):
                        pending.discard(id(stream))
                        break
                    if tracker.is_new(item) and tracker.key(item)[1] not in seen:
                        found[id(stream)].append(item)
                        if number > 1:
                            deep.add(id(stream))
            # An item met again on the next page moved down: count it once.
            seen.update(streams[0]._tracker.key(i)[1] for i in page.items)  # type: ignore[attr-defined]
            if not pending or not page.has_next:
                break
            number += 1
        for stream in streams:
            tracker = stream._tracker  # type: ignore[assignment]
            if tracker.started:
                stream.push(tracker.accept(found[id(stream)], deep=id(stream) in deep))
            else:
                backlog = []
                if tracker.include_unread:
                    backlog = await self._backlog(kind, first, unread_hits)
                items = tracker.baseline(first.items, backlog)
                try:
                    # Saved before the consumer sees anything: after a crash,
                    # even one in the first item's hands, what arrived since
                    # this first start is still new.
                    await stream._save()
                finally:
                    stream.push(items)  # a failed save must not lose the backlog
        self._owed.remove(kind)

    async def _page(
        self, kind: str, number: int, unread_first: bool = False
    ) -> Page[Any]:
        if kind == "inbox":
            return await self._conversations(number, unread_first)
        return await self._torrents(number)

    async def _backlog(
        self, kind: str, first: Page[Any], unread_hits: int | None
    ) -> list[Any]:
        """What is unread at the very first start (``include_unread=True``)."""
        if kind == "torrents":
            # Newest first, and the unread hits are the newest: the first
            # `unread_hits` of the listing (its flags are gone after page 1).
            wanted = unread_hits or 0
            hits, page, number = list(first.items), first, 1
            while len(hits) < wanted and page.has_next:
                number += 1
                page = await self._page(kind, number)
                hits += page.items
            return hits[:wanted]
        unread: list[Any] = []
        # Sticky first, then unread, then read: stop at the first read one.
        page, number = await self._page(kind, 1, unread_first=True), 1
        while True:
            unread += [i for i in page.items if i.unread]
            read = [i for i in page.items if not i.unread]
            if any(not getattr(i, "sticky", False) for i in read) or not page.has_next:
                return unread
            number += 1
            page = await self._page(kind, number, unread_first=True)


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

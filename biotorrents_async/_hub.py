"""The hub: one poller for every watch stream of a client, one request per interval.

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
takes to catch up (a burst of 60 conversations reads three pages; a quiet poll
never reads page 2). What is new is the trackers' call (``_trackers.py``); a
round that fails part-way remembers nothing and is done again once that check's
own backoff has passed, while the other checks go on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from . import _telemetry
from ._pacing import LocalPacer, background
from ._policy import RateLimit
from ._stores import MemoryStore
from ._trackers import AlertTracker, ListingTracker, TorrentTracker
from .exceptions import (
    ApiError,
    AuthenticationError,
    BioTorrentsError,
    LeaseLostError,
    LegacyApiUnavailableError,
)
from .models import Alert, ConversationSummary, Index, Page, TorrentNotification

if TYPE_CHECKING:
    from ._stream import WatchStream

__all__ = ["RESYNC", "WatchHub", "default_interval"]

logger = logging.getLogger("biotorrents_async.watch")

T = TypeVar("T")
#: Every how many rounds a listing takes a round's place, for what the counters
#: cannot show (something read on the site between two checks).
RESYNC = 30
#: The store entry where the client's held places wait for the next process.
PLACES = "pacer-places"
#: The longest pause between two tries of a failing check, before its jitter.
BACKOFF_MAX = 300.0
#: Errors that waiting cannot fix: the streams they concern end with them.
_PERMANENT = (ApiError, LegacyApiUnavailableError)
#: The streams each check feeds.
_FEEDS = {
    "index": ("inbox", "torrents"),
    "inbox": ("inbox",),
    "torrents": ("torrents",),
    "alerts": ("alerts",),
}


def default_interval(rule: RateLimit | None) -> float:
    """Seconds between polls that leave at least half of the allowance free.

    One request per ``2 * window / requests`` seconds is half of what the rule
    allows (6.1 s for BioTorrents' 2 per 6 s).
    """
    rule = rule or RateLimit.default()
    return 2 * rule.window / rule.requests


class WatchHub:
    """Polls for every open watch stream of one client, one request per interval.

    Args:
        index: ``client.index``.
        conversations: ``client.inbox.conversations`` (page, ``unread_first``).
        torrents: ``client.notifications.torrents`` (by page number).
        alerts: ``client.notifications.alerts``.
        closed: Whether the client is closed.
        pacer: The client's pacer (its places travel with a persistent store).
        interval: The client's default interval (``watch_interval=``).
    """

    def __init__(
        self,
        *,
        index: Callable[[], Awaitable[Index]],
        conversations: Callable[[int, bool], Awaitable[Page[ConversationSummary]]],
        torrents: Callable[[int], Awaitable[Page[TorrentNotification]]],
        alerts: Callable[[], Awaitable[dict[str, Alert]]],
        closed: Callable[[], bool],
        pacer: Callable[[], Any] = lambda: None,
        interval: float | None = None,
    ) -> None:
        self._index = index
        self._conversations = conversations
        self._torrents = torrents
        self._alerts = alerts
        self._closed = closed
        self._pacer = pacer
        self.interval = interval
        """The client's default interval for its streams (``None``: the rule's)."""
        self._places_restored = False
        self._streams: list[WatchStream[Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._round = 0
        self._last_run: dict[str, int] = {}
        # Checks that failed (or must be done again): done before the rotation,
        # since a lost listing may have marked things read (the counters then
        # say 0), but each only once its own backoff has passed, so that one
        # broken check does not hold up the others.
        self._owed: list[str] = []
        self._failed_now: set[str] = set()  # checks that failed this round
        self._failures: dict[str, int] = {}
        self._not_before: dict[str, float] = {}  # monotonic time of the next try
        self._unread: int | None = None  # conversations unread at the last index
        self._flags = (False, False, False)  # news, blog, subscriptions
        self.checks: deque[str] = deque(maxlen=1000)
        """The latest checks done, in order (for tests and curious users)."""

    def add(self, stream: WatchStream[Any]) -> None:
        self._streams.append(stream)
        if stream._tracker.started and stream.kind != "alerts":
            # Resumed from a cursor: anything may have happened meanwhile,
            # including hits marked read (their counter says 0). List first.
            self._owe(stream.kind)
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
            stream._end()

    async def restore_places(self, store: Any) -> None:
        """Count the places a previous process's last requests still hold.

        Saved with the cursors at a clean stop (under ``PLACES``), so that a bot
        restarted at once does not send into a full window.
        """
        pacer = self._pacer()
        if self._places_restored or not isinstance(pacer, LocalPacer):
            return
        if isinstance(store, MemoryStore):
            return
        self._places_restored = True
        saved = await store.load(PLACES)
        times = saved.get("answers") if isinstance(saved, dict) else None
        if isinstance(times, list):
            pacer.restore([t for t in times if isinstance(t, int | float)])

    async def save_places(self, store: Any) -> None:
        """Keep the places still held with the cursors (a clean stop)."""
        pacer = self._pacer()
        if isinstance(pacer, LocalPacer) and not isinstance(store, MemoryStore):
            await store.save(PLACES, {"answers": pacer.snapshot()})

    def _of(self, kind: str) -> list[WatchStream[Any]]:
        return [s for s in self._streams if s.kind == kind]

    def _owe(self, check: str) -> None:
        if check not in self._owed:
            self._owed.append(check)

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

    def _ready(self, check: str, now: float) -> bool:
        return self._not_before.get(check, 0.0) <= now

    def _next_check(self) -> str | None:
        """The check to run now, or ``None`` when every due one is backing off."""
        now = time.monotonic()
        # A stream that has not seen anything yet goes first (its baseline).
        for stream in self._streams:
            if not stream._tracker.started and self._ready(stream.kind, now):
                self._round += 1
                return stream.kind
        for owed in list(self._owed):
            if not any(self._of(k) for k in _FEEDS[owed]):
                self._owed.remove(owed)
            elif self._ready(owed, now):
                self._owed.remove(owed)
                self._round += 1
                return owed
        self._round += 1
        if self._round % RESYNC == 0:
            listings = [
                k for k in ("inbox", "torrents") if self._of(k) and self._ready(k, now)
            ]
            if listings:
                return listings[(self._round // RESYNC) % len(listings)]
        # The check of the rotation that waited longest: each runs at least
        # once every len(rotation) rounds, even as the rotation changes.
        rotation = [c for c in self._rotation() if self._ready(c, now)]
        if not rotation:
            self._round -= 1
            return None
        check = min(rotation, key=lambda c: self._last_run.get(c, -1))
        self._last_run[check] = self._round
        return check

    async def _run(self) -> None:
        try:
            with background():
                while self._streams and not self._closed():
                    interval = min(s.interval for s in self._streams)
                    started = time.monotonic()
                    baseline = any(not s._tracker.started for s in self._streams)
                    check = self._next_check()
                    if check is None:
                        # Every check is backing off: wait for the first of them.
                        due = min(self._not_before.values(), default=started)
                        await self._sleep(max(due - started, 0.0))
                        continue
                    self.checks.append(check)
                    self._failed_now = set()
                    await self._attempt(check, functools.partial(self._do, check))
                    if not baseline:
                        elapsed = time.monotonic() - started
                        await self._sleep(max(0.0, interval - elapsed))
        except Exception as exc:
            if not (isinstance(exc, RuntimeError) and self._closed()):
                # The credentials were refused (or a bug): the streams end with it.
                for stream in list(self._streams):
                    stream._fail(exc)
                return
        for stream in list(self._streams):
            stream._end()

    async def _attempt(self, check: str, work: Callable[[], Awaitable[Any]]) -> bool:
        """Run one check; on failure, owe it and back off (that check only)."""
        try:
            # Telemetry hook: the poll's span (a root span: background work).
            with _telemetry.poll(check):
                await work()
        except (AuthenticationError, LegacyApiUnavailableError):
            raise  # no check can succeed: every stream ends
        except _PERMANENT as exc:
            # The server refuses this check for good ("bad parameters" once the
            # account lost torrent notifications): its streams end with the
            # error; the others go on.
            logger.warning("watch: the %s check failed for good (%s)", check, exc)
            for kind in _FEEDS[check]:
                for stream in self._of(kind):
                    self._streams.remove(stream)
                    stream._fail(exc)
            return False
        except BioTorrentsError as exc:
            # Transient (the session already retried): do the same work again,
            # once this check's own backoff has passed.
            self._owe(check)
            self._failed_now.add(check)
            self._polled(check, exc)
            failures = self._failures[check] = self._failures.get(check, 0) + 1
            interval = min((s.interval for s in self._streams), default=1.0)
            pause = min(interval * 2**failures, BACKOFF_MAX) * (1 + random.random())
            # Rounded up to what the WARNING says: the try comes when announced.
            pause = math.ceil(pause * 10) / 10
            self._not_before[check] = time.monotonic() + pause
            logger.warning(
                "watch: the %s check failed (%s); next try in %.1fs", check, exc, pause
            )
            return False
        self._failures.pop(check, None)
        self._not_before.pop(check, None)
        self._polled(check, None)
        return True

    def _polled(self, check: str, error: BaseException | None) -> None:
        for kind in _FEEDS[check]:
            if (
                error is None
                and kind != check
                and (kind in self._failed_now or kind in self._failures)
            ):
                # index succeeded, but the listing this stream needs failed
                # (in this round, or it is backing off): not a success for it,
                # or fail_after would never come.
                continue
            for stream in self._of(kind):
                stream._polled(error)
                if stream._error is not None:  # gave up (fail_after)
                    self._streams.remove(stream)

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
            rose = self._unread is not None and messages > self._unread
            hits = me.notifications.notifications
            now = time.monotonic()
            for kind, changed, expected in (
                ("inbox", messages != self._unread, rose),
                ("torrents", bool(hits), True),
            ):
                if not (changed and self._of(kind)):
                    continue
                if self._ready(kind, now):
                    await self._attempt(
                        kind, functools.partial(self._list, kind, expected)
                    )
                else:
                    self._owe(kind)  # backing off: listed when it is due
            self._unread = messages
            # News, the blog and subscriptions are flagged by index too: an
            # alert for one of them is read in this round, not when the
            # rotation comes to it (the server shows only the latest news post,
            # so a slow look can miss one). Quotes are not flagged.
            flags = (
                me.notifications.new_announcement,
                me.notifications.new_blog,
                me.notifications.new_subscriptions,
            )
            raised = any(
                flag and not before
                for flag, before in zip(flags, self._flags, strict=True)
            )
            self._flags = flags
            if raised and self._of("alerts") and self._ready("alerts", now):
                await self._attempt("alerts", functools.partial(self._do, "alerts"))
        elif check == "alerts":
            alerts = await self._alerts()
            for stream in self._of("alerts"):
                tracker: AlertTracker = stream._tracker  # type: ignore[assignment]
                first = not tracker.started
                new = tracker.check(alerts)
                lost = False
                try:
                    if first or tracker.pruned:
                        await stream._save()  # before the consumer sees anything
                except LeaseLostError as exc:
                    lost = True  # another replica has the cursor: not ours to give
                    await stream._stop_with(exc)
                finally:
                    if not lost:
                        stream._push(new)  # a failed save must not lose them
        else:
            await self._list(check)

    async def _list(self, kind: str, expected: bool = False) -> None:
        """Page through a listing until every stream of ``kind`` is caught up.

        A stream that starts with an empty store takes page 1 as its baseline.
        Nothing is remembered until the whole listing has succeeded.

        ``expected``: the counters say something new is there; say so if the
        listing finds nothing (a server clock that jumps, a listing that hides).
        """
        streams = self._of(kind)
        if not streams:
            return
        unread_hits = None
        if kind == "torrents" and any(
            not s._tracker.started and s._tracker.include_unread for s in streams
        ):
            # Listing marks every hit read: count the unread ones first.
            unread_hits = (await self._index()).notifications.notifications
        trackers: list[ListingTracker[Any]] = [
            s._tracker  # type: ignore[misc]
            for s in streams
        ]
        sorter = trackers[0]
        found: list[list[Any]] = [[] for _ in streams]
        oldest: list[Any] = [None] * len(streams)  # of the last page each read
        reading = {n for n, t in enumerate(trackers) if t.started}
        met: set[Any] = set()  # an item met again on a later page moved down
        number, first, first_next = 1, [], False
        while True:
            page = await self._page(kind, number)
            items = []
            for item in sorter.sort(page.items):
                if sorter.ident(item) not in met:  # once, even if listed twice
                    met.add(sorter.ident(item))
                    items.append(item)
            if number == 1:
                first, first_next = items, page.has_next
            for n in list(reading):
                tracker = trackers[n]
                found[n] += [i for i in items if tracker.is_new(i)]
                rest = [i for i in items if not tracker.pinned(i)]
                if rest:
                    oldest[n] = tracker.order(rest[-1])
                more = tracker.read_on(items, has_next=page.has_next, count=len(page))
                if not more:
                    reading.discard(n)
            if not reading:
                break
            number += 1
        total = 0
        for n, stream in enumerate(streams):
            tracker = trackers[n]
            if tracker.started:
                tracker.verify = None  # this listing read down to it
                if found[n] and number > 1 and oldest[n] is not None:
                    # A deletion while we paged can have moved an item up onto
                    # a page we had read: read down to here once more, soon.
                    tracker.verify = oldest[n]
                    self._owe(kind)
                total += len(found[n])
                events = tracker.classify(found[n])
                stream._push(tracker.accept(found[n]), events)
            else:
                backlog = []
                if tracker.include_unread:
                    backlog = await self._backlog(kind, first, unread_hits)
                items = tracker.baseline(first, backlog, has_next=first_next)
                lost = False
                try:
                    # Saved before the consumer sees anything: after a crash,
                    # even one in the first item's hands, what arrived since
                    # this first start is still new.
                    await stream._save()
                except LeaseLostError as exc:
                    lost = True  # another replica has the cursor: not ours to give
                    await stream._stop_with(exc)
                finally:
                    if not lost:  # a failed save must not lose the backlog
                        stream._push(items, ["new"] * len(items))
        if expected and not total and any(t.started for t in trackers):
            logger.warning(
                "watch: the counters say there is something new in %s, but the "
                "listing shows nothing new (a server clock that jumped, or an "
                "item deeper than the listing reads?)",
                kind,
            )

    async def _page(
        self, kind: str, number: int, unread_first: bool = False
    ) -> Page[Any]:
        if kind == "inbox":
            return await self._conversations(number, unread_first)
        return await self._torrents(number)

    async def _backlog(
        self, kind: str, first: list[Any], unread_hits: int | None
    ) -> list[Any]:
        """What is unread at the very first start (``include_unread=True``)."""
        if kind == "torrents":
            # Page 1 still carries the unread flags (showing it marks them read
            # afterwards); past it, the unread hits are the newest ids.
            wanted = unread_hits or 0
            hits = [i for i in first if i.unread][:wanted]
            number = 1
            while len(hits) < wanted and len(first) >= TorrentTracker.page_size:
                number += 1
                page = await self._page(kind, number)
                if not page.items:
                    break
                ordered = sorted(page.items, key=lambda i: -i.torrent_id)
                hits += ordered[: wanted - len(hits)]
            return hits
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

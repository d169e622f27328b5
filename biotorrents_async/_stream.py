"""Watch streams, the consumer's side: hand-over, saves, close, and merging.

An item counts as handed over when the consumer asks for the next one, or the
stream closes cleanly; only then is it written to the cursor store. The hub
(``_hub.py``) feeds a stream; its tracker (``_trackers.py``) says what is new.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import hashlib
import itertools
import logging
import math
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import attrs

from . import _telemetry
from ._hub import default_interval
from ._policy import RateLimit
from ._stores import CursorStore, LeasedStore, MemoryStore, lost_lease, other_kind
from ._trackers import TRACKERS, Tracker
from .exceptions import (
    ArgumentError,
    StoreError,
    StreamFailedError,
)
from .models import Alert, ConversationSummary, TorrentNotification

if TYPE_CHECKING:
    from ._hub import WatchHub

__all__ = [
    "StreamHealth",
    "WatchStream",
    "item_key",
    "merge_streams",
    "open_stream",
]

logger = logging.getLogger("biotorrents_async.watch")

T = TypeVar("T")


#: Seconds a stream's lease lasts unless renewed (it is renewed every third of it).
DEFAULT_LEASE = 30.0
#: Seconds of nothing but failed polls after which a stream gives up.
DEFAULT_FAIL_AFTER = 600.0
#: The longest interval a stream accepts: one poll a day. Alerts the server
#: replaces (news, the latest blog post) would be missed past that, and a
#: larger number is a mistake (``inf`` would take a baseline and never poll).
MAX_INTERVAL = 86400.0


def check_seconds(
    label: str, value: Any, *, low: float, high: float, none_ok: bool = False
) -> float | None:
    """``value`` as seconds in ``(low, high]``, finite (``None`` if allowed).

    Raises:
        ValueError: Out of range, or not finite.
        ArgumentError: Not a number.
    """
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentError(f"{label} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and low < value <= high):
        raise ValueError(
            f"{label} must be > {low:g} and <= {high:g} seconds, got {value!r}"
        )
    return float(value)


def open_stream(
    hub: WatchHub,
    kind: str,
    *,
    rule: RateLimit | None,
    interval: float | None,
    store: CursorStore | None,
    include_unread: bool,
    name: str | None,
    fail_after: float | None = DEFAULT_FAIL_AFTER,
    exclusive: bool = True,
    lease: float = DEFAULT_LEASE,
    kinds: Iterable[str] | None = None,
) -> WatchStream[Any]:
    """Validate a ``watch*`` call's arguments and return its stream (not started).

    Raises:
        ValueError: An argument is out of range or of the wrong type.
        RuntimeError: The client is closed.
    """
    if hub._closed():
        raise RuntimeError("the client is closed; watch with an open client")
    if interval is None:
        interval = hub.interval or default_interval(rule)
    every = check_seconds("interval", interval, low=0, high=MAX_INTERVAL)
    fail_after = check_seconds(
        "fail_after", fail_after, low=0, high=math.inf, none_ok=True
    )
    lease_length = check_seconds("lease", lease, low=0, high=3600)
    if store is None:
        store = MemoryStore()
    elif not callable(getattr(store, "load", None)) or not callable(
        getattr(store, "save", None)
    ):
        raise ArgumentError("store must have async load(name) and save(name, cursor)")
    if not isinstance(include_unread, bool):
        raise ArgumentError("include_unread must be a bool")
    if not isinstance(exclusive, bool):
        raise ArgumentError("exclusive must be a bool")
    if name is None:
        name = kind
    elif not isinstance(name, str) or not name:
        raise ArgumentError("name must be a non-empty str")
    tracker: Tracker[Any] = TRACKERS[kind](include_unread)
    if kinds is not None:
        if isinstance(kinds, str) or not all(isinstance(k, str) for k in kinds):
            raise ArgumentError("kinds must be a list of alert kinds (str)")
        tracker.kinds = frozenset(  # type: ignore[attr-defined]
            str(getattr(k, "value", k)) for k in kinds
        )
    if exclusive and not isinstance(store, LeasedStore):
        logger.warning(
            "watch: %r has no leases (acquire/renew/release): every replica on "
            "it yields every item; pass exclusive=False to say that is meant",
            store,
        )
        exclusive = False
    return WatchStream(
        hub,
        tracker,
        name=name,
        interval=every or 0.0,
        store=store,
        fail_after=fail_after,
        lease=lease_length if exclusive else None,
    )


@attrs.frozen
class StreamHealth:
    """A stream's health at one moment (``WatchStream.health``).

    Attributes:
        kind: ``"inbox"``, ``"torrents"`` or ``"alerts"``.
        name: The cursor's name.
        role: ``"starting"``, ``"standby"`` (another stream holds the cursor),
            ``"active"`` or ``"ended"``.
        ready: Whether the stream has its baseline (or its resumed cursor) and
            has polled once since.
        last_success: Wall-clock time of the last successful poll for it.
        consecutive_failures: Polls for it that failed since the last success.
        last_error: The last error's message (redacted like every error), or
            ``None``.
        holder: Who holds the cursor's lease (this stream when active), or
            ``None`` for a stream that does not take leases.
    """

    kind: str
    name: str
    role: str
    ready: bool
    last_success: _dt.datetime | None
    consecutive_failures: int
    last_error: str | None
    holder: str | None


class WatchStream(Generic[T]):
    """An async iterator of new items that runs until closed or cancelled.

    Use it with ``async with`` (or call ``aclose``) so that the last item is
    recorded as handed over:

        async with client.inbox.watch(store=FileStore("bot.db")) as stream:
            async for conversation in stream:
                ...

    Of several streams on one ``(store, name)`` (replicas of a bot), one is
    active and the others stand by until its lease is free (see "Writing a
    bot"), unless they were opened with ``exclusive=False``.

    Raises (from the iteration):
        AuthenticationError: The server refused the credentials; the stream ends.
        ApiError: The server refuses this stream's check for good.
        StreamFailedError: Every poll failed for ``fail_after`` seconds.
        LeaseLostError: Another replica took the cursor over.
        StoreError: The cursor store failed.
    """

    def __init__(
        self,
        hub: WatchHub,
        tracker: Tracker[T],
        *,
        name: str,
        interval: float,
        store: CursorStore,
        fail_after: float | None = DEFAULT_FAIL_AFTER,
        lease: float | None = None,
    ) -> None:
        self._hub = hub
        self._tracker = tracker
        self.name = name
        self.interval = interval
        self.fail_after = fail_after
        self._store = store
        self._lease = lease
        self._holder = (
            f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
            if lease is not None
            else None
        )
        self._fence: int | None = None
        self._valid_until = 0.0  # monotonic: the lease surely holds until then
        self._lease_task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        # Taken but never yielded (a merge ended first): these come next.
        self._returned: deque[Any] = deque()
        self._in_hand: Any = None
        self._has_in_hand = False
        self._started = False
        self._closed = False
        self._error: BaseException | None = None
        self._stopped: BaseException | None = None
        self._role = "starting"
        self._ready = asyncio.Event()
        self._last_success: _dt.datetime | None = None
        self._failures = 0
        self._failing_since: float | None = None
        self._last_error: str | None = None
        self._lease_holder: str | None = None
        # Which event the latest inbox items are ("new" or "reply"), bounded.
        self._events: dict[Any, str] = {}
        _telemetry.stream_opened(self)  # telemetry hook: health gauges

    def __repr__(self) -> str:
        return f"<WatchStream {self.name!r} every {self.interval:g}s>"

    @property
    def kind(self) -> str:
        """``"inbox"``, ``"torrents"`` or ``"alerts"``."""
        return self._tracker.kind

    @property
    def health(self) -> StreamHealth:
        """A read-only view of how the stream is doing (for a health endpoint)."""
        return StreamHealth(
            kind=self.kind,
            name=self.name,
            role=self._role,
            ready=self._ready.is_set(),
            last_success=self._last_success,
            consecutive_failures=self._failures,
            last_error=self._last_error,
            holder=self._lease_holder,
        )

    async def ready(self) -> None:
        """Start the stream if needed and wait until it has its baseline.

        A standby waits until it is active. Raises what ended the stream, if
        it ended first.
        """
        if not self._started:
            await self._start()
        done = asyncio.ensure_future(self._ready.wait())
        try:
            while not self._ready.is_set():
                if self._error is not None:
                    raise self._error
                if self._role == "ended" or self._closed:
                    raise RuntimeError(
                        f"the {self.kind} stream {self.name!r} ended before its "
                        "baseline (closed)"
                    )
                await asyncio.wait({done}, timeout=0.05)
        finally:
            done.cancel()

    def key(self, item: T) -> str:
        """A stable key for the event ``item`` is (see ``item_key``)."""
        return item_key(item)

    def event(self, item: T) -> str:
        """What ``item`` is: ``"new"``, ``"reply"``, ``"hit"`` or ``"alert"``.

        ``"new"`` (a conversation) or ``"reply"`` for the inbox; ``"hit"`` for a
        torrent, ``"alert"`` for an alert.

        A conversation is ``"new"`` when its id is above every conversation id
        the stream had met (the server numbers conversations in order), and a
        ``"reply"`` otherwise; the ``include_unread`` backlog counts as new. It
        answers for the latest 1,000 inbox items the stream yielded.
        """
        if self.kind == "torrents":
            return "hit"
        if self.kind == "alerts":
            return "alert"
        return self._events.get(item, "reply")

    async def _start(self) -> None:
        self._started = True
        if self._lease is None:
            await self._activate()
        else:
            self._lease_task = asyncio.create_task(
                self._hold_lease(), name=f"biotorrents-lease-{self.name}"
            )

    async def _activate(self) -> None:
        """Load the cursor and join the hub's polling: the stream is active."""
        cursor = await self._store.load(self.name)
        if cursor is not None:
            found = cursor.get("kind")
            if isinstance(found, str) and found != self.kind:
                raise other_kind(self.name, self.kind, found)
            self._tracker.load(cursor)
        await self._hub.restore_places(self._store)
        self._role = "active"
        self._hub.add(self)

    async def _hold_lease(self) -> None:
        """Stand by until the lease is ours, then keep it; end the stream if lost."""
        store: LeasedStore = self._store  # type: ignore[assignment]
        ttl, holder = self._lease or DEFAULT_LEASE, self._holder or ""
        try:
            announced = False
            while True:
                asked = time.monotonic()
                got = await store.acquire(
                    self.name, kind=self.kind, holder=holder, ttl=ttl
                )
                if got.fence is not None:
                    break
                self._role, self._lease_holder = "standby", got.holder
                if not announced:
                    announced = True
                    logger.info(
                        "watch: the %s cursor %r is held by %s for %.1fs more; "
                        "standing by",
                        self.kind,
                        self.name,
                        got.holder,
                        got.expires_in,
                    )
                # Checked every second at most: the holder's clean stop frees
                # the lease at once, and the takeover should follow soon.
                await asyncio.sleep(min(max(got.expires_in, 0.01), ttl / 3, 1.0))
            self._fence, self._valid_until = got.fence, asked + ttl
            self._lease_holder = holder
            if announced:
                logger.info("watch: took over the %s cursor %r", self.kind, self.name)
            await self._activate()
            while True:
                await asyncio.sleep(ttl / 3)
                await self._renew()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The cursor is lost (taken over, the store failed): nothing still
            # queued goes out, even while the local lease clock says it holds.
            self._stopped = exc
            await self._hub.remove(self)
            self._fail(exc)

    async def _renew(self) -> None:
        store: LeasedStore = self._store  # type: ignore[assignment]
        ttl = self._lease or DEFAULT_LEASE
        asked = time.monotonic()
        try:
            renewed = await store.renew(
                self.name, holder=self._holder or "", fence=self._fence or 0, ttl=ttl
            )
        except StoreError:
            if time.monotonic() < self._valid_until:
                return  # tried again at the next renewal, still in time
            raise
        if not renewed:
            raise lost_lease(self.name)
        self._valid_until = asked + ttl

    async def _check_lease(self) -> None:
        """Before an item goes out: a lease that may have lapsed is renewed first.

        A stream paused past its lease (``SIGSTOP``, a VM pause) wakes up with
        items queued; none of them is yielded unless the lease still holds.
        """
        if self._fence is not None and time.monotonic() >= self._valid_until:
            await self._renew()

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
        if self._stopped is not None:
            # Ended by its cursor (taken over, or the store failed): what is
            # still queued is not yielded, and comes again after a restart.
            raise self._stopped
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
        try:
            await self._check_lease()
        except BaseException as exc:
            self._returned.appendleft(raw)  # not handed over: it comes again
            await self._stop_with(exc)
            raise
        return raw

    async def _stop_with(self, exc: BaseException) -> None:
        if isinstance(exc, Exception) and self._stopped is None:
            self._error = self._stopped = exc
            self._role = "ended"
            await self._hub.remove(self)

    def _hold(self, item: Any) -> None:
        self._in_hand, self._has_in_hand = item, True
        _telemetry.stream_delivered(self, item)  # telemetry hook: yielded now

    def _give_back(self, raw: Any) -> None:
        """Put an item taken with ``_take`` but never yielded back in front."""
        self._returned.appendleft(raw)
        self._queue.put_nowait(_WAKE)  # a taker already waiting sees it

    async def _save(self) -> None:
        """Write the cursor (after a baseline: the start is remembered)."""
        cursor = {**self._tracker.cursor(), "kind": self.kind}
        if self._fence is None:
            await self._store.save(self.name, cursor)
        else:
            await self._store.save(self.name, cursor, fence=self._fence)  # type: ignore[call-arg]

    async def _hand_over(self) -> None:
        # The consumer asked for more (or closes cleanly): the item it held is
        # handed over; the cursor says so before anything else happens.
        if self._has_in_hand:
            self._has_in_hand = False
            item = self._in_hand
            self._tracker.handed_over(item)
            try:
                await self._save()
            except Exception as exc:
                # Refused (another replica took over) or failed: the stream ends
                # with the error; the item was not saved as handed over.
                await self._stop_with(exc)
                raise

    async def aclose(self) -> None:
        """Stop watching; the item last yielded counts as handed over.

        The lease (if any) is released with the last save, so a standby takes
        over at once.
        """
        if self._closed:
            return
        self._closed = True
        await self._hub.remove(self)
        try:
            if self._stopped is None:  # not when its cursor ended it
                await self._hand_over()
                await self._hub.save_places(self._store)
        finally:
            self._role = "ended"
            task, self._lease_task = self._lease_task, None
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if self._fence is not None and self._holder is not None:
                fence, self._fence = self._fence, None
                with contextlib.suppress(StoreError):  # it expires on its own
                    await self._store.release(  # type: ignore[attr-defined]
                        self.name, holder=self._holder, fence=fence
                    )

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

    def _push(self, items: Sequence[Any], events: Sequence[str] = ()) -> None:
        for item, event in itertools.zip_longest(items, events):
            if event is not None:
                self._events[item] = event
                if len(self._events) > 1000:  # the oldest go first
                    del self._events[next(iter(self._events))]
            self._queue.put_nowait(item)

    def _polled(self, error: BaseException | None) -> None:
        """A poll for this stream ended (``error``: it failed)."""
        _telemetry.stream_polled(self, error)  # telemetry hook
        if error is None:
            self._last_success = _dt.datetime.now(_dt.UTC)
            self._failures, self._failing_since = 0, None
            if self._tracker.started:
                self._ready.set()
            return
        self._failures += 1
        self._last_error = str(error)
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if self.fail_after is not None and now - self._failing_since >= self.fail_after:
            failed = StreamFailedError(
                f"every poll of the {self.kind} stream {self.name!r} failed for "
                f"{self.fail_after:g}s; the last: {error}"
            )
            failed.__cause__ = error
            self._fail(failed)

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._role = "ended"
        self._last_error = str(error)
        self._queue.put_nowait(_END)

    def _end(self) -> None:
        self._role = "ended"
        self._queue.put_nowait(_END)


def item_key(item: Any) -> str:
    """A stable key for the event a yielded item is: the same in every process.

    - a conversation: ``inbox:<conv_id>:<date>`` (a reply moves the date: a new
      key);
    - a torrent hit: ``torrent:<torrent_id>`` (the server lists a torrent once);
    - an alert: ``alert:<kind>:<id>:<digest of its message and link>`` (an alert
      that goes away and comes back with the same text has the same key).

    Use it as an idempotency key where you post items (a webhook, a chat), so
    that the one item in hand after a crash, which comes again, is dropped.

    Raises:
        ArgumentError: ``item`` is not a conversation, torrent hit or alert.
    """
    if isinstance(item, ConversationSummary):
        date = item.date.isoformat() if item.date else ""
        return f"inbox:{item.conv_id}:{date}"
    if isinstance(item, TorrentNotification):
        return f"torrent:{item.torrent_id}"
    if isinstance(item, Alert):
        digest = hashlib.sha256(f"{item.message}\n{item.url}".encode()).hexdigest()
        return f"alert:{item.kind}:{item.id}:{digest[:12]}"
    raise ArgumentError(f"no key for a {type(item).__name__}")


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
    ended: list[WatchStream[Any]] = []
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
                    ended.append(stream)
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
        for stream in ended:
            # Its end was read here: a later read of it ends too, not hangs.
            stream._give_back(_END)

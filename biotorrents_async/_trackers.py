"""What a watch stream has seen and handed over: pure logic, no I/O.

The hub (``_hub.py``) feeds listings and alert sets in; a tracker says which
items are new, whether the next page can hold more, and what the cursor is.

A listing tracker remembers the items it has met over a bounded horizon (their
ids with their dates) instead of trusting one watermark date: an item not met
before is new whatever its date, so a server clock that stepped forward and
back cannot hide what comes after it. Below the horizon's *floor* (the oldest
item it still remembers, or page 1's oldest item at the first start) nothing
counts as new: that is the past the stream started after.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Hashable, Sequence
from typing import Any, Generic, TypeVar

from .models import Alert, ConversationSummary, TorrentNotification

__all__ = [
    "HORIZON",
    "TRACKERS",
    "AlertTracker",
    "ListingTracker",
    "Tracker",
]

T = TypeVar("T")
Cursor = dict[str, Any]
#: How many listing items a stream remembers (ids with their dates). An item
#: older than all of them is not new. 500 is ten pages of torrent hits or twenty
#: of conversations: far more than a clock step or a catch-up moves.
HORIZON = 500
_EPOCH = _dt.datetime.min
#: The alerts that only count what the other streams yield ("You have 3 new
#: messages"); an alert stream leaves them out unless its ``kinds`` name them.
COUNTERS = frozenset({"Inbox", "Torrents"})


class Tracker(Generic[T]):
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


class _Memory:
    """Idents with their order values, bounded to ``HORIZON``, and a floor."""

    def __init__(self) -> None:
        self.items: dict[Hashable, Any] = {}
        self.floor: Any = None  # nothing at or below it is new; None: no floor

    def add(self, ident: Hashable, order: Any) -> None:
        self.items[ident] = order
        if len(self.items) > HORIZON:
            # Forget the oldest quarter at once (amortized), and raise the floor
            # to what was forgotten: an item that old is not new.
            ranked = sorted(self.items.items(), key=lambda kv: kv[1])
            cut = len(ranked) - HORIZON * 3 // 4
            self.floor = _max(self.floor, ranked[cut - 1][1])
            self.items = dict(ranked[cut:])

    def new(self, ident: Hashable, order: Any) -> bool:
        return ident not in self.items and (self.floor is None or order > self.floor)

    def copy(self) -> _Memory:
        other = _Memory()
        other.items, other.floor = dict(self.items), self.floor
        return other


def _max(a: Any, b: Any) -> Any:
    return b if a is None else max(a, b)


class ListingTracker(Tracker[T]):
    """For a paged listing: the items met over a horizon, and a floor.

    Subclasses say what orders the listing (``order``), what identifies one
    event (``ident``), how many items fill a page, and which items the server
    pins to the top whatever their order.
    """

    page_size = 0

    def __init__(self, include_unread: bool) -> None:
        super().__init__(include_unread)
        self.seen = _Memory()  # detected: queued or handed over
        self.done = _Memory()  # handed over: the cursor
        # After a catch-up of more than one page: read down to this order again
        # next time. A deletion during that catch-up can move an item up onto a
        # page already read (api-reference §18: page-number paging).
        self.verify: Any = None

    @staticmethod
    def order(item: T) -> Any:
        raise NotImplementedError

    @staticmethod
    def ident(item: T) -> Hashable:
        raise NotImplementedError

    @staticmethod
    def pinned(item: T) -> bool:
        """Whether the listing puts this item first whatever its order (sticky)."""
        return False

    def sort(self, items: Sequence[T]) -> list[T]:
        """A page as the listing means it: pinned first, then newest first.

        The server's own order is not to be trusted: ``notifications`` prints a
        page grouped by filter, not newest first (api-reference §19).
        """
        return sorted(items, key=lambda i: (not self.pinned(i), _Desc(self.order(i))))

    def is_new(self, item: T) -> bool:
        return self.seen.new(self.ident(item), self.order(item))

    def read_on(self, items: Sequence[T], *, has_next: bool, count: int) -> bool:
        """Whether the page after ``items`` (sorted) can hold something new.

        Only when this page's oldest item is itself new (or above the point a
        re-read must reach), and the server says there is more or the page is
        full (``count`` items as sent): a ``pages`` that under-reports must not
        end a burst early.
        """
        rest = [i for i in items if not self.pinned(i)]
        if not has_next and count < self.page_size:
            return False
        if not rest:
            return bool(items)
        oldest = rest[-1]
        if self.verify is not None and self.order(oldest) > self.verify:
            return True
        return self.is_new(oldest)

    def classify(self, items: Sequence[T]) -> list[str]:
        """What each of ``items`` (found new) is, oldest first: see the subclass."""
        return []

    def accept(self, items: Sequence[T]) -> list[T]:
        """Remember ``items`` as detected; return them oldest first."""
        ordered = sorted(items, key=self.order)
        for item in ordered:
            self.seen.add(self.ident(item), self.order(item))
        return ordered

    def handed_over(self, item: T) -> None:
        self.done.add(self.ident(item), self.order(item))

    def baseline(
        self, first: Sequence[T], unread: Sequence[T], *, has_next: bool
    ) -> list[T]:
        """First start with an empty store: note what exists, hand over nothing.

        ``first`` is page 1 of the listing (sorted); ``unread`` the unread items to
        hand over when the stream was asked to include them.
        """
        rest = [i for i in first if not self.pinned(i)]
        if rest and (has_next or len(first) >= self.page_size):
            # What lies below page 1 is the past: its oldest item is the floor.
            self.seen.floor = self.order(rest[-1])
        self.accept([*first, *unread])
        # The cursor starts after all of it, the unread backlog included: that
        # backlog is offered once, and if the bot stops before handing all of it
        # over, the rest is not offered again (it is not new).
        self.done = self.seen.copy()
        self.started = True
        unique = {self.ident(i): i for i in unread}
        return sorted(unique.values(), key=self.order)

    # --- the cursor -------------------------------------------------------------

    def dump(self, ident: Hashable, order: Any) -> list[Any]:
        raise NotImplementedError

    def undump(self, entry: list[Any]) -> tuple[Hashable, Any]:
        raise NotImplementedError

    def dump_order(self, order: Any) -> Any:
        return order

    def undump_order(self, value: Any) -> Any:
        return value

    def cursor(self) -> Cursor:
        floor = self.done.floor
        return {
            "v": 2,
            "floor": None if floor is None else self.dump_order(floor),
            "seen": [self.dump(i, o) for i, o in self.done.items.items()],
        }

    def load(self, cursor: Cursor) -> None:
        memory = _Memory()
        if cursor.get("v") == 2:
            floor = cursor.get("floor")
            memory.floor = None if floor is None else self.undump_order(floor)
            for entry in cursor.get("seen", []):
                ident, order = self.undump(list(entry))
                memory.items[ident] = order
        else:
            self.load_v1(memory, cursor)
        self.seen, self.done = memory, memory.copy()
        self.started = True

    def load_v1(self, memory: _Memory, cursor: Cursor) -> None:
        """A cursor of release 0.x: a watermark ``top`` and the ``edge`` ids at it."""
        raise NotImplementedError


class _Desc:
    """Sorts its value in reverse (for mixed keys of ``sorted``)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return bool(self.value > other.value)


class InboxTracker(ListingTracker[ConversationSummary]):
    """Conversations: one event per (conversation, date); a reply moves the date."""

    kind = "inbox"
    page_size = 25

    def __init__(self, include_unread: bool) -> None:
        super().__init__(include_unread)
        # The highest conversation id met: the server numbers conversations in
        # order, so a conversation above it is new, one at or below a reply.
        self.high = 0

    def classify(self, items: Sequence[ConversationSummary]) -> list[str]:
        ordered = sorted(items, key=self.order)
        return ["new" if i.conv_id > self.high else "reply" for i in ordered]

    def accept(self, items: Sequence[ConversationSummary]) -> list[ConversationSummary]:
        self.high = max([self.high, *(i.conv_id for i in items)])
        return super().accept(items)

    def cursor(self) -> Cursor:
        return {**super().cursor(), "high": self.high}

    def load(self, cursor: Cursor) -> None:
        super().load(cursor)
        high = cursor.get("high")
        if isinstance(high, int):
            self.high = high
        else:  # a cursor of release 0.x: the highest id it remembers
            self.high = max([0, *(ident[0] for ident in self.seen.items)])  # type: ignore[index]

    @staticmethod
    def order(item: ConversationSummary) -> _dt.datetime:
        return item.date or _EPOCH

    @staticmethod
    def ident(item: ConversationSummary) -> Hashable:
        return (item.conv_id, item.date or _EPOCH)

    @staticmethod
    def pinned(item: ConversationSummary) -> bool:
        # Sticky conversations come first whatever their date.
        return item.sticky

    def dump(self, ident: Hashable, order: Any) -> list[Any]:
        return [int(ident[0]), order.isoformat()]  # type: ignore[index]

    def undump(self, entry: list[Any]) -> tuple[Hashable, Any]:
        date = _dt.datetime.fromisoformat(entry[1])
        return (int(entry[0]), date), date

    def dump_order(self, order: Any) -> Any:
        return order.isoformat()

    def undump_order(self, value: Any) -> Any:
        return _dt.datetime.fromisoformat(value)

    def load_v1(self, memory: _Memory, cursor: Cursor) -> None:
        top = cursor.get("top")
        if not isinstance(top, str):
            return
        date = _dt.datetime.fromisoformat(top)
        # Dates are whole seconds: just below the watermark, the ids at it seen.
        memory.floor = date - _dt.timedelta(microseconds=1)
        for conv_id in cursor.get("edge", []):
            memory.items[(int(conv_id), date)] = date


class TorrentTracker(ListingTracker[TorrentNotification]):
    """Torrent hits: one event per torrent, ordered by torrent id.

    The server selects a page as the 50 newest torrent ids and lists a torrent at
    most once per user (api-reference §19), so the id is both order and identity.
    """

    kind = "torrents"
    page_size = 50

    @staticmethod
    def order(item: TorrentNotification) -> int:
        return item.torrent_id

    @staticmethod
    def ident(item: TorrentNotification) -> Hashable:
        return item.torrent_id

    def dump(self, ident: Hashable, order: Any) -> list[Any]:
        return [ident]

    def undump(self, entry: list[Any]) -> tuple[Hashable, Any]:
        return int(entry[0]), int(entry[0])

    def load_v1(self, memory: _Memory, cursor: Cursor) -> None:
        # The old watermark was the upload date; the torrents at it are the
        # newest the stream had seen, and ids grow with uploads.
        edge = [int(i) for i in cursor.get("edge", [])]
        if edge:
            memory.floor = max(edge)


def _alert_key(alert: Alert) -> list[Hashable]:
    return [alert.kind, alert.id, alert.message, alert.url]


class AlertTracker(Tracker[Alert]):
    """The set of pending notices: an alert is new when it was not pending."""

    kind = "alerts"

    def __init__(self, include_unread: bool) -> None:
        super().__init__(include_unread)
        #: The kinds to yield; ``None``: all but the counters (``COUNTERS``).
        self.kinds: frozenset[str] | None = None
        self.pending: list[list[Hashable]] = []  # at the last check
        self.done: list[list[Hashable]] = []  # handed over, and still pending
        self.pruned = False  # the last check forgot a handed-over alert

    def check(self, alerts: dict[str, Alert]) -> list[Alert]:
        kinds = self.kinds
        current = [
            a
            for k, a in alerts.items()
            if (k in kinds if kinds is not None else k not in COUNTERS)
        ]
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


TRACKERS: dict[str, type[Tracker[Any]]] = {
    "inbox": InboxTracker,
    "torrents": TorrentTracker,
    "alerts": AlertTracker,
}

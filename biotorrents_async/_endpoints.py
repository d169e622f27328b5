"""Endpoint namespaces: build parameters, structure results, page through listings.

Nothing here touches aiohttp: every call goes through ``ApiSession.request``.
Arguments are validated when a method is called, before any request is sent; the
``iter_*`` methods are plain functions that validate and then return an async
generator, so bad arguments fail at the call, not at the first ``anext``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Mapping
from enum import Enum
from typing import Any, Generic, Literal, TypeVar

import attrs
import cattrs

from ._converter import structure, structure_page
from ._hub import WatchHub
from ._pacing import background
from ._policy import RetryPolicy
from ._session import ApiSession
from ._stores import CursorStore
from ._stream import DEFAULT_FAIL_AFTER, DEFAULT_LEASE, WatchStream, open_stream
from .exceptions import (
    ApiError,
    ArgumentError,
    CookiesRequiredError,
    NotFoundError,
    ResponseError,
)
from .models import (
    Alert,
    AlertKind,
    BookmarkedArtist,
    BookmarkedGroup,
    Box,
    CommunityStats,
    Conversation,
    ConversationSummary,
    ForumPost,
    Page,
    SearchType,
    TorrentNotification,
    User,
    UserRecents,
    UserSearchResult,
)

__all__ = ["ACTION_NAME", "Bookmarks", "Inbox", "Notifications", "Users", "check_call"]

T = TypeVar("T")
E = TypeVar("E", bound=Enum)


@attrs.frozen
class _Listing(Generic[T]):
    """The facts that make one paged action differ from another."""

    action: str
    item_type: type[T]
    items_key: str
    #: What makes an item the same item on another page: its id.
    identity: Callable[[T], Hashable]
    page_key: str = "currentPage"
    fixed: Mapping[str, str] = attrs.field(factory=dict)


# Page sizes are the server's: 30 (usersearch), 25 (posts, inbox), 50 (notifications).
_USER_SEARCH = _Listing("usersearch", UserSearchResult, "results", lambda u: u.user_id)
_POSTS = _Listing(
    "userhistory", ForumPost, "threads", lambda p: p.post_id, fixed={"type": "posts"}
)
_INBOX = _Listing("inbox", ConversationSummary, "messages", lambda c: c.conv_id)
# notifications spells it currentPages (a typo inherited from WhatCD). The server
# lists a torrent at most once per user (its key is user + torrent).
_NOTIFICATIONS = _Listing(
    "notifications",
    TorrentNotification,
    "results",
    lambda n: n.torrent_id,
    page_key="currentPages",
)


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _optional_limit(value: object) -> int | None:
    return None if value is None else _positive("limit", value)


def _choice(name: str, value: object, enum: type[E]) -> E:
    if isinstance(value, enum):
        return value
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be a str, got {type(value).__name__}")
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}") from None


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be a str, got {type(value).__name__}")
    # The server trims and then tests PHP empty(), which is also true for "0".
    if value.strip() in ("", "0"):
        raise ValueError(f"{name} must not be empty (or '0'), got {value!r}")
    return value


# Gazelle's action names are snake_case identifiers (top10, torrentgroup,
# get_user_notifications); anything else is a typo or an injection attempt.
ACTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

# Parameter names as PHP reads them, array syntax included (filter_cat[1]).
_PARAM = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}(\[[A-Za-z0-9_]{0,64}\])?")


def _fields(name: str, values: object) -> dict[str, str]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ArgumentError(f"{name} must be a mapping, got {type(values).__name__}")
    out: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not _PARAM.fullmatch(key):
            raise ValueError(
                f"{name}: {key!r} is not a parameter name (letters, digits and _, "
                "optionally name[key])"
            )
        if key == "action":
            raise ValueError(f"{name} must not set 'action'; it is the first argument")
        # bool is an int, and yarl rejects it anyway; floats would be ambiguous.
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ArgumentError(
                f"{name}[{key!r}] must be a str or an int, got {type(value).__name__}"
            )
        out[key] = str(value)
    return out


def check_call(
    action: object, params: object, method: object, data: object
) -> tuple[str, dict[str, str], Literal["GET", "POST"], dict[str, str] | None]:
    """Validate the arguments of ``BioTorrentsClient.call``, before any request.

    Returns:
        The action, the query parameters, the method and the form fields (``None``
        for a GET), all as strings.

    Raises:
        ValueError: A malformed action or parameter name, an unknown method,
            form data on a GET.
        ArgumentError: An argument of the wrong type.
    """
    if not isinstance(action, str):
        raise ArgumentError(f"action must be a str, got {type(action).__name__}")
    if not ACTION_NAME.fullmatch(action):
        raise ValueError(
            f"action must be a plain identifier such as 'top10', got {action!r}"
        )
    if method not in ("GET", "POST"):
        raise ValueError(f"method must be 'GET' or 'POST', got {method!r}")
    query = _fields("params", params)
    form = _fields("data", data) if data is not None else None
    if method == "GET" and form is not None:
        raise ValueError("data (form fields) needs method='POST'")
    return action, query, "POST" if method == "POST" else "GET", form


class _Endpoint:
    def __init__(
        self,
        session: ApiSession,
        converter: cattrs.Converter,
        hub: WatchHub | None = None,
    ) -> None:
        self._session = session
        self._converter = converter
        self._hub = hub

    def _stream(self, kind: str, **options: Any) -> WatchStream[Any]:
        if self._hub is None:  # pragma: no cover - the client gives every area one
            raise RuntimeError("this area cannot be watched")
        return open_stream(self._hub, kind, rule=self._session.rate_limit, **options)

    async def _get(self, action: str, cl: Any, params: Mapping[str, str]) -> Any:
        answer = await self._session.call(action, params)
        try:
            return structure(self._converter, answer.value, cl, action)
        except ResponseError:
            # A success of the wrong shape may have been cached: not again.
            await self._session.discard()
            raise

    async def _page(
        self,
        listing: _Listing[T],
        params: Mapping[str, str],
        page: int,
        retry: RetryPolicy | None = None,
    ) -> Page[T]:
        query = {**listing.fixed, **params, "page": str(page)}
        answer = await self._session.call(listing.action, query, retry=retry)
        try:
            return structure_page(
                self._converter,
                answer.value,
                listing.item_type,
                items_key=listing.items_key,
                page_key=listing.page_key,
                action=listing.action,
                attempts=answer.attempts,
            )
        except ResponseError:
            await self._session.discard()  # see _get
            raise

    async def _iterate(
        self,
        listing: _Listing[T],
        params: Mapping[str, str],
        start_page: int,
        limit: int | None,
    ) -> AsyncIterator[T]:
        # One page at a time, fetched only when the consumer asks for more:
        # prefetching would spend rate-limit budget that a `break` then wastes.
        number, count = start_page, 0
        # The server pages by number over a listing that moves while we read
        # it: a reply lifts a conversation to the top, a new hit or post pushes
        # every item down, so an item read on page 1 can be on page 2 too.
        seen: set[Hashable] = set()
        while True:
            # Page fetches yield to calls the user makes directly.
            with background():
                page = await self._page(listing, params, number)
            for item in page.items:
                key = listing.identity(item)
                if key in seen:
                    continue
                seen.add(key)
                yield item
                count += 1
                if limit is not None and count >= limit:
                    return
            if not page.items or page.current_page >= page.pages:
                return
            number += 1


class Users(_Endpoint):
    """Profiles, search, community stats, recent torrents and forum posts."""

    async def get(self, user_id: int) -> User:
        """Fetch a user's profile (``action=user``).

        Args:
            user_id: The user's id (>= 1).

        Raises:
            NotFoundError: No such user.
        """
        uid = _positive("user_id", user_id)
        result: User = await self._get("user", User, {"id": str(uid)})
        return result

    async def search(self, query: str, *, page: int = 1) -> Page[UserSearchResult]:
        """Search usernames containing ``query`` (30 per page, ordered by name).

        ``%`` and ``_`` act as wildcards on the server.
        """
        params = {"search": _text("query", query)}
        return await self._page(_USER_SEARCH, params, _positive("page", page))

    def iter_search(
        self, query: str, *, start_page: int = 1, limit: int | None = None
    ) -> AsyncIterator[UserSearchResult]:
        """Iterate over every hit of a user search, page after page.

        Each page is one throttled request. Stops after ``limit`` items, on an
        empty page, or after the last page. Each user comes at most once, even
        when a new account pushes the others down a page between two reads;
        one that sorts above the page being read is not seen.
        """
        params = {"search": _text("query", query)}
        return self._iterate(
            _USER_SEARCH,
            params,
            _positive("start_page", start_page),
            _optional_limit(limit),
        )

    async def community_stats(self, user_id: int) -> CommunityStats:
        """Fetch a user's seeding/snatch counters (``action=community_stats``).

        A nonexistent user is not an error on the server: every count is zero.
        """
        uid = _positive("user_id", user_id)
        result: CommunityStats = await self._get(
            "community_stats", CommunityStats, {"userid": str(uid)}
        )
        return result

    async def recents(self, user_id: int, *, limit: int = 15) -> UserRecents:
        """Fetch a user's recent snatches and uploads (``action=user_recents``).

        Args:
            user_id: The user's id.
            limit: How many groups per list, 1 to 50 (the server rejects more).
        """
        uid = _positive("user_id", user_id)
        if _positive("limit", limit) > 50:
            raise ValueError(f"limit must be <= 50, got {limit}")
        result: UserRecents = await self._get(
            "user_recents", UserRecents, {"userid": str(uid), "limit": str(limit)}
        )
        return result

    async def posts(self, user_id: int, *, page: int = 1) -> Page[ForumPost]:
        """Fetch one page of a user's forum posts, newest first (25 per page)."""
        params = {"userid": str(_positive("user_id", user_id))}
        return await self._page(_POSTS, params, _positive("page", page))

    def iter_posts(
        self, user_id: int, *, start_page: int = 1, limit: int | None = None
    ) -> AsyncIterator[ForumPost]:
        """Iterate over a user's forum posts, page after page.

        Each post comes at most once, even when a new post pushes the others
        down a page between two reads; the new post itself is not seen.
        """
        params = {"userid": str(_positive("user_id", user_id))}
        return self._iterate(
            _POSTS, params, _positive("start_page", start_page), _optional_limit(limit)
        )


def _inbox_params(
    box: Box | str,
    search: str | None,
    search_type: SearchType | str | None,
    unread_first: bool,
) -> dict[str, str]:
    params = {"type": _choice("box", box, Box).value}
    if (search is None) != (search_type is None):
        # The server silently ignores a search without a valid searchtype.
        raise ValueError("search and search_type must be given together")
    if search is not None:
        params["search"] = _text("search", search)
        params["searchtype"] = _choice("search_type", search_type, SearchType).value
    if not isinstance(unread_first, bool):
        raise ArgumentError("unread_first must be a bool")
    if unread_first:
        params["sort"] = "unread"
    return params


class Inbox(_Endpoint):
    """Your private conversations."""

    async def conversations(
        self,
        *,
        page: int = 1,
        box: Box | str = Box.INBOX,
        search: str | None = None,
        search_type: SearchType | str | None = None,
        unread_first: bool = False,
    ) -> Page[ConversationSummary]:
        """Fetch one page of conversations (25 per page).

        The server's order: **sticky conversations always come first** (read or
        not, even with ``unread_first``), then the rest newest first by
        ``ConversationSummary.date``, which is the date of
        the conversation's *last* message — a reply moves an old conversation
        back to the top. So "stop at the first read one" misses mail; to follow
        new mail use ``watch``.

        Args:
            page: Page number (>= 1).
            box: ``"inbox"`` or ``"sentbox"``.
            search: Words to look for; needs ``search_type``.
            search_type: ``"subject"``, ``"message"`` (finds nothing: bodies are
                stored encrypted) or ``"user"`` (exact name, case-insensitive).
            unread_first: Put unread conversations first, *after* the sticky ones.
        """
        params = _inbox_params(box, search, search_type, unread_first)
        return await self._page(_INBOX, params, _positive("page", page))

    def iter_conversations(
        self,
        *,
        box: Box | str = Box.INBOX,
        search: str | None = None,
        search_type: SearchType | str | None = None,
        unread_first: bool = False,
        start_page: int = 1,
        limit: int | None = None,
    ) -> AsyncIterator[ConversationSummary]:
        """Iterate over conversations, page after page (one request per page).

        Same order as ``conversations``: sticky first, then by last-message
        date, newest first. The server pages by number while replies move
        conversations to the top, so one conversation can be on two pages read
        one after the other: each comes at most once per iteration (the first
        time it is seen). What moving data can still do: a conversation that
        gets a reply after its page was read jumps above the reader and is not
        seen again, and one that was not yet read and jumps above the page
        being read is not seen at all. To follow new mail and replies use
        ``watch``, which is built for that.
        """
        params = _inbox_params(box, search, search_type, unread_first)
        return self._iterate(
            _INBOX, params, _positive("start_page", start_page), _optional_limit(limit)
        )

    async def conversation(self, conv_id: int) -> Conversation:
        """Fetch a whole conversation. Note: the server marks it read.

        Raises:
            NotFoundError: No such conversation, or you are not a participant (the
                server says only ``{"status": "failure"}`` for both).
        """
        cid = _positive("conv_id", conv_id)
        try:
            result: Conversation = await self._get(
                "inbox", Conversation, {"type": "viewconv", "id": str(cid)}
            )
        except ApiError as exc:
            if exc.message is not None or isinstance(exc, NotFoundError):
                raise
            raise NotFoundError(
                f"conversation {cid} does not exist or is not yours (the server "
                "does not say which)",
                action="inbox",
            ) from None
        return result

    def watch(
        self,
        *,
        interval: float | None = None,
        store: CursorStore | None = None,
        include_unread: bool = False,
        name: str | None = None,
        fail_after: float | None = DEFAULT_FAIL_AFTER,
        exclusive: bool = True,
        lease: float = DEFAULT_LEASE,
    ) -> WatchStream[ConversationSummary]:
        """Watch for new conversations and new replies, until closed.

        Yields a ``ConversationSummary`` when a conversation first appears
        and again once per check that sees its last-message ``date`` moved
        forward (a reply; two replies between two checks are one item).
        Items come oldest first, each once; see "Writing a bot" in the
        documentation for the guarantees. Use it with ``async with`` for a clean
        stop:

            async with client.inbox.watch(store=FileStore("bot.db")) as stream:
                async for conversation in stream:
                    print(conversation.subject)

        Args:
            interval: Seconds between polls. The default leaves at least half of
                the allowance to direct calls (6.1 s for BioTorrents' rule);
                all streams of a client poll together, one request a round.
            store: Where the cursor lives (``MemoryStore`` by default;
                ``FileStore`` or ``RedisStore`` survive restarts).
            include_unread: On the very first start (an empty store), also
                yield the conversations that are unread now. By default only
                what arrives after the start is yielded.
            name: The cursor's name in the store (default ``"inbox"``). Each
                stream of a store needs its own: a name that holds another
                kind's cursor is refused.
            fail_after: Seconds of nothing but failed polls (the very first
                contact included) after which the stream raises
                ``StreamFailedError``, the last error chained (default 600;
                ``None``: never). Errors that waiting cannot fix
                (authentication, ``LegacyApiUnavailableError``, an ``ApiError``
                for this check) end it at once.
            exclusive: Of all the streams on this ``(store, name)``, in any
                process or host, one is active and the others stand by (the
                default). ``False``: every replica yields every item.
            lease: Seconds the active stream's hold on the cursor lasts unless
                renewed (every third of it): a standby takes over this long
                after the active one dies, at once after it stops cleanly.

        Raises:
            ValueError: An argument is invalid (before anything is sent).
            RuntimeError: The client is closed.
        """
        return self._stream(
            "inbox",
            interval=interval,
            store=store,
            include_unread=include_unread,
            name=name,
            fail_after=fail_after,
            exclusive=exclusive,
            lease=lease,
        )


class Bookmarks(_Endpoint):
    """Your bookmarks (the server sends them all at once, unpaged)."""

    async def torrents(self) -> tuple[BookmarkedGroup, ...]:
        """Fetch your bookmarked torrent groups, in bookmark order."""
        return await self._list("torrents", "bookmarks", BookmarkedGroup)

    async def artists(self) -> tuple[BookmarkedArtist, ...]:
        """Fetch your bookmarked artists (in no defined order)."""
        return await self._list("artists", "artists", BookmarkedArtist)

    async def _list(self, kind: str, key: str, item_type: type[T]) -> tuple[T, ...]:
        raw = await self._session.request("bookmarks", {"type": kind})
        # A missing key becomes None, which structuring reports as a
        # ResponseError naming the expected list.
        items = raw.get(key) if isinstance(raw, dict) else raw
        try:
            result: tuple[T, ...] = structure(
                self._converter,
                items,
                tuple[item_type, ...],  # type: ignore[valid-type]
                "bookmarks",
            )
        except ResponseError:
            await self._session.discard()  # see _Endpoint._get
            raise
        return result


class Notifications(_Endpoint):
    """Torrent-filter notifications and site alerts."""

    def __init__(
        self,
        session: ApiSession,
        converter: cattrs.Converter,
        hub: WatchHub | None = None,
        *,
        cookies: bool,
    ) -> None:
        super().__init__(session, converter, hub)
        self._cookies = cookies

    def _need_cookies(self, what: str) -> None:
        if not self._cookies:
            raise CookiesRequiredError(
                f"{what} needs the cookie session: the server refuses torrent "
                "notifications to token-only clients ('bad parameters'); give "
                "the session and userid cookies too (cookies= in Python, "
                "BIOTORRENTS_COOKIES or --cookies-file on the command line)",
                action="notifications",
            )

    async def torrents(
        self, *, page: int = 1, retry: RetryPolicy | None = None
    ) -> Page[TorrentNotification]:
        """Fetch one page of torrent-filter hits (50 per page, newest first).

        Reading changes the server: it marks **all** your torrent notifications
        read, not only this page. If an attempt's answer is lost (a cut-off body,
        an error page after the server did its work) the automatic retry gets the
        same hits with ``unread`` now ``False``; the returned page's
        ``Page.attempts`` is then above 1, so do not trust
        ``unread`` on such a page. Pass ``retry=RetryPolicy.none()`` to get an
        error instead of a retry. ``watch_torrents`` does not rely on
        ``unread`` at all.

        Args:
            page: Page number (>= 1).
            retry: This call's retry policy instead of the client's.

        Raises:
            CookiesRequiredError: The client has only a token; nothing is sent.
        """
        number = _positive("page", page)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ArgumentError("retry must be a RetryPolicy or None")
        self._need_cookies("notifications.torrents()")
        return await self._page(_NOTIFICATIONS, {}, number, retry)

    def iter_torrents(
        self, *, start_page: int = 1, limit: int | None = None
    ) -> AsyncIterator[TorrentNotification]:
        """Iterate over torrent-filter hits, page after page (marks all read).

        Each torrent comes at most once, even when new hits push the others
        down a page between two reads; the new hits themselves are not seen
        (``watch_torrents`` yields them).

        Raises:
            CookiesRequiredError: The client has only a token; nothing is sent.
        """
        start, checked = _positive("start_page", start_page), _optional_limit(limit)
        self._need_cookies("notifications.iter_torrents()")
        return self._iterate(_NOTIFICATIONS, {}, start, checked)

    def watch_torrents(
        self,
        *,
        interval: float | None = None,
        store: CursorStore | None = None,
        include_unread: bool = False,
        name: str | None = None,
        fail_after: float | None = DEFAULT_FAIL_AFTER,
        exclusive: bool = True,
        lease: float = DEFAULT_LEASE,
    ) -> WatchStream[TorrentNotification]:
        """Watch for new torrent-filter hits, each yielded once, oldest first.

        Listing the hits marks all of them read on the server (the site does the
        same); the stream does not rely on ``unread``. Arguments as for
        ``Inbox.watch`` (``include_unread``: the hits unread at the very first
        start; ``name`` defaults to ``"torrents"``).

        Raises:
            CookiesRequiredError: The client has only a token; nothing is sent.
            ValueError: An argument is invalid.
        """
        stream = self._stream(
            "torrents",
            interval=interval,
            store=store,
            include_unread=include_unread,
            name=name,
            fail_after=fail_after,
            exclusive=exclusive,
            lease=lease,
        )
        self._need_cookies("notifications.watch_torrents()")
        return stream

    def watch_alerts(
        self,
        *,
        interval: float | None = None,
        store: CursorStore | None = None,
        include_unread: bool = False,
        name: str | None = None,
        fail_after: float | None = DEFAULT_FAIL_AFTER,
        exclusive: bool = True,
        lease: float = DEFAULT_LEASE,
        kinds: Iterable[AlertKind | str] | None = None,
    ) -> WatchStream[Alert]:
        """Watch for site notices: each alert once per appearance, kind included.

        An alert is new when it (its kind, id, message and link) was not pending
        at the previous check; once it is gone and comes back, it is new again.
        Arguments as for ``Inbox.watch`` (``include_unread``: the alerts
        pending at the very first start; ``name`` defaults to ``"alerts"``).

        What the server keeps decides what this stream can see: quotes are one
        alert (``New quote``, then ``New quotes``), news and the blog show only
        their latest post, and an alert read or cleared on the site between two
        checks is not seen (see "Server behaviour").

        Args:
            interval: As for ``Inbox.watch``.
            store: As for ``Inbox.watch``.
            include_unread: The alerts pending at the very first start.
            name: The cursor's name in the store (default ``"alerts"``).
            fail_after: As for ``Inbox.watch``.
            exclusive: As for ``Inbox.watch``.
            lease: As for ``Inbox.watch``.
            kinds: The alert kinds to yield (``AlertKind`` or its value). By
                default every kind but the counters ``Inbox`` and ``Torrents``
                ("You have 3 new messages"), which repeat what ``watch()`` and
                ``watch_torrents()`` yield.

        Raises:
            ValueError: An argument is invalid.
        """
        return self._stream(
            "alerts",
            interval=interval,
            store=store,
            include_unread=include_unread,
            name=name,
            fail_after=fail_after,
            exclusive=exclusive,
            lease=lease,
            kinds=kinds,
        )

    async def alerts(self) -> dict[str, Alert]:
        """Fetch pending pop-up notices, keyed by type name (``{}`` if none)."""
        result: dict[str, Alert] = await self._get(
            "get_user_notifications", dict[str, Alert], {}
        )
        return result

    async def clear(self, kind: AlertKind | str) -> None:
        """Clear one kind of notice (POST; the server answers with an empty body).

        The server cannot confirm the effect; re-read ``alerts`` to see it.

        Args:
            kind: One of ``AlertKind`` (or its string value).
        """
        value = _choice("kind", kind, AlertKind).value
        await self._session.request(
            "clear_user_notification",
            method="POST",
            data={"type": value},
            empty_ok=True,
        )

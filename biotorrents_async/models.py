"""Typed results of the BioTorrents.de API.

Every model is a frozen attrs class. Attribute names are the snake_case of the
JSON key (``userId`` → ``user_id``); irregular keys are normalised (``bbbody`` and
``bbBody`` → ``bb_body``, ``requiredratio`` → ``required_ratio``, ``class`` →
``class_name``, ``ID``/``Name``/``WikiImage`` → ``id``/``name``/``wiki_image``).

Conventions, applied by the converter (see ``_converter``):

- plain-text fields arrive HTML-escaped and are unescaped (``"Tom &amp; Jerry"`` →
  ``"Tom & Jerry"``); fields that are HTML (``body``, ``profile_text``) are kept;
- numbers sent as strings, with thousands separators, become ``int``;
- ``false`` meaning "hidden" (community stats) becomes ``None``;
- dates become naive ``datetime.datetime`` in server time; ``""`` → ``None``;
- empty strings for absent names and URLs become ``None``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import Annotated, Generic, TypeVar

import attrs

__all__ = [
    "Alert",
    "AlertKind",
    "BookmarkedArtist",
    "BookmarkedGroup",
    "BookmarkedTorrent",
    "Box",
    "CommunityStats",
    "Conversation",
    "ConversationSummary",
    "ForumPost",
    "Index",
    "IndexNotifications",
    "IndexUserStats",
    "Message",
    "Page",
    "RecentArtist",
    "RecentGroup",
    "SearchType",
    "TorrentNotification",
    "User",
    "UserCommunity",
    "UserPersonal",
    "UserRanks",
    "UserRecents",
    "UserSearchResult",
    "UserStats",
]

T = TypeVar("T")


class _Marker:
    """Tags an ``Annotated`` type with a converter rule."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


#: HTML-escaped plain text; the converter unescapes it.
UNESCAPE = _Marker("unescape")
#: HTML-escaped text where ``""`` (the server's NULL) means absent.
UNESCAPE_OR_NONE = _Marker("unescape-or-none")
#: A count where ``false`` means "hidden by paranoia".
HIDDEN_IS_NONE = _Marker("hidden-is-none")
#: A MySQL DATETIME where ``""`` (or the zero date) means absent.
DATE_OR_NONE = _Marker("date-or-none")

Text = Annotated[str, UNESCAPE]
OptionalText = Annotated[str | None, UNESCAPE_OR_NONE]
HiddenInt = Annotated[int | None, HIDDEN_IS_NONE]
HiddenFloat = Annotated[float | None, HIDDEN_IS_NONE]
OptionalDate = Annotated[_dt.datetime | None, DATE_OR_NONE]


def _key(name: str) -> dict[str, str]:
    """Field metadata naming the JSON key when it is not the camelCase of the field."""
    return {"key": name}


class AlertKind(StrEnum):
    """The notice types of ``get_user_notifications`` / ``clear_user_notification``."""

    INBOX = "Inbox"
    NEWS = "News"
    BLOG = "Blog"
    STAFF_PM = "StaffPM"
    TORRENTS = "Torrents"
    QUOTES = "Quotes"
    SUBSCRIPTIONS = "Subscriptions"
    COLLAGES = "Collages"
    GLOBAL = "Global"


class Box(StrEnum):
    """Which side of the inbox to list."""

    INBOX = "inbox"
    SENTBOX = "sentbox"


class SearchType(StrEnum):
    """What an inbox search matches against.

    ``MESSAGE`` finds nothing in practice: the server stores bodies encrypted.
    """

    SUBJECT = "subject"
    MESSAGE = "message"
    USER = "user"


@attrs.frozen
class Page(Generic[T]):
    """One page of a paged listing.

    Attributes:
        items: The items on this page (empty past the last page).
        current_page: The page number the server says this is.
        pages: The total number of pages (``0`` for an empty listing).
        attempts: The HTTP attempts it took to get this page. Above 1, an earlier
            attempt's answer was lost after the server may have acted on it (for
            ``notifications.torrents()``: marked every hit read).
    """

    items: Sequence[T]
    current_page: int
    pages: int
    attempts: int = attrs.field(default=1, kw_only=True, eq=False)

    @property
    def has_next(self) -> bool:
        """Whether a following page can hold more items."""
        return bool(self.items) and self.current_page < self.pages

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


# --- index ---------------------------------------------------------------------


@attrs.frozen
class IndexNotifications:
    """Unread counters from ``index``.

    ``new_subscriptions`` is ``True`` only when exactly one subscription is new (a
    server bug kept from WhatCD); token-only requests always see ``new_announcement``
    and ``new_blog`` as ``True``.
    """

    messages: int
    notifications: int
    new_announcement: bool
    new_blog: bool
    new_subscriptions: bool


@attrs.frozen
class IndexUserStats:
    """Transfer statistics from ``index`` (zeros with token-only auth).

    ``ratio`` is ``-1`` when nothing was downloaded, and ratios of 1000 or more are
    mangled by the server to their leading digits.
    """

    uploaded: int
    downloaded: int
    ratio: float
    required_ratio: float = attrs.field(metadata=_key("requiredratio"))
    class_name: str | None = attrs.field(metadata=_key("class"))

    @property
    def requiredratio(self) -> float:
        """Alias of ``required_ratio``, the server's spelling."""
        return self.required_ratio


@attrs.frozen
class Index:
    """Who you are (``index``).

    With token-only auth the server loads a skeletal user: ``username``,
    ``authkey``, ``passkey`` and ``userstats.class_name`` are ``None``. The keys are
    secrets and are left out of ``repr``.
    """

    username: OptionalText
    id: int
    authkey: str | None = attrs.field(repr=False)
    passkey: str | None = attrs.field(repr=False)
    notifications: IndexNotifications
    userstats: IndexUserStats


# --- user ----------------------------------------------------------------------


@attrs.frozen
class UserStats:
    """Transfer statistics of a profile. ``ratio`` is ``0`` for ∞ as well as 0/0."""

    joined_date: OptionalDate
    last_access: OptionalDate
    uploaded: int
    downloaded: int
    ratio: float
    required_ratio: float


@attrs.frozen
class UserRanks:
    """Percentile ranks of a profile (``0`` when absent)."""

    uploaded: int
    downloaded: int
    uploads: int
    requests: int
    bounty: int
    posts: int
    artists: int
    overall: int


@attrs.frozen
class UserPersonal:
    """Class and account flags of a profile.

    ``donor`` is always ``False`` (a server bug; use ``usersearch`` or the class
    name) and ``passkey`` always ``None`` (the server never shows it here).
    """

    class_name: OptionalText = attrs.field(metadata=_key("class"))
    paranoia: int
    paranoia_text: Text
    donor: bool
    warned: bool
    enabled: bool
    passkey: OptionalText = attrs.field(repr=False)


@attrs.frozen
class UserCommunity:
    """Community counters of a profile. ``uploaded`` counts uploads, not bytes."""

    posts: int
    torrent_comments: int
    artist_comments: int
    collage_comments: int
    request_comments: int
    collages_started: int
    collages_contrib: int
    requests_filled: int
    bounty_earned: int
    requests_voted: int
    bounty_spent: int
    uploaded: int
    groups: int
    seeding: int
    leeching: int
    snatched: int
    invited: int
    artists_added: int


@attrs.frozen
class User:
    """A user profile (``user``). ``profile_text`` is HTML, as the server sent it."""

    username: Text
    avatar: OptionalText
    is_friend: bool
    profile_text: str
    stats: UserStats
    ranks: UserRanks
    personal: UserPersonal
    community: UserCommunity


@attrs.frozen
class UserSearchResult:
    """One hit of ``usersearch``."""

    user_id: int
    username: Text
    donor: bool
    warned: bool
    enabled: bool
    class_name: OptionalText = attrs.field(metadata=_key("class"))
    avatar: OptionalText


@attrs.frozen
class CommunityStats:
    """Counters from ``community_stats``; ``None`` where the server hides a value.

    ``seedingperc`` is a percentage (``87``, ``56.99999999999999``), ``None`` when
    hidden or when there are no snatches.
    """

    leeching: HiddenInt
    seeding: HiddenInt
    snatched: HiddenInt
    usnatched: HiddenInt
    downloaded: HiddenInt
    udownloaded: HiddenInt
    seedingperc: HiddenFloat


@attrs.frozen
class RecentArtist:
    """An artist of a recent torrent group. The server sends the name unescaped."""

    id: int
    name: str


@attrs.frozen
class RecentGroup:
    """A torrent group from ``user_recents`` (only category-1 groups with images)."""

    id: int = attrs.field(metadata=_key("ID"))
    name: Text = attrs.field(metadata=_key("Name"))
    wiki_image: OptionalText = attrs.field(metadata=_key("WikiImage"))
    artists: tuple[RecentArtist, ...]


@attrs.frozen
class UserRecents:
    """Recent snatches and uploads (``user_recents``); ``None`` if ``"hidden"``."""

    snatches: tuple[RecentGroup, ...] | None
    uploads: tuple[RecentGroup, ...] | None


@attrs.frozen
class ForumPost:
    """A forum post from ``userhistory&type=posts``.

    The client always passes ``userid``, and then the server shifts three fields:
    ``last_read`` holds the thread's locked flag, ``locked`` its sticky flag and
    ``sticky`` is always ``False``. ``body`` is HTML; ``bb_body`` is the source.
    """

    post_id: int
    topic_id: int
    thread_title: Text
    last_post_id: int
    last_read: int
    locked: bool
    sticky: bool
    added_time: OptionalDate
    body: str
    bb_body: Text = attrs.field(metadata=_key("bbbody"))
    edited_user_id: int
    edited_time: OptionalDate
    edited_username: OptionalText


# --- inbox ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ConversationSummary:
    """One conversation in an inbox listing.

    ``sender_id``/``username`` are the *other* participant: the recipient in the
    sentbox, ``0``/``None`` for system messages. ``warned`` is always ``False``.
    ``date`` is the date of the conversation's **last** message (received, or
    sent in the sentbox), so a reply makes an old conversation new again; and
    listings put sticky conversations first whatever their date or ``unread``.
    """

    conv_id: int
    subject: Text
    unread: bool
    sticky: bool
    forwarded_id: int
    forwarded_name: OptionalText
    sender_id: int
    username: OptionalText
    # The docs omit ``avatar``; the code sends it. Tolerate both.
    avatar: OptionalText = None
    donor: bool
    warned: bool
    enabled: bool
    date: OptionalDate


@attrs.frozen(kw_only=True)
class Message:
    """One message of a conversation. ``bb_body`` is raw source, ``body`` HTML."""

    message_id: int
    sender_id: int
    sender_name: OptionalText
    sent_date: OptionalDate
    avatar: OptionalText = None
    bb_body: str
    body: str


@attrs.frozen
class Conversation:
    """A whole conversation (``inbox&type=viewconv``), oldest message first."""

    conv_id: int
    subject: Text
    sticky: bool
    messages: tuple[Message, ...]


# --- bookmarks -----------------------------------------------------------------


@attrs.frozen
class BookmarkedTorrent:
    """A torrent of a bookmarked group.

    ``free_torrent`` is always ``False`` (server bug); ``has_file`` is the torrent
    id again, as the server sends it.
    """

    id: int
    group_id: int
    platform: Text
    file_count: int
    free_torrent: bool
    size: int
    leechers: int
    seeders: int
    snatched: int
    time: OptionalDate
    has_file: int


@attrs.frozen
class BookmarkedGroup:
    """A bookmarked torrent group. ``vanity_house`` is always ``False``."""

    id: int
    name: Text
    year: int
    accession: OptionalText
    tag_list: Text
    vanity_house: bool
    picture: OptionalText
    torrents: tuple[BookmarkedTorrent, ...]


@attrs.frozen
class BookmarkedArtist:
    """A bookmarked artist."""

    artist_id: int
    artist_name: Text


# --- notifications -------------------------------------------------------------


@attrs.frozen
class TorrentNotification:
    """A torrent-filter hit from ``notifications``.

    ``notification_time`` is the torrent's upload time. The music-era fields
    (``format``, ``encoding``, ``remaster_title``, ``scene``, ``has_log``, …) carry
    fixed values on BioTorrents and are kept only for completeness.
    """

    torrent_id: int
    group_id: int
    group_name: OptionalText
    group_category_id: int
    wiki_image: OptionalText
    torrent_tags: OptionalText
    size: int
    file_count: int
    format: str | None
    encoding: str | None
    media: OptionalText
    scene: bool
    group_year: int
    remaster_year: int
    remaster_title: str | None
    snatched: int
    seeders: int
    leechers: int
    notification_time: OptionalDate
    has_log: bool
    has_cue: bool
    log_score: float
    free_torrent: bool
    log_in_db: bool
    unread: bool


@attrs.frozen
class Alert:
    """A pop-up notice from ``get_user_notifications``.

    ``url`` is relative to the site; ``importance`` is the server's CSS class
    (``"information"``, ``"confirmation"``, ``"warning"``, ``"error"``); ``kind``
    is the notice type (``"Inbox"``, ``"News"``, … see ``AlertKind``), the
    key the server files it under.
    """

    id: int
    message: Text
    url: Text
    importance: str
    kind: str = attrs.field(default="", kw_only=True)

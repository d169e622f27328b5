"""The fake server's data: typed records, a small API to add them, and a seed set."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Callable, Iterable
from typing import Any

import attrs

__all__ = [
    "FakeArtist",
    "FakeConversation",
    "FakeData",
    "FakeGroup",
    "FakeMessage",
    "FakeNotification",
    "FakePost",
    "FakeThread",
    "FakeTorrent",
    "FakeUser",
]

#: Classes whose members have ``site_torrents_notify``.
NOTIFY_CLASSES = frozenset({"Power User", "Elite", "Donor", "Moderator", "Sysop"})
#: Classes with ``site_view_torrent_snatchlist`` (community_stats).
SNATCHLIST_CLASSES = frozenset({"Moderator", "Sysop"})
#: Class levels, for "viewer class >= target class" checks.
CLASS_LEVELS = {
    "User": 100,
    "Member": 150,
    "Power User": 200,
    "Donor": 202,
    "Elite": 250,
    "Moderator": 800,
    "Sysop": 1000,
}
EPOCH = dt.datetime(2021, 1, 18, 12, 0, 0)


def wall_clock() -> dt.datetime:
    """The server's clock: local time, whole seconds, like MySQL's ``NOW()``."""
    return dt.datetime.now().replace(microsecond=0)


def _hex(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


@attrs.define
class FakeUser:
    """A user account. ``class_name == "Donor"`` exempts it from the rate limit."""

    id: int
    username: str
    class_name: str = "User"
    avatar: str = ""
    profile_text: str = ""
    joined: dt.datetime = EPOCH
    last_access: dt.datetime | None = EPOCH
    uploaded: int = 0
    downloaded: int = 0
    required_ratio: float = 0.0
    donor: bool = False
    warned: bool = False
    enabled: bool = True
    #: community_stats overrides (``None`` = computed from snatches/uploads).
    seeding: int | None = None
    snatched: int | None = None
    leeching: int = 0
    last_read_news: int = 0
    last_read_blog: int = 0
    #: Forum posts quoting this user that they have not read (``add_quote``).
    unread_quotes: int = 0
    #: Subscribed threads with posts this user has not read.
    new_subscriptions: int = 0
    authkey: str = ""
    passkey: str = ""
    #: Pop-up notices set as is (``add_alert``): kind → (message, url). Inbox,
    #: News, Blog and Torrents are computed from the data and never read here;
    #: Quotes and Subscriptions are computed too while their counters are above 0.
    alerts: dict[str, tuple[str, str]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self.authkey = self.authkey or _hex(f"authkey{self.id}")
        self.passkey = self.passkey or _hex(f"passkey{self.id}")


@attrs.define
class FakeMessage:
    """One private message; ``body`` is BBCode source, ``sender_id`` 0 = System."""

    sender_id: int
    body: str
    sent: dt.datetime


@attrs.define
class FakeConversation:
    """A private conversation between ``participants`` (sender first)."""

    id: int
    subject: str
    participants: tuple[int, int]
    messages: list[FakeMessage]
    sticky: bool = False
    unread_for: set[int] = attrs.field(factory=set)
    forwarded_id: int = 0


@attrs.define
class FakeArtist:
    """An artist (lab, author) credited on torrent groups."""

    id: int
    name: str


@attrs.define
class FakeTorrent:
    """One torrent of a group."""

    id: int
    group_id: int
    platform: str
    file_count: int
    size: int
    seeders: int
    leechers: int
    snatched: int
    time: dt.datetime
    uploader_id: int
    free: bool = False


@attrs.define
class FakeGroup:
    """A torrent group (a dataset)."""

    id: int
    name: str
    year: int
    accession: str
    tags: list[str]
    picture: str
    artists: list[FakeArtist]
    category_id: int = 1
    torrents: list[FakeTorrent] = attrs.field(factory=list)


@attrs.define
class FakeThread:
    """A forum thread."""

    id: int
    title: str
    locked: bool = False
    sticky: bool = False


@attrs.define
class FakePost:
    """A forum post; ``body`` is BBCode source."""

    id: int
    thread_id: int
    author_id: int
    body: str
    added: dt.datetime
    edited_user_id: int = 0
    edited_time: dt.datetime | None = None


@attrs.define
class FakeNotification:
    """A torrent-filter hit for ``user_id``: at most one per user and torrent.

    ``filter_id`` is the filter it was made by (the first that matched); the
    listing groups a page's rows by it, and its JSON does not carry it.
    """

    user_id: int
    torrent_id: int
    unread: bool = True
    filter_id: int = 1


@attrs.define
class FakeData:
    """Everything the fake server knows. Add to it with the ``add_*`` methods."""

    users: dict[int, FakeUser] = attrs.field(factory=dict)
    conversations: dict[int, FakeConversation] = attrs.field(factory=dict)
    groups: dict[int, FakeGroup] = attrs.field(factory=dict)
    threads: dict[int, FakeThread] = attrs.field(factory=dict)
    posts: dict[int, FakePost] = attrs.field(factory=dict)
    notifications: list[FakeNotification] = attrs.field(factory=list)
    bookmarks: dict[int, list[int]] = attrs.field(factory=dict)
    artist_bookmarks: dict[int, list[int]] = attrs.field(factory=dict)
    snatches: dict[int, list[int]] = attrs.field(factory=dict)
    #: News posts, ``(id, title)``.
    news: list[tuple[int, str]] = attrs.field(factory=list)
    #: Blog posts marked important, ``(id, title)``: the only ones the API shows.
    blog: list[tuple[int, str]] = attrs.field(factory=list)
    artists: dict[int, FakeArtist] = attrs.field(factory=dict)
    #: The server's clock: the date of what is added without one. Replace it
    #: (with a ticking fake, say) to control dates in tests.
    now: Callable[[], dt.datetime] = attrs.field(default=wall_clock, repr=False)
    #: What the ``add_*`` methods made, in order, as JSON-ready dicts (``kind``,
    #: its ids, ``time``); ``FakeBioTorrents.created`` shows it.
    created: list[dict[str, Any]] = attrs.field(factory=list, repr=False)
    #: Called with each new ``created`` entry (``fake-server --record``).
    on_created: list[Callable[[dict[str, Any]], None]] = attrs.field(
        factory=list, repr=False
    )
    _last_blog_id: int = attrs.field(default=0, repr=False)

    def _made(self, kind: str, at: dt.datetime | None = None, **ids: Any) -> None:
        # The item's own date when it has one: reading ``now`` again would move
        # a ticking test clock on and shift the dates of what comes next.
        when = at or self.now()
        entry = {"kind": kind, **ids, "time": when.isoformat()}
        self.created.append(entry)
        for listener in self.on_created:
            listener(entry)

    # --- ids --------------------------------------------------------------------

    @staticmethod
    def _next(ids: Iterable[int], start: int = 1) -> int:
        return max(ids, default=start - 1) + 1

    def torrent(self, torrent_id: int) -> FakeTorrent | None:
        """Find a torrent by id."""
        for group in self.groups.values():
            for torrent in group.torrents:
                if torrent.id == torrent_id:
                    return torrent
        return None

    # --- the typed API for tests --------------------------------------------------

    def add_user(self, username: str, **fields: object) -> FakeUser:
        """Create a user (any ``FakeUser`` field may be given)."""
        user_id = int(fields.pop("id", self._next(self.users)))  # type: ignore[call-overload]
        user = FakeUser(user_id, username, **fields)  # type: ignore[arg-type]
        self.users[user.id] = user
        self._made("user", user_id=user.id)
        return user

    def add_conversation(
        self,
        subject: str,
        *,
        sender: int,
        recipient: int,
        bodies: Iterable[str] = ("Hello!",),
        sent: dt.datetime | None = None,
        unread: bool = True,
        sticky: bool = False,
    ) -> FakeConversation:
        """Create a conversation; messages alternate between the two, sender first.

        ``sender=0`` makes a system message. The recipient sees it unread unless
        ``unread=False``. The first message is dated ``sent`` (default: now, by
        ``now``), the others 7 minutes apart.
        """
        when = sent or self.now()
        messages = []
        for n, body in enumerate(bodies):
            author = sender if n % 2 == 0 else recipient
            messages.append(
                FakeMessage(author, body, when + dt.timedelta(minutes=7 * n))
            )
        conv = FakeConversation(
            id=self._next(self.conversations),
            subject=subject,
            participants=(sender, recipient),
            messages=messages,
            sticky=sticky,
            unread_for={recipient} if unread else set(),
        )
        self.conversations[conv.id] = conv
        self._made(
            "conversation",
            when,
            conv_id=conv.id,
            sender_id=sender,
            recipient_id=recipient,
        )
        return conv

    def add_reply(
        self,
        conversation: FakeConversation,
        *,
        sender: int,
        body: str = "Thanks!",
        sent: dt.datetime | None = None,
    ) -> FakeMessage:
        """Add a message to ``conversation``; the other participant sees it unread.

        It moves the conversation's date (its last message) forward for them.
        """
        message = FakeMessage(sender, body, sent or self.now())
        conversation.messages.append(message)
        conversation.unread_for |= {p for p in conversation.participants if p != sender}
        self._made(
            "reply",
            message.sent,
            conv_id=conversation.id,
            message_index=len(conversation.messages) - 1,
            sender_id=sender,
        )
        return message

    def add_artist(self, name: str) -> FakeArtist:
        """Create an artist."""
        artist = FakeArtist(self._next(self.artists), name)
        self.artists[artist.id] = artist
        self._made("artist", artist_id=artist.id)
        return artist

    def add_group(
        self,
        name: str,
        *,
        year: int = 2020,
        accession: str = "",
        tags: Iterable[str] = (),
        picture: str = "",
        artists: Iterable[FakeArtist] = (),
        category_id: int = 1,
    ) -> FakeGroup:
        """Create a torrent group (a dataset)."""
        group = FakeGroup(
            id=self._next(self.groups, 100),
            name=name,
            year=year,
            accession=accession,
            tags=list(tags),
            picture=picture,
            artists=list(artists),
            category_id=category_id,
        )
        self.groups[group.id] = group
        self._made("group", group_id=group.id)
        return group

    def add_torrent(
        self,
        group: FakeGroup,
        *,
        uploader: int,
        platform: str = "Illumina",
        size: int = 1 << 30,
        file_count: int = 1,
        time: dt.datetime | None = None,
        seeders: int = 1,
        leechers: int = 0,
        snatched: int = 0,
    ) -> FakeTorrent:
        """Add a torrent to ``group``."""
        ids = [t.id for g in self.groups.values() for t in g.torrents]
        torrent = FakeTorrent(
            id=self._next(ids, 100),
            group_id=group.id,
            platform=platform,
            file_count=file_count,
            size=size,
            seeders=seeders,
            leechers=leechers,
            snatched=snatched,
            time=time or self.now(),
            uploader_id=uploader,
        )
        group.torrents.append(torrent)
        self._made("torrent", torrent.time, torrent_id=torrent.id, group_id=group.id)
        return torrent

    def add_thread(self, title: str, *, locked: bool = False) -> FakeThread:
        """Create a forum thread."""
        thread = FakeThread(self._next(self.threads), title, locked=locked)
        self.threads[thread.id] = thread
        self._made("thread", thread_id=thread.id)
        return thread

    def add_post(
        self, thread: FakeThread, *, author: int, body: str, added: dt.datetime
    ) -> FakePost:
        """Add a post to ``thread``."""
        post = FakePost(self._next(self.posts), thread.id, author, body, added)
        self.posts[post.id] = post
        self._made(
            "post", added, post_id=post.id, thread_id=thread.id, author_id=author
        )
        return post

    def add_notification(
        self,
        user_id: int,
        torrent: FakeTorrent,
        *,
        unread: bool = True,
        filter_id: int = 1,
    ) -> FakeNotification:
        """Record a torrent-filter hit for ``user_id`` by filter ``filter_id``.

        Like the real table (its key is user + torrent), a torrent that a second
        filter matches is not listed again: the first hit is returned.
        """
        for hit in self.notifications:
            if hit.user_id == user_id and hit.torrent_id == torrent.id:
                return hit
        hit = FakeNotification(user_id, torrent.id, unread, filter_id)
        self.notifications.append(hit)
        self._made("notification", user_id=user_id, torrent_id=torrent.id)
        return hit

    def add_alert(self, user_id: int, kind: str, message: str, url: str) -> None:
        """Set a pop-up notice as is (``StaffPM``, ``Collages``, ``Global``, …).

        It replaces one of the same kind and shows until it is cleared. For the
        notices the server computes, add what it counts instead: ``add_quote``,
        ``add_subscription_post``, ``add_news``, ``add_blog``, a conversation or
        a torrent hit (a ``Quotes`` or ``Subscriptions`` notice set here shows
        only while no quote or subscription post is unread).
        """
        self.users[user_id].alerts[kind] = (message, url)
        self._made("alert", user_id=user_id, alert_kind=kind)

    def add_news(self, title: str) -> int:
        """Post a news item; return its id.

        Like the site, the ``News`` alert shows only the latest unread one: two
        posts between two reads are one alert.
        """
        news_id = self._next(n for n, _ in self.news)
        self.news.append((news_id, title))
        self._made("news", news_id=news_id)
        return news_id

    def add_blog(self, title: str, *, important: bool = True) -> int:
        """Post on the blog; return the post's id.

        Only posts marked important reach the API (the ``Blog`` alert and
        ``index``'s ``newBlog``), and only the latest of them.
        """
        self._last_blog_id = blog_id = (
            max(self._last_blog_id, *(b for b, _ in self.blog), 0) + 1
        )
        if important:
            self.blog.append((blog_id, title))
        self._made("blog", blog_id=blog_id, important=important)
        return blog_id

    def add_quote(
        self, user_id: int, *, by: int = 1, body: str = "Good point."
    ) -> FakePost:
        """Quote ``user_id`` in a forum post by ``by``; return the post.

        The server keeps one ``Quotes`` alert whatever the number: ``New quote``
        while one is unread, ``New quotes`` from two on (a third changes
        nothing); clearing ``Quotes`` reads them all. ``index`` does not count
        quotes.
        """
        thread = next(iter(self.threads.values()), None) or self.add_thread("Quotes")
        user = self.users[user_id]
        post = self.add_post(
            thread,
            author=by,
            body=f"[quote={user.username}]...[/quote]{body}",
            added=self.now(),
        )
        user.unread_quotes += 1
        self._made("quote", post.added, user_id=user_id, post_id=post.id)
        return post

    def add_subscription_post(self, user_id: int) -> None:
        """A new post in a thread ``user_id`` subscribes to, unread by them.

        The ``Subscriptions`` alert says ``New subscription`` or ``New
        subscriptions``; ``index``'s ``newSubscriptions`` is ``True`` only while
        exactly one is new (a server bug kept from WhatCD).
        """
        self.users[user_id].new_subscriptions += 1
        self._made("subscription", user_id=user_id)

    # --- the seed set -------------------------------------------------------------

    @classmethod
    def seeded(cls, seed: int = 0) -> FakeData:
        """Return a realistic open-science data set; every listing spans pages.

        Users 1 (``labadmin``, Sysop, rate-limit exempt) and 2 (``kestrel``,
        Power User, the demo account) come first.
        """
        rng = random.Random(seed)
        data = cls()
        data.add_user("labadmin", id=1, class_name="Sysop", uploaded=5 << 30)
        data.add_user(
            "kestrel",
            id=2,
            class_name="Power User",
            avatar="https://img.example.org/a.png?w=64&h=64",
            profile_text="Metagenomics, mostly **16S** amplicon sets & friends.",
            uploaded=21_474_836_480,
            downloaded=12_884_901_888,
            joined=dt.datetime(2020, 6, 14, 9, 12, 44),
            seeding=1204,
            snatched=1377,
            last_access=dt.datetime(2021, 1, 17, 22, 5, 31),
        )
        special = ["marshé", "Ana Jiménez", "Kenji 渡辺", "O'Brien & Sons", "Zoë"]
        for name in special:
            data.add_user(name, class_name=rng.choice(["User", "Member", "Elite"]))
        labs = ["lab", "biolab", "seqlab", "proteolab", "labrat", "wetlab", "drylab"]
        for n in range(68):
            stem = labs[n % len(labs)]
            data.add_user(
                f"{stem}_{n:02d}",
                class_name=rng.choice(["User", "Member", "Power User", "Donor"]),
                donor=rng.random() < 0.2,
                warned=n % 17 == 0,
                avatar="" if n % 3 else f"https://ptpimg.example/{n:04d}.png",
            )
        data.add_user("kestrel_lab", class_name="Donor", donor=True)

        names = [
            "Escherichia Lab",
            "Jane Q. Sequencer",
            "Ana Jiménez",
            "Kenji Watanabe",
            "Félix Blei & co",
        ]
        artists = [data.add_artist(n) for n in names]
        datasets = [
            ("Arabidopsis root single-cell atlas", "GSE152766", "single_cell plant"),
            ("SARS-CoV-2 wastewater surveillance, Jan 2021", "PRJNA661613", "covid"),
            ("E. coli K-12 MG1655 genome", "NC_000913.3", "bacteria genome"),
            ("Human chr21 reads & alignments", "SRR000001", "human reads"),
            ("Bruker timsTOF proteomics <raw>", "PXD023050", "proteomics"),
            ("Psilocybe serbica enzymes", "", "fungi enzymes"),
        ]
        uploader_ids = [2, 1, 3, 4]
        for n in range(60):
            title, acc, tags = datasets[n % len(datasets)]
            group = data.add_group(
                f"{title} #{n + 1}",
                year=2015 + n % 7,
                accession=f"{acc}.{n}" if acc else "",
                tags=tags.split(),
                # Only category-1 groups with an image show in user_recents.
                picture="" if n % 5 == 4 else f"https://i.imgur.example/{n:03d}.png",
                artists=rng.sample(artists, k=1 + n % 3),
                category_id=1 if n % 4 else 2,
            )
            data.add_torrent(
                group,
                uploader=uploader_ids[n % len(uploader_ids)],
                platform=rng.choice(["Illumina", "Nanopore", "PacBio", "Bruker"]),
                size=rng.randrange(10**6, 5 * 10**11),
                file_count=rng.randrange(1, 300),
                # Torrent ids grow with upload times, as on the real server.
                time=EPOCH - dt.timedelta(hours=9 * (59 - n)),
                seeders=rng.randrange(0, 40),
                leechers=rng.randrange(0, 5),
                snatched=rng.randrange(0, 1500),
            )
        groups = list(data.groups.values())
        data.bookmarks[2] = [g.id for g in groups[:7]]
        data.artist_bookmarks[2] = [artists[2].id, artists[0].id]
        data.snatches[2] = [g.torrents[0].id for g in groups[10:40]]
        # 60 hits (two pages of 50) from two filters: every third torrent is
        # filter 2's, so a page comes grouped by filter, not newest first, as the
        # real listing prints it. The five newest are unread.
        for n, group in enumerate(groups):
            torrent = group.torrents[0]
            newest = len(groups) - 1 - n
            data.add_notification(
                2, torrent, unread=newest < 5, filter_id=2 if n % 3 == 0 else 1
            )

        subjects = [
            "Re: Bruker raw files & converters",
            'Mirror for GISAID metadata? "hCoV" subsets',
            "Your torrent has been approved",
            "Question about <accession> formats",
            "Grüße aus dem Labor",
        ]
        others = [1, 3, 4, 5, 6, 7, 0]
        for n in range(64):
            other = others[n % len(others)]
            to_me = n % 3 != 0 or other == 0
            data.add_conversation(
                f"{subjects[n % len(subjects)]} ({n + 1})",
                sender=other if to_me else 2,
                recipient=2 if to_me else other,
                bodies=[
                    f"Message {n + 1}: see [url=https://example.org/{n}]data[/url].",
                    "Thanks! [b]Got it[/b] & will seed.",
                ][: 1 + n % 2],
                sent=EPOCH - dt.timedelta(hours=5 * n),
                unread=n % 4 == 0,
                sticky=n == 10,
            )

        titles = [
            'Mirror for GISAID metadata? "hCoV" subsets',
            "Report broken site features",
            "Best practice for FASTQ & BAM seeding",
            "Grüße: welcome thread",
        ]
        threads = [data.add_thread(t, locked=i == 1) for i, t in enumerate(titles)]
        threads[3].sticky = True
        for n in range(70):
            thread = threads[n % len(threads)]
            data.add_post(
                thread,
                author=2 if n % 5 else 1,
                body=f"Post {n + 1}: seeding the *2020-12* dump <now> & later.",
                added=EPOCH - dt.timedelta(hours=3 * n),
            )
        data.posts[1].edited_user_id = 1
        data.posts[1].edited_time = EPOCH
        data.news = [(1, "Tracker maintenance on Jan 20"), (27, "New & improved API")]
        data.blog = [(3, "Open data: 1 PB seeded")]
        data.add_alert(2, "StaffPM", "You have a new Staff PM", "staffpm.php")
        data.created.clear()  # the seed set is the start, not something made
        return data

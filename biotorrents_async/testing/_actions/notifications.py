"""Torrent notifications and site alerts.

``notifications``, ``get_user_notifications`` and ``clear_user_notification``.
"""

from __future__ import annotations

from typing import Any

from .._data import NOTIFY_CLASSES, FakeData, FakeUser
from .._envelope import (
    Call,
    Reply,
    Viewer,
    error_page_reply,
    failure,
    page_count,
    page_number,
    success,
)
from .._php import display_str, php_date
from .inbox import unread_messages

__all__ = [
    "can_notify",
    "clear_user_notification",
    "get_user_notifications",
    "notifications",
    "unread_hits",
]

_ALERT_ORDER = (
    "Global",
    "News",
    "Blog",
    "StaffPM",
    "Inbox",
    "Torrents",
    "Collages",
    "Quotes",
    "Subscriptions",
)
# Notice text and link of the site-post alerts.
_POST_ALERTS = {
    "News": ("Announcement", "index.php#news"),
    "Blog": ("Blog", "blog.php#blog"),
}
# Counted notices: one entry per kind whatever the count, "New quote" for one and
# "New quotes" for more (a third quote while two are unread changes nothing).
_COUNTED_ALERTS = {
    "Quotes": ("New quote", "userhistory.php?action=quote_notifications"),
    "Subscriptions": ("New subscription", "userhistory.php?action=subscriptions"),
}


def can_notify(viewer: Viewer) -> bool:
    """Whether the viewer's class may have torrent notifications."""
    return viewer.class_name in NOTIFY_CLASSES


def unread_hits(data: FakeData, user_id: int) -> int:
    """Torrent notifications of ``user_id`` not yet seen."""
    return sum(1 for n in data.notifications if n.user_id == user_id and n.unread)


async def notifications(data: FakeData, viewer: Viewer, call: Call) -> Reply:
    """One page of torrent-filter hits; showing any marks them all read."""
    if not can_notify(viewer):
        return failure("bad parameters")
    page = page_number(call.query.get("page"))
    if page is None:
        return error_page_reply(viewer, 500, "Internal Server Error")
    hits = [n for n in data.notifications if n.user_id == viewer.id]
    rows = []
    for hit in hits:
        torrent = data.torrent(hit.torrent_id)
        if torrent is not None:
            rows.append((hit, torrent, data.groups[torrent.group_id]))
    # The real handler selects the page's 50 newest torrent ids (ORDER BY
    # TorrentID DESC), then prints them grouped by filter, the filters in the
    # order they first appear (api-reference §19): not newest first.
    rows.sort(key=lambda r: r[1].id, reverse=True)
    chunk = rows[(page - 1) * 50 : page * 50]
    filters = list(dict.fromkeys(hit.filter_id for hit, _, _ in chunk))
    chunk.sort(key=lambda r: filters.index(r[0].filter_id))  # stable: id order kept
    results = []
    for hit, torrent, group in chunk:
        results.append(
            {
                "torrentId": torrent.id,
                "groupId": group.id,
                "groupName": display_str(group.name),
                "groupCategoryId": group.category_id,
                "wikiImage": display_str(group.picture),
                "torrentTags": " ".join(group.tags),
                "size": torrent.size,
                "fileCount": torrent.file_count,
                "format": None,
                "encoding": None,
                "media": display_str(torrent.platform),
                "scene": False,
                "groupYear": group.year,
                "remasterYear": 0,
                "remasterTitle": None,
                "snatched": torrent.snatched,
                "seeders": torrent.seeders,
                "leechers": torrent.leechers,
                "notificationTime": php_date(torrent.time),
                "hasLog": False,
                "hasCue": False,
                "logScore": 0,
                "freeTorrent": torrent.free,
                "logInDb": False,
                "unread": hit.unread,
            }
        )
    num_new = sum(1 for r in results if r["unread"])
    if results:
        for hit in hits:  # marks *all* of them read, not only this page
            hit.unread = False
    return success(
        {
            "currentPages": page,  # sic: the WhatCD typo
            "pages": page_count(len(rows), 50),
            "numNew": num_new,
            "results": results,
        }
    )


async def get_user_notifications(data: FakeData, viewer: Viewer, call: Call) -> Reply:
    """The pending site alerts, by kind."""
    user = viewer.user
    alerts: dict[str, dict[str, Any]] = {}
    posts = {
        "News": (max(data.news, default=None), user.last_read_news),
        "Blog": (max(data.blog, default=None), user.last_read_blog),
    }
    for kind in _ALERT_ORDER:
        entry: tuple[int, str, str, str] | None = None
        if kind in posts:
            newest, last_read = posts[kind]
            # Token-only viewers compare against a null "last read": true.
            if newest and (viewer.skeletal or last_read < newest[0]):
                prefix, anchor = _POST_ALERTS[kind]
                entry = (
                    newest[0],
                    f"{prefix}: {display_str(newest[1])}",
                    f"{anchor}{newest[0]}",
                    "information",
                )
        elif kind == "Inbox":
            count = unread_messages(data, user.id)
            if count:
                text = "a new message" if count == 1 else f"{count} new messages"
                entry = (0, f"You have {text}", "inbox.php", "confirmation")
        elif kind == "Torrents":
            count = unread_hits(data, user.id) if can_notify(viewer) else 0
            if count:
                text = (
                    "a new torrent notification"
                    if count == 1
                    else f"{count} new torrent notifications"
                )
                entry = (
                    0,
                    f"You have {text}",
                    "torrents.php?action=notify",
                    "confirmation",
                )
        elif kind in _COUNTED_ALERTS and _counted(user, kind):
            text, url = _COUNTED_ALERTS[kind]
            plural = "s" if _counted(user, kind) > 1 else ""
            entry = (0, f"{text}{plural}", url, "confirmation")
        elif kind in user.alerts:
            message, url = user.alerts[kind]
            importance = "information" if kind == "Global" else "confirmation"
            entry = (0, display_str(message), url, importance)
        if entry is not None:
            alerts[kind] = dict(
                zip(("id", "message", "url", "importance"), entry, strict=True)
            )
    # json_die('success', []) for an empty payload: a JSON array.
    return success(alerts or [])


def _counted(user: FakeUser, kind: str) -> int:
    return user.unread_quotes if kind == "Quotes" else user.new_subscriptions


async def clear_user_notification(data: FakeData, viewer: Viewer, call: Call) -> Reply:
    """Clear one kind of alert (POSTed ``type``); the answer is empty."""
    form = call.form
    kind = form.get("type") if call.method == "POST" else None
    user = viewer.user
    if kind == "Inbox":
        for conv in data.conversations.values():
            conv.unread_for.discard(user.id)
    elif kind == "News":
        user.last_read_news = max((n for n, _ in data.news), default=0)
    elif kind == "Blog":
        user.last_read_blog = max((n for n, _ in data.blog), default=0)
    elif kind == "Torrents":
        for hit in data.notifications:
            if hit.user_id == user.id:
                hit.unread = False
    elif kind is not None:
        if kind == "Quotes":
            user.unread_quotes = 0  # marks every quote notification read
        elif kind == "Subscriptions":
            user.new_subscriptions = 0  # every subscribed thread read to its end
        user.alerts.pop(kind, None)
    # The handler prints nothing at all.
    return Reply(200, b"")

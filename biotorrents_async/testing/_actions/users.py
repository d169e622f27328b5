"""The user actions: you, a profile, search, stats, recent groups, forum posts.

``index``, ``user``, ``usersearch``, ``community_stats``, ``user_recents`` and
``userhistory``.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from .._data import CLASS_LEVELS, SNATCHLIST_CLASSES, FakeData, FakeUser
from .._envelope import (
    INTEGER,
    Call,
    Reply,
    Viewer,
    error_page_reply,
    failure,
    page_count,
    page_number,
    php_int,
    sql_like,
    success,
)
from .._php import (
    display_str,
    error_page,
    json_body,
    number_format,
    php_date,
    ratio_index,
    ratio_user,
    render,
)
from .inbox import unread_messages
from .notifications import can_notify, unread_hits

__all__ = [
    "community_stats",
    "index",
    "user",
    "user_recents",
    "userhistory",
    "usersearch",
]

_NUMERIC = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


async def index(data: FakeData, viewer: Viewer, call: Call) -> Reply:
    """The viewer's own summary: identity, pending notices, transfer stats."""
    user = viewer.user
    latest_news = max((n for n, _ in data.news), default=-1)
    latest_blog = max((n for n, _ in data.blog), default=-1)
    skeletal = viewer.skeletal
    # A Subscriptions notice set as is (add_alert) stands for one new post.
    new_subs = user.new_subscriptions or int("Subscriptions" in user.alerts)
    return success(
        {
            "username": None if skeletal else display_str(user.username),
            "id": user.id,
            "authkey": None if skeletal else user.authkey,
            "passkey": None if skeletal else user.passkey,
            "notifications": {
                "messages": unread_messages(data, user.id),
                "notifications": (
                    unread_hits(data, user.id) if can_notify(viewer) else 0
                ),
                # Token-only: null < X is loosely true.
                "newAnnouncement": skeletal or user.last_read_news < latest_news,
                "newBlog": skeletal or user.last_read_blog < latest_blog,
                # Exactly one (WhatCD bug kept); unread quotes count nowhere.
                "newSubscriptions": new_subs == 1,
            },
            "userstats": {
                "uploaded": 0 if skeletal else user.uploaded,
                "downloaded": 0 if skeletal else user.downloaded,
                "ratio": 0 if skeletal else ratio_index(user.uploaded, user.downloaded),
                "requiredratio": 0 if skeletal else _num(user.required_ratio),
                "class": None if skeletal else user.class_name,
            },
        }
    )


async def user(data: FakeData, viewer: Viewer, call: Call) -> Reply:
    """A user's profile, as ``text/plain``."""
    raw = call.query.get("id", "")
    if raw in ("", "0") or not _NUMERIC.fullmatch(raw):
        return failure("bad id parameter")
    number = float(raw)
    user = data.users.get(int(number)) if number.is_integer() else None
    if user is None:
        return failure("no such user")
    uploads = _uploads(data, user.id)
    snatched = data.snatches.get(user.id, [])
    posts = sum(1 for p in data.posts.values() if p.author_id == user.id)
    body = {
        "username": display_str(user.username),
        "avatar": display_str(user.avatar),
        "isFriend": False,
        "profileText": render(user.profile_text) if user.profile_text else "",
        "stats": {
            "joinedDate": php_date(user.joined),
            "lastAccess": php_date(user.last_access),
            "uploaded": user.uploaded,
            "downloaded": user.downloaded,
            "ratio": ratio_user(user.uploaded, user.downloaded),
            "requiredRatio": _num(user.required_ratio),
        },
        "ranks": {
            "uploaded": min(99, user.uploaded // (1 << 28)),
            "downloaded": min(99, user.downloaded // (1 << 28)),
            "uploads": min(99, len(uploads) * 5),
            "requests": 0,
            "bounty": 0,
            "posts": min(99, posts * 2),
            "artists": 0,
            "overall": min(99, len(uploads) + posts),
        },
        "personal": {
            "class": user.class_name,
            "paranoia": 0,
            "paranoiaText": "Off",
            "donor": False,  # enum '1' compared strictly with int 1
            "warned": user.warned,
            "enabled": user.enabled,
            "passkey": "",
        },
        "community": {
            "posts": posts,
            "torrentComments": 0,
            "artistComments": 0,
            "collageComments": 0,
            "requestComments": 0,
            "collagesStarted": 0,
            "collagesContrib": 0,
            "requestsFilled": 0,
            "bountyEarned": 0,
            "requestsVoted": 0,
            "bountySpent": 0,
            "uploaded": len(uploads),
            "groups": len({t.group_id for t in uploads}),
            "seeding": _seeding(data, user),
            "leeching": user.leeching,
            "snatched": len(snatched),
            "invited": 0,
            "artistsAdded": 0,
        },
    }
    return _plain(success(body))


def _uploads(data: FakeData, user_id: int) -> list[Any]:
    torrents = [
        t for g in data.groups.values() for t in g.torrents if t.uploader_id == user_id
    ]
    return sorted(torrents, key=lambda t: t.time, reverse=True)


def _seeding(data: FakeData, user: FakeUser) -> int:
    if user.seeding is not None:
        return user.seeding
    return len(_uploads(data, user.id)) + len(data.snatches.get(user.id, []))


async def usersearch(data: FakeData, viewer: Viewer, call: Call) -> Reply:
    """Users whose name contains the search term, 30 a page."""
    term = call.query.get("search", "").strip()
    if term in ("", "0"):
        return failure("no search terms")
    page = page_number(call.query.get("page"))
    if page is None:
        return error_page_reply(viewer, 500, "Internal Server Error")
    hits = sorted(
        (u for u in data.users.values() if sql_like(term, u.username, anywhere=True)),
        key=lambda u: u.username.lower(),
    )
    chunk = hits[(page - 1) * 30 : page * 30]
    return success(
        {
            "currentPage": page,
            "pages": page_count(len(hits), 30),
            "results": [
                {
                    "userId": u.id,
                    "username": display_str(u.username),
                    "donor": u.donor,
                    "warned": u.warned,
                    "enabled": u.enabled,
                    "class": u.class_name,
                    "avatar": display_str(u.avatar),
                }
                for u in chunk
            ],
        }
    )


async def community_stats(data: FakeData, viewer: Viewer, call: Call) -> Reply:
    """A user's seeding, leeching and snatch counts, some for staff only."""
    raw = call.query.get("userid", "")
    if not INTEGER.fullmatch(raw):
        return failure("bad parameters")
    user = data.users.get(int(raw))
    if user is None:
        seeding = leeching = snatched = 0
    else:
        seeding, leeching = _seeding(data, user), user.leeching
        snatched = (
            user.snatched
            if user.snatched is not None
            else len(data.snatches.get(user.id, []))
        )
    may_see = viewer.class_name in SNATCHLIST_CLASSES
    target_level = CLASS_LEVELS.get(user.class_name, 0) if user else 0
    viewer_level = CLASS_LEVELS.get(viewer.class_name or "", 0)
    perc: Any = False
    if snatched:
        perc = _num(100 * min(1, round(seeding / snatched, 2)))
    return success(
        {
            # leeching is the int 0 when there is none, else a string.
            "leeching": number_format(leeching) if leeching else 0,
            "seeding": number_format(seeding),
            "snatched": number_format(snatched),
            "usnatched": (
                number_format(snatched)
                if may_see and viewer_level >= target_level
                else False
            ),
            "downloaded": number_format(snatched) if may_see else False,
            "udownloaded": number_format(snatched) if may_see else False,
            "seedingperc": perc,
        }
    )


async def user_recents(data: FakeData, viewer: Viewer, call: Call) -> Reply:
    """A user's latest snatched and uploaded groups (with a picture)."""
    user_id = php_int(call.query.get("userid"))
    limit = php_int(call.query.get("limit")) or 15
    if not user_id or limit > 50:
        return failure("bad parameters")
    if limit < 0:
        return error_page_reply(viewer, 500, "Internal Server Error")
    snatched = [data.torrent(t) for t in data.snatches.get(user_id, [])]
    uploads = _uploads(data, user_id)
    return success(
        {
            "snatches": _recent_groups(
                data, [t.group_id for t in reversed(snatched) if t], limit
            ),
            "uploads": _recent_groups(data, [t.group_id for t in uploads], limit),
        }
    )


def _recent_groups(
    data: FakeData, group_ids: list[int], limit: int
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for group_id in group_ids:
        group = data.groups.get(group_id)
        # Only category-1 groups with a picture are listed.
        if group is None or group.id in seen or group.category_id != 1:
            continue
        if not group.picture:
            continue
        seen.add(group.id)
        artists = sorted(group.artists, key=lambda a: a.name)
        out.append(
            {
                "ID": group.id,
                "Name": display_str(group.name),
                "WikiImage": display_str(group.picture),
                # Artist names come raw from Artists::get_artists.
                "artists": [[{"id": a.id, "name": a.name} for a in artists]],
            }
        )
        if len(out) >= limit:
            break
    return out


async def userhistory(data: FakeData, viewer: Viewer, call: Call) -> Reply:
    """A user's forum posts (``type=posts``), 25 a page."""
    if call.query.get("type") != "posts":
        return Reply(200, json_body({"status": "failure"}), outcome="failure")
    raw_user = call.query.get("userid")
    if raw_user is not None and not INTEGER.fullmatch(raw_user):
        html = error_page(500, "Internal Server Error", authkey=viewer.user.authkey)
        return Reply(200, b"Array" + html.encode(), "text/html", outcome="failure")
    page = page_number(call.query.get("page"))
    if page is None:
        return error_page_reply(viewer, 500, "Internal Server Error")
    target = int(raw_user) if raw_user is not None else viewer.id
    posts = sorted(
        (p for p in data.posts.values() if p.author_id == target),
        key=lambda p: (p.added, p.id),
        reverse=True,
    )
    grouped = raw_user is None and call.query.get("group", "1") not in ("", "0")
    if grouped:
        newest: dict[int, Any] = {}
        for post in posts:
            newest.setdefault(post.thread_id, post)
        posts = list(newest.values())
    chunk = posts[(page - 1) * 25 : page * 25]
    threads = []
    for post in chunk:
        thread = data.threads[post.thread_id]
        last_post = max(p.id for p in data.posts.values() if p.thread_id == thread.id)
        editor = data.users.get(post.edited_user_id)
        if raw_user is None:
            last_read, locked, sticky = 0, thread.locked, thread.sticky
        else:
            # With userid the SQL drops LastRead but PHP unpacks 12 columns.
            last_read, locked, sticky = int(thread.locked), thread.sticky, False
        threads.append(
            {
                "postId": post.id,
                "topicId": thread.id,
                "threadTitle": display_str(thread.title),
                "lastPostId": last_post,
                "lastRead": last_read,
                "locked": locked,
                "sticky": sticky,
                "addedTime": php_date(post.added),
                "body": render(post.body),
                "bbbody": display_str(post.body),
                "editedUserId": post.edited_user_id,
                "editedTime": php_date(post.edited_time),
                "editedUsername": display_str(editor.username) if editor else "",
            }
        )
    return success(
        {"currentPage": page, "pages": page_count(len(posts), 25), "threads": threads},
        info=False,
    )


def _plain(reply: Reply) -> Reply:
    # user.php switches the Content-Type to text/plain once the id checks
    # have passed; its failures keep application/json (recorded answers).
    return attrs.evolve(reply, content_type="text/plain; charset=utf-8")


def _num(value: float) -> float | int:
    # json_encode prints an integral float without ".0".
    return int(value) if float(value).is_integer() else value

"""``action=bookmarks``: bookmarked torrent groups and artists."""

from __future__ import annotations

from typing import Any

from .._data import SNATCHLIST_CLASSES, FakeData, FakeGroup
from .._envelope import (
    Call,
    Reply,
    Viewer,
    error_page_reply,
    failure,
    php_int,
    success,
)
from .._php import display_str, php_date

__all__ = ["bookmarks"]


async def bookmarks(data: FakeData, viewer: Viewer, call: Call) -> Reply:
    """The viewer's bookmarks (staff may ask for another user's)."""
    form = call.form
    kind = form.get("type") or call.query.get("type", "torrents")
    if kind not in ("torrents", "artists"):
        return failure("bad parameters")
    staff = viewer.class_name in SNATCHLIST_CLASSES
    target = viewer.id
    if "userid" in call.query:
        if not staff:
            if kind == "torrents":
                return error_page_reply(viewer, 403, "Forbidden")
            return failure("bad parameters")
        target = php_int(call.query.get("userid"))
    if kind == "artists":
        ids = data.artist_bookmarks.get(target, [])
        artists = [data.artists[i] for i in ids if i in data.artists]
        return success(
            {
                "artists": [
                    {"artistId": a.id, "artistName": display_str(a.name)}
                    for a in artists
                ]
            },
            info=False,
        )
    groups = [
        data.groups[g] for g in data.bookmarks.get(target, []) if g in data.groups
    ]
    return success({"bookmarks": [_bookmark(g) for g in groups]}, info=False)


def _bookmark(group: FakeGroup) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": display_str(group.name),
        "year": group.year,
        "accession": display_str(group.accession),
        "tagList": " ".join(group.tags),
        "vanityHouse": False,
        "picture": display_str(group.picture),
        "torrents": [
            {
                "id": t.id,
                "groupId": t.group_id,
                "platform": display_str(t.platform),
                "fileCount": t.file_count,
                "freeTorrent": False,  # enum compared strictly with int
                "size": t.size,
                "leechers": t.leechers,
                "seeders": t.seeders,
                "snatched": t.snatched,
                "time": php_date(t.time),
                "hasFile": t.id,
            }
            for t in group.torrents
        ],
    }

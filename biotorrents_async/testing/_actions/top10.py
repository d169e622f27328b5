"""``action=top10``: the most active torrents, an action the client does not wrap.

It is here so that ``BioTorrentsClient.call`` has an untyped action to talk to.
The server-behaviour reference does not cover it; the shape follows WhatCD's
``sections/ajax/top10/torrents.php``, which Bio's handlers were copied from
almost line for line (*inferred*), trimmed to the fields Bio's torrents have: a
list of sections, each ``{"caption", "tag", "limit", "results"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._data import FakeData, FakeGroup, FakeTorrent
from .._envelope import Call, Reply, Viewer, failure, success
from .._php import display_str

__all__ = ["top10"]

_Rank = Callable[[FakeTorrent], int]

# tag -> caption and ranking, in the order the site lists them.
_SECTIONS: dict[str, tuple[str, _Rank]] = {
    "overall": ("Most Active Torrents of All Time", lambda t: t.seeders + t.leechers),
    "snatched": ("Most Snatched Torrents", lambda t: t.snatched),
    "data": ("Most Data Transferred Torrents", lambda t: t.snatched * t.size),
    "seeded": ("Best Seeded Torrents", lambda t: t.seeders),
}
# WCD accepts these limits and treats anything else as 10.
_LIMITS = (10, 100, 250)


async def top10(data: FakeData, viewer: Viewer, call: Call) -> Reply:
    """The top torrents by activity, snatches, data and seeders."""
    query = call.query
    if query.get("type", "torrents") != "torrents":
        # Only the torrents lists are faked (the site also has tags and users).
        return failure("bad parameters")
    raw_limit = query.get("limit", "10")
    limit = int(raw_limit) if raw_limit in {str(n) for n in _LIMITS} else 10
    details = query.get("details", "all")
    if details != "all" and details not in _SECTIONS:
        return failure("bad parameters")
    groups = {g.id: g for g in data.groups.values()}
    torrents = [t for g in groups.values() for t in g.torrents]
    sections: list[dict[str, Any]] = []
    for tag, (caption, rank) in _SECTIONS.items():
        if details not in ("all", tag):
            continue
        best = sorted(torrents, key=lambda t: (-rank(t), t.id))[:limit]
        sections.append(
            {
                "caption": caption,
                "tag": tag,
                "limit": limit,
                "results": [_result(t, groups[t.group_id]) for t in best],
            }
        )
    return success(sections)


def _result(torrent: FakeTorrent, group: FakeGroup) -> dict[str, Any]:
    artist = group.artists[0].name if group.artists else ""
    return {
        "torrentId": torrent.id,
        "groupId": group.id,
        "artist": display_str(artist),
        "groupName": display_str(group.name),
        "groupCategory": group.category_id,
        "groupYear": group.year,
        "platform": display_str(torrent.platform),
        "tags": list(group.tags),
        "snatched": torrent.snatched,
        "seeders": torrent.seeders,
        "leechers": torrent.leechers,
        "data": torrent.snatched * torrent.size,
        "size": torrent.size,
    }

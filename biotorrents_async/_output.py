"""How results are shown: tables, ``key: value`` records, JSON and progress.

Shared by the ``biotorrents`` command and its demo.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import unicodedata
from collections.abc import Sequence
from typing import Any, TextIO

import attrs

from ._converter import to_dict
from ._policy import RateLimit
from .models import (
    Alert,
    BookmarkedArtist,
    BookmarkedGroup,
    ConversationSummary,
    ForumPost,
    Page,
    TorrentNotification,
    UserSearchResult,
)

__all__ = [
    "Progress",
    "describe_rule",
    "emit",
    "print_record",
    "print_table",
]


# Columns of the tables printed for listings: (heading, attribute path, width).
_COLUMNS: dict[type, list[tuple[str, str, int]]] = {
    UserSearchResult: [
        ("id", "user_id", 6),
        ("username", "username", 22),
        ("class", "class_name", 12),
        ("donor", "donor", 5),
        ("enabled", "enabled", 7),
    ],
    ConversationSummary: [
        ("id", "conv_id", 6),
        ("date", "date", 16),
        ("with", "username", 18),
        ("unread", "unread", 6),
        ("subject", "subject", 48),
    ],
    ForumPost: [
        ("post", "post_id", 6),
        ("added", "added_time", 16),
        ("thread", "thread_title", 40),
        ("source", "bb_body", 40),
    ],
    TorrentNotification: [
        ("torrent", "torrent_id", 7),
        ("uploaded", "notification_time", 16),
        ("media", "media", 9),
        ("size", "size", 10),
        ("unread", "unread", 6),
        ("group", "group_name", 44),
    ],
    BookmarkedGroup: [
        ("id", "id", 5),
        ("year", "year", 4),
        ("accession", "accession", 14),
        ("torrents", "torrents", 8),
        ("name", "name", 48),
    ],
    BookmarkedArtist: [("id", "artist_id", 6), ("artist", "artist_name", 40)],
    Alert: [("id", "id", 4), ("message", "message", 44), ("url", "url", 30)],
}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, tuple):
        return str(len(value))
    if isinstance(value, int) and value >= 10**6:
        return _size(value)
    return str(value)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _width(text: str) -> int:
    # CJK characters take two terminal columns.
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _clip(text: str, width: int) -> str:
    """Fit ``text`` into ``width`` terminal columns, padded with spaces."""
    text = " ".join(text.split())
    if _width(text) > width:
        while _width(text) > width - 1:
            text = text[:-1]
        text += "…"
    return text + " " * (width - _width(text))


def print_table(items: Sequence[Any], out: TextIO, *, keys: Sequence[str] = ()) -> None:
    """Print model instances as an aligned table (the model's columns)."""
    if not items:
        print("(nothing)", file=out)
        return
    columns = list(_COLUMNS[type(items[0])])
    if keys:
        columns.insert(0, ("kind", "", max(4, *(len(k) for k in keys))))
    print("  ".join(h.ljust(w) for h, _, w in columns).rstrip(), file=out)
    print("  ".join("-" * w for _, _, w in columns), file=out)
    for n, item in enumerate(items):
        cells = []
        for _, path, width in columns:
            value = keys[n] if not path else getattr(item, path)
            cells.append(_clip(_cell(value), width))
        print("  ".join(cells).rstrip(), file=out)


def _public_fields(obj: Any) -> list[tuple[str, Any]]:
    # Fields hidden from repr (authkey, passkey) are secrets: never printed.
    return [(f.name, getattr(obj, f.name)) for f in attrs.fields(type(obj)) if f.repr]


def print_record(obj: Any, out: TextIO, indent: str = "") -> None:
    """Print one model as ``key: value`` lines, nested models indented."""
    for name, value in _public_fields(obj):
        if attrs.has(type(value)):
            print(f"{indent}{name}:", file=out)
            print_record(value, out, indent + "  ")
        elif isinstance(value, tuple) and value and attrs.has(type(value[0])):
            print(f"{indent}{name}: ({len(value)})", file=out)
            for item in value:
                print(f"{indent}  -", file=out)
                print_record(item, out, indent + "    ")
        else:
            shown = value.isoformat(" ") if isinstance(value, dt.datetime) else value
            print(f"{indent}{name}: {'-' if shown is None else shown}", file=out)


def emit(value: Any, args: argparse.Namespace, out: TextIO) -> None:
    """Print a result as JSON (``--json``: ``to_dict``'s shape) or for people."""
    if args.json:
        json.dump(to_dict(value), out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif isinstance(value, dict):
        print_table(list(value.values()), out, keys=list(value))
    elif isinstance(value, Page):
        print_table(list(value.items), out)
        print(f"page {value.current_page} of {value.pages}", file=out)
    elif isinstance(value, list | tuple):
        print_table(list(value), out)
    elif value is None:
        print("done", file=out)
    else:
        print_record(value, out)


class Progress:
    """A one-line progress bar on stderr for multi-page fetches."""

    def __init__(self, label: str, rule: RateLimit | None, stream: TextIO) -> None:
        self._label = label
        self._rule = rule
        self._stream = stream
        self._tty = stream.isatty()

    def update(self, page: int, pages: int) -> None:
        """Show that ``page`` of ``pages`` is in."""
        pages = max(pages, page)
        remaining = pages - page
        # Each further page is one request; the rule allows `requests` a window.
        eta = remaining * self._rule.window / self._rule.requests if self._rule else 0
        filled = round(20 * page / pages) if pages else 20
        bar = "#" * filled + "-" * (20 - filled)
        line = f"{self._label}: [{bar}] page {page}/{pages}"
        if remaining:
            line += f", ~{eta:.0f}s left for the rate limit"
        end = "\r" if self._tty and remaining else "\n"
        self._stream.write(line + end)
        self._stream.flush()


def describe_rule(rule: RateLimit | None) -> str:
    """Say a rate rule in words: ``"2 per 6s"`` or ``"off"``."""
    return f"{rule.requests} per {rule.per:g}s" if rule else "off"

"""The ``biotorrents`` command: a demo against the fake, one subcommand per endpoint.

Errors become one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, TextIO, TypeVar

import attrs

from ._client import DEFAULT_BASE_URL, BioTorrentsClient
from ._policy import RateLimit
from .exceptions import BioTorrentsError
from .models import (
    Alert,
    AlertKind,
    BookmarkedArtist,
    BookmarkedGroup,
    Box,
    ConversationSummary,
    ForumPost,
    Page,
    SearchType,
    TorrentNotification,
    UserSearchResult,
)

__all__ = ["main"]

T = TypeVar("T")

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


class CliError(Exception):
    """A problem worth one line to the user."""


# --- output --------------------------------------------------------------------------


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


def to_jsonable(value: Any) -> Any:
    """Turn models, pages, tuples, enums and dates into JSON-ready values."""
    if isinstance(value, Page):
        return {
            "current_page": value.current_page,
            "pages": value.pages,
            "items": [to_jsonable(i) for i in value.items],
        }
    if attrs.has(type(value)):
        return {name: to_jsonable(v) for name, v in _public_fields(value)}
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, dt.datetime):
        return value.isoformat(" ")
    if isinstance(value, Enum):
        return value.value
    return value


def emit(value: Any, args: argparse.Namespace, out: TextIO) -> None:
    """Print a result as JSON (``--json``) or for people."""
    if args.json:
        json.dump(to_jsonable(value), out, ensure_ascii=False, indent=2)
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


async def fetch_all(
    fetch: Callable[[int], Awaitable[Page[T]]],
    progress: Progress,
    start: int = 1,
) -> list[T]:
    """Fetch page after page until the last, reporting progress."""
    items: list[T] = []
    number = start
    while True:
        page = await fetch(number)
        items.extend(page.items)
        progress.update(page.current_page, page.pages)
        if not page.has_next:
            return items
        number += 1


def describe_rule(rule: RateLimit | None) -> str:
    """Say a rate rule in words: ``"2 per 6s"`` or ``"off"``."""
    return f"{rule.requests} per {rule.per:g}s" if rule else "off"


# --- arguments ---------------------------------------------------------------------


def _rate(text: str) -> RateLimit | None:
    if text.lower() == "none":
        return None
    try:
        requests, per = text.split("/")
        return RateLimit(int(requests), float(per))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected REQUESTS/SECONDS such as 2/6, or none; got {text!r}"
        ) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``biotorrents`` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--base-url",
        default=os.environ.get("BIOTORRENTS_BASE_URL") or DEFAULT_BASE_URL,
        help="site to talk to (default: $BIOTORRENTS_BASE_URL or %(default)s)",
    )
    common.add_argument("--api-path", default="api.php", help="api.php or ajax.php")
    common.add_argument(
        "--token-file",
        type=Path,
        help="read the bearer token from this file (default: $BIOTORRENTS_TOKEN)",
    )
    common.add_argument(
        "--cookies-file",
        type=Path,
        help="a file with 'session=...' and 'userid=...' (full-user mode; "
        "default: $BIOTORRENTS_COOKIES)",
    )
    common.add_argument(
        "--rate-limit",
        type=_rate,
        default=RateLimit.default(),
        metavar="N/SECONDS",
        help="the server's rule, or 'none' for Donor accounts (default: 2/6)",
    )
    common.add_argument("--json", action="store_true", help="print JSON")

    parser = argparse.ArgumentParser(
        prog="biotorrents",
        description="Talk to the BioTorrents.de JSON API, or try it on a fake.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="tour every endpoint against an in-process fake server"
    )
    demo.add_argument(
        "--rate-limit",
        type=_rate,
        default=RateLimit(2, 0.3),
        metavar="N/SECONDS",
        help="the fake's rule, also used by the client (default: 2/0.3)",
    )
    fake = sub.add_parser("fake-server", help="run the fake server until Ctrl-C")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8088)
    fake.add_argument(
        "--rate-limit",
        type=_rate,
        default=RateLimit.default(),
        metavar="N/SECONDS",
        help="fixed-window rule, or 'none' (default: 2/6)",
    )

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    add("index", help="who you are")
    p = add("user", help="a user's profile")
    p.add_argument("user_id", type=_positive)
    p = add("search", help="search users by name")
    p.add_argument("query")
    _paging(p)
    p = add("stats", help="a user's community stats")
    p.add_argument("user_id", type=_positive)
    p = add("recents", help="a user's recent snatches and uploads")
    p.add_argument("user_id", type=_positive)
    p.add_argument("--limit", type=_positive, default=15)
    p = add("posts", help="a user's forum posts")
    p.add_argument("user_id", type=_positive)
    _paging(p)
    p = add("inbox", help="your conversations")
    _paging(p)
    p.add_argument("--box", choices=[b.value for b in Box], default="inbox")
    p.add_argument("--search")
    p.add_argument("--search-type", choices=[s.value for s in SearchType])
    p.add_argument("--unread-first", action="store_true")
    p = add("conversation", help="one conversation (the server marks it read)")
    p.add_argument("conv_id", type=_positive)
    p = add("bookmarks", help="your bookmarked torrent groups")
    p.add_argument("--artists", action="store_true", help="bookmarked artists")
    p = add("notifications", help="torrent-filter hits (the server marks all read)")
    _paging(p)
    add("alerts", help="pending site notices")
    p = add("clear", help="clear one kind of notice")
    p.add_argument("kind", choices=[k.value for k in AlertKind])
    return parser


def _paging(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--page", type=_positive, default=1)
    group.add_argument("--all", action="store_true", help="fetch every page")


def _credentials(args: argparse.Namespace) -> tuple[str | None, dict[str, str] | None]:
    token: str | None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise CliError(f"cannot read token file: {exc.strerror}") from None
    else:
        token = os.environ.get("BIOTORRENTS_TOKEN", "").strip() or None
    if args.cookies_file is not None:
        try:
            text = args.cookies_file.read_text()
        except OSError as exc:
            raise CliError(f"cannot read cookies file: {exc.strerror}") from None
    else:
        text = os.environ.get("BIOTORRENTS_COOKIES", "")
    cookies = dict(
        part.strip().split("=", 1)
        for part in text.replace("\n", ";").split(";")
        if "=" in part
    )
    if not token and not cookies:
        raise CliError(
            "no credentials: set BIOTORRENTS_TOKEN or use --token-file "
            "(or --cookies-file)"
        )
    return token or None, cookies or None


# --- commands --------------------------------------------------------------------


async def run_endpoint(args: argparse.Namespace, out: TextIO, err: TextIO) -> Any:
    """Run one endpoint subcommand against ``--base-url`` and print the result."""
    token, cookies = _credentials(args)
    async with BioTorrentsClient(
        token,
        cookies=cookies,
        base_url=args.base_url,
        api_path=args.api_path,
        rate_limit=args.rate_limit,
    ) as client:
        result = await _call(client, args, err)
    emit(result, args, out)
    return result


async def _call(
    client: BioTorrentsClient, args: argparse.Namespace, err: TextIO
) -> Any:
    command = args.command
    progress = Progress(command, args.rate_limit, err)
    if command == "index":
        return await client.index()
    if command == "user":
        return await client.users.get(args.user_id)
    if command == "stats":
        return await client.users.community_stats(args.user_id)
    if command == "recents":
        if args.limit > 50:
            raise CliError("--limit must be at most 50")
        return await client.users.recents(args.user_id, limit=args.limit)
    if command == "conversation":
        return await client.inbox.conversation(args.conv_id)
    if command == "bookmarks":
        if args.artists:
            return await client.bookmarks.artists()
        return await client.bookmarks.torrents()
    if command == "alerts":
        return await client.notifications.alerts()
    if command == "clear":
        return await client.notifications.clear(args.kind)
    fetch: Callable[[int], Awaitable[Page[Any]]]
    if command == "search":
        query = args.query

        async def fetch(n: int) -> Page[Any]:
            return await client.users.search(query, page=n)

    elif command == "posts":

        async def fetch(n: int) -> Page[Any]:
            return await client.users.posts(args.user_id, page=n)

    elif command == "inbox":
        options = {
            "box": args.box,
            "search": args.search,
            "search_type": args.search_type,
            "unread_first": args.unread_first,
        }

        async def fetch(n: int) -> Page[Any]:
            return await client.inbox.conversations(page=n, **options)

    else:

        async def fetch(n: int) -> Page[Any]:
            return await client.notifications.torrents(page=n)

    if args.all:
        return await fetch_all(fetch, progress)
    return await fetch(args.page)


async def run_fake_server(args: argparse.Namespace, out: TextIO) -> None:
    """Serve the fake until interrupted."""
    from .testing import FakeBioTorrents

    async with FakeBioTorrents(
        host=args.host, port=args.port, rate_limit=args.rate_limit
    ) as fake:
        print(f"fake BioTorrents.de serving {fake.url}/api.php", file=out)
        print(f"  rate limit: {describe_rule(args.rate_limit)}", file=out)
        print(f"  export BIOTORRENTS_BASE_URL={fake.url}", file=out)
        # The fake's own made-up demo credentials, public by design.
        print(f"  export BIOTORRENTS_TOKEN={fake.token}", file=out)
        cookie = "; ".join(f"{k}={v}" for k, v in fake.cookies.items())
        print(f"  export BIOTORRENTS_COOKIES='{cookie}'", file=out)
        print("Ctrl-C to stop.", file=out, flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``biotorrents`` command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out, err = sys.stdout, sys.stderr
    try:
        if args.command == "demo":
            from ._demo import run_demo

            asyncio.run(run_demo(args.rate_limit, out))
        elif args.command == "fake-server":
            asyncio.run(run_fake_server(args, out))
        else:
            asyncio.run(run_endpoint(args, out, err))
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130
    except BrokenPipeError:
        # `biotorrents ... | head`: the reader left; nothing is wrong.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (BioTorrentsError, CliError, ValueError, OSError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=err)
        return 1
    except Exception as exc:  # a bug of ours: still one line, no traceback
        print(
            f"error: unexpected {type(exc).__name__}: {exc} "
            "(please report this as a bug)",
            file=err,
        )
        return 1
    return 0

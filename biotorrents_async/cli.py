"""The ``biotorrents`` command: a demo against the fake, one subcommand per endpoint.

Errors become one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

from ._client import (
    DEFAULT_BASE_URL,
    ENVIRONMENT,
    BioTorrentsClient,
    parse_cookies,
    parse_rule,
)
from ._converter import to_dict
from ._endpoints import ACTION_NAME
from ._output import Progress, describe_rule, emit
from ._pacing import LocalPacer
from ._redact import redact_value
from ._redis import salted
from ._stores import FileStore
from ._stream import MAX_INTERVAL, WatchStream, merge_streams
from .exceptions import BioTorrentsError
from .models import AlertKind, Box, Page, SearchType

__all__ = ["main"]

T = TypeVar("T")


class CliError(Exception):
    """A problem worth one line to the user."""


class _Parser(argparse.ArgumentParser):
    """Usage mistakes: one line on stderr and exit code 2, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- arguments ---------------------------------------------------------------------


def _rate(text: str) -> str:
    try:
        parse_rule(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


_ENV_HELP = "\n".join(f"  {name:24} {what}" for name, what in ENVIRONMENT.items())


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected an http(s) URL, got {text!r}")
    return text


#: One argument: its names, and ``add_argument``'s keywords.
_Arg = tuple[tuple[str, ...], dict[str, Any]]


def _arg(*names: str, **options: Any) -> _Arg:
    return names, options


_PAGING = "paging"  # a marker in a command's arguments: --page or --all

#: The options of every command that talks to a server.
_COMMON: tuple[_Arg, ...] = (
    _arg(
        "--base-url",
        type=_url,
        help=f"site to talk to (default: $BIOTORRENTS_BASE_URL or {DEFAULT_BASE_URL})",
    ),
    _arg("--api-path", help="api.php (default) or ajax.php ($BIOTORRENTS_API_PATH)"),
    _arg(
        "--token-file",
        type=Path,
        help="read the bearer token from this file (default: $BIOTORRENTS_TOKEN)",
    ),
    _arg(
        "--cookies-file",
        type=Path,
        help="a file with 'session=...; userid=...' (full-user mode; "
        "default: $BIOTORRENTS_COOKIES)",
    ),
    _arg(
        "--rate-limit",
        type=_rate,
        metavar="N/SECONDS",
        help="the server's rule, or 'none' for Donor accounts "
        "(default: $BIOTORRENTS_RATE_LIMIT or 2/6)",
    ),
    _arg(
        "--redis",
        metavar="URL",
        help="share one allowance with other processes of this account through "
        "Redis (default: $BIOTORRENTS_REDIS_URL; needs the redis extra)",
    ),
    _arg(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain-http --base-url that is not loopback (the token "
        "travels in clear text)",
    ),
    _arg("--json", action="store_true", help="print JSON"),
)


def _commands() -> tuple[tuple[str, str, bool, tuple[Any, ...]], ...]:
    """Every subcommand: name, help, whether it talks to a server, arguments."""
    user_id = _arg("user_id", type=_positive)
    return (
        (
            "demo",
            "tour every endpoint against an in-process fake server",
            False,
            (
                _arg(
                    "--rate-limit",
                    type=_rate,
                    default="2/0.3",
                    metavar="N/SECONDS",
                    help="the fake's rule, also used by the client (default: 2/0.3)",
                ),
            ),
        ),
        (
            "fake-server",
            "run the fake server until Ctrl-C",
            False,
            (
                _arg("--host", default="127.0.0.1", help="address to listen on"),
                _arg(
                    "--port",
                    type=int,
                    default=8088,
                    help="port to listen on (0: a free one; default 8088)",
                ),
                _arg(
                    "--rate-limit",
                    type=_rate,
                    default="2/6",
                    metavar="N/SECONDS",
                    help="fixed-window rule, or 'none' (default: 2/6)",
                ),
                _arg(
                    "--seed",
                    type=int,
                    default=0,
                    help="seed of the data set and of the faults",
                ),
                _arg(
                    "--faults",
                    type=_fraction,
                    default=0.0,
                    metavar="RATE",
                    help="fail this share of requests at random (502, 503, drops, "
                    "cut or HTML bodies, delays, rate-limit answers), e.g. 0.2",
                ),
                _arg(
                    "--live",
                    type=_seconds,
                    metavar="SECONDS",
                    help="every SECONDS, add a conversation, a reply, a torrent "
                    "hit, a forum quote or a news post for the demo user, for "
                    "bots to see",
                ),
                _arg(
                    "--record",
                    metavar="FILE",
                    help="write one JSON line per item the fake makes (kind, ids, "
                    "time) to FILE, replacing it",
                ),
            ),
        ),
        ("index", "who you are", True, ()),
        ("user", "a user's profile", True, (user_id,)),
        ("search", "search users by name", True, (_arg("query"), _PAGING)),
        ("stats", "a user's community stats", True, (user_id,)),
        (
            "recents",
            "a user's recent snatches and uploads",
            True,
            (
                user_id,
                _arg("--limit", type=_recents_limit, default=15, help="1 to 50"),
            ),
        ),
        ("posts", "a user's forum posts", True, (user_id, _PAGING)),
        (
            "inbox",
            "your conversations (sticky first, then newest reply)",
            True,
            (
                _PAGING,
                _arg("--box", choices=[b.value for b in Box], default="inbox"),
                _arg("--search"),
                _arg("--search-type", choices=[s.value for s in SearchType]),
                _arg("--unread-first", action="store_true"),
            ),
        ),
        (
            "conversation",
            "one conversation (the server marks it read)",
            True,
            (_arg("conv_id", type=_positive),),
        ),
        (
            "bookmarks",
            "your bookmarked torrent groups",
            True,
            (_arg("--artists", action="store_true", help="bookmarked artists"),),
        ),
        (
            "notifications",
            "torrent-filter hits (the server marks all read)",
            True,
            (_PAGING,),
        ),
        ("alerts", "pending site notices", True, ()),
        (
            "clear",
            "clear one kind of notice",
            True,
            (_arg("kind", choices=[k.value for k in AlertKind]),),
        ),
        (
            "call",
            "any action= of the API, raw: prints its response as JSON (prefer "
            "the typed commands where they exist)",
            True,
            (
                _arg("action", type=_action, help="the action= value, e.g. top10"),
                _arg(
                    "pairs",
                    nargs="*",
                    type=_pair,
                    metavar="KEY=VALUE",
                    help="query parameters (form fields with --post)",
                ),
                _arg(
                    "--post",
                    action="store_true",
                    help="send the pairs as a form POST (never retried)",
                ),
            ),
        ),
        (
            "watch",
            "print one JSON line per new conversation, torrent hit or alert, "
            "until Ctrl-C",
            True,
            (
                _arg(
                    "streams",
                    nargs="*",
                    type=_stream_kind,
                    metavar="{inbox,torrents,alerts}",
                    help="what to watch (default: all three)",
                ),
                _arg(
                    "--interval",
                    type=_seconds,
                    help="seconds between polls (default: half the allowance, "
                    "6.1 s at 2/6)",
                ),
                _arg(
                    "--store",
                    type=Path,
                    help="keep the cursors in this SQLite file, to resume after a "
                    "restart",
                ),
                _arg(
                    "--include-unread",
                    action="store_true",
                    help="on the first start, also print what is unread now",
                ),
            ),
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``biotorrents`` command from the table."""
    common = _Parser(add_help=False)
    for names, options in _COMMON:
        common.add_argument(*names, **options)
    parser = _Parser(
        prog="biotorrents",
        description="Talk to the BioTorrents.de JSON API, or try it on a fake.",
        epilog=f"environment variables (shared with BioTorrentsClient.from_env):\n"
        f"{_ENV_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help, online, arguments in _commands():
        p = sub.add_parser(name, help=help, parents=[common] if online else [])
        for argument in arguments:
            if argument == _PAGING:
                _paging(p)
            else:
                p.add_argument(*argument[0], **argument[1])
    return parser


def _recents_limit(text: str) -> int:
    value = _positive(text)
    if value > 50:
        raise argparse.ArgumentTypeError(f"expected at most 50, got {text!r}")
    return value


def _action(text: str) -> str:
    # A command-line mistake: exit 2 like the others, before anything is built.
    if not ACTION_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"expected an action name (letters, digits, _), got {text!r}"
        )
    return text


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _stream_kind(text: str) -> str:
    # Not `choices`: with nargs="*", argparse checks the empty default against them.
    if text not in ("inbox", "torrents", "alerts"):
        raise argparse.ArgumentTypeError(
            f"expected inbox, torrents or alerts, got {text!r}"
        )
    return text


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    # inf would take a baseline and never poll again; a day is the most a
    # stream accepts (see MAX_INTERVAL).
    if not (math.isfinite(value) and 0 < value <= MAX_INTERVAL):
        raise argparse.ArgumentTypeError(
            f"expected seconds > 0 and <= {MAX_INTERVAL:g}, got {text!r}"
        )
    return value


def _paging(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--page", type=_positive, default=1)
    group.add_argument("--all", action="store_true", help="fetch every page")


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None


def make_client(args: argparse.Namespace) -> BioTorrentsClient:
    """Build the client: command-line options over the environment variables."""
    environ = dict(os.environ)
    if args.token_file is not None:
        token = _read(args.token_file, "token file").strip()
        if not token:
            raise CliError(f"--token-file {str(args.token_file)!r} is empty")
        environ["BIOTORRENTS_TOKEN"] = token
    if args.cookies_file is not None:
        where = f"--cookies-file {str(args.cookies_file)!r}"
        text = _read(args.cookies_file, "cookies file")
        try:
            cookies = parse_cookies(text)
        except ValueError as exc:
            raise CliError(f"{where}: {exc}") from None
        missing = {"session", "userid"} - set(cookies)
        if missing:
            raise CliError(f"{where} needs {' and '.join(sorted(missing))}")
        environ["BIOTORRENTS_COOKIES"] = text
    for option, name in (
        ("base_url", "BIOTORRENTS_BASE_URL"),
        ("api_path", "BIOTORRENTS_API_PATH"),
        ("rate_limit", "BIOTORRENTS_RATE_LIMIT"),
        ("redis", "BIOTORRENTS_REDIS_URL"),
    ):
        if getattr(args, option) is not None:
            environ[name] = getattr(args, option)
    if (
        not environ.get("BIOTORRENTS_TOKEN", "").strip()
        and not environ.get("BIOTORRENTS_COOKIES", "").strip()
    ):
        raise CliError(
            "no credentials: set BIOTORRENTS_TOKEN or use --token-file "
            "(and/or BIOTORRENTS_COOKIES or --cookies-file)"
        )
    return BioTorrentsClient.from_env(
        environ, allow_insecure_http=args.allow_insecure_http
    )


class _Notes(logging.Handler):
    """Long silent waits (retries, pacing) as short notes on stderr."""

    def __init__(self, stream: TextIO, *, watching: bool = False) -> None:
        super().__init__(logging.DEBUG)
        self._stream = stream
        self._watching = watching

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING and record.name.endswith(".watch"):
            # A standby says who holds the cursor, and when it takes over: a
            # person would otherwise see a command that prints nothing.
            if record.levelno < logging.INFO:
                return
            text = record.getMessage()
        elif record.levelno < logging.WARNING:
            # Pacing waits: worth a note when a person would wonder; not while
            # watching, where waiting is the job.
            if self._watching:
                return
            if not record.name.endswith(".pacing") or not record.args:
                return
            seconds = record.args[0] if isinstance(record.args, tuple) else 0
            if not isinstance(seconds, float) or seconds < 1:
                return
            text = f"waiting {seconds:.1f}s for the rate limit"
        else:
            text = record.getMessage()
        self._stream.write(f"note: {text}\n")
        self._stream.flush()


@contextlib.contextmanager
def _notes(stream: TextIO, *, watching: bool = False) -> Iterator[None]:
    logger = logging.getLogger("biotorrents_async")
    handler = _Notes(stream, watching=watching)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# --- commands --------------------------------------------------------------------


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


async def run_endpoint(args: argparse.Namespace, out: TextIO, err: TextIO) -> Any:
    """Run one endpoint subcommand against ``--base-url`` and print the result."""
    client = make_client(args)
    with _notes(err), _remembered_places(client):
        async with client:
            result = await _call(client, args, err)
    if args.command == "call":
        # The server's own shape: there is no table to print it as.
        # Key-like values (authkey, passkey) and the credentials are replaced:
        # the typed commands never print them, and neither does `call`.
        shown = redact_value(result, client._session.redactor)
        json.dump(shown, out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        emit(result, args, out)
    return result


def _state_file() -> Path:
    root = os.environ.get("BIOTORRENTS_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state",
        "biotorrents-async",
    )
    return Path(root) / "places.json"


@contextlib.contextmanager
def _remembered_places(client: BioTorrentsClient) -> Iterator[None]:
    """Carry the places this account's requests still hold to the next command.

    Each command paces itself; without this, three quick commands in a row
    would send a third request inside a window (`for i in 1 2 3; do biotorrents
    index; done`). Concurrent commands need --redis.

    The file is private (0600 in a 0700 folder), written through a fresh
    temporary file (never through a path someone planted), and names a
    token-only account by an HMAC under a salt kept in the same file, not by
    the token's plain hash (which would be the same on every install).
    """
    pacer = client._session.pacer
    if not isinstance(pacer, LocalPacer) or pacer.limit is None:
        yield
        return
    path = _state_file()
    saved = _read_state(path)
    salt = saved["salt"]
    key = f"{client.base_url} {salted(client._account, bytes.fromhex(salt))}"
    places = saved["places"]
    if isinstance(places.get(key), list):
        pacer.restore([t for t in places[key] if isinstance(t, int | float)])
    try:
        yield
    finally:
        places[key] = pacer.snapshot()
        with contextlib.suppress(OSError):  # a read-only home: forget them
            _write_private(path, json.dumps({"salt": salt, "places": places}))


def _read_state(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = None
    salt = saved.get("salt") if isinstance(saved, dict) else None
    places = saved.get("places") if isinstance(saved, dict) else None
    try:
        if isinstance(salt, str):
            bytes.fromhex(salt)
    except ValueError:
        salt = None
    if not isinstance(salt, str) or not salt:
        # A new install (or a file of release 0.x, whose keys held the token's
        # plain hash): a new salt, and nothing of the old keys is kept.
        salt, places = secrets.token_hex(16), {}
    return {"salt": salt, "places": places if isinstance(places, dict) else {}}


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: the folder 0700, the file 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.parent.stat().st_mode & 0o077:
        path.parent.chmod(0o700)
    # mkstemp opens a new file with O_EXCL, 0600: a planted symlink is not
    # followed, and nobody else can read what is written.
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=".places.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


async def _call(
    client: BioTorrentsClient, args: argparse.Namespace, err: TextIO
) -> Any:
    command = args.command
    progress = Progress(command, client._session._rate_limit, err)
    if command == "index":
        return await client.index()
    if command == "user":
        return await client.users.get(args.user_id)
    if command == "stats":
        return await client.users.community_stats(args.user_id)
    if command == "recents":
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
    if command == "call":
        pairs = dict(args.pairs)
        if len(pairs) != len(args.pairs):
            raise CliError("call: a KEY is given twice")
        if args.post:
            return await client.call(args.action, method="POST", data=pairs)
        return await client.call(args.action, pairs)
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


async def until_signal(work: Awaitable[None]) -> None:
    """Run ``work``; SIGTERM and SIGINT stop it cleanly (streams closed, saved)."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    stopped = []

    def stop() -> None:
        stopped.append(True)
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)
    try:
        await task
    except asyncio.CancelledError:
        if not stopped:
            raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def run_watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    """Print one JSON line per new item of the chosen streams until interrupted."""
    client = make_client(args)
    kinds = list(dict.fromkeys(args.streams or ["inbox", "torrents", "alerts"]))
    store = FileStore(args.store) if args.store else None
    options: dict[str, Any] = {
        "interval": args.interval,
        "store": store,
        "include_unread": args.include_unread,
    }
    with _notes(err, watching=True):
        async with client, contextlib.AsyncExitStack() as stack:
            opened: dict[str, Callable[..., WatchStream[Any]]] = {
                "inbox": client.inbox.watch,
                "torrents": client.notifications.watch_torrents,
                "alerts": client.notifications.watch_alerts,
            }
            streams = [
                await stack.enter_async_context(opened[kind](**options))
                for kind in kinds
            ]
            async for stream, item in merge_streams(*streams):
                # The same shape as --json and as to_dict() in Python.
                line = {
                    "stream": stream.kind,
                    "event": stream.event(item),
                    "key": stream.key(item),
                    "item": to_dict(item),
                }
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
                out.flush()


async def run_fake_server(args: argparse.Namespace, out: TextIO) -> None:
    """Serve the fake until interrupted."""
    from .testing import FakeBioTorrents, FakeData
    from .testing._live import add_live_item

    rule = parse_rule(args.rate_limit)
    async with FakeBioTorrents(
        FakeData.seeded(args.seed),
        host=args.host,
        port=args.port,
        rate_limit=rule,
        seed=args.seed,
    ) as fake:
        if args.faults:
            fake.faults.randomly(args.faults, seed=args.seed)
        with contextlib.ExitStack() as record:
            if args.record:
                # Blocking writes are fine here: one small line per new item.
                path = Path(args.record)
                lines = record.enter_context(path.open("w", encoding="utf-8"))  # noqa: ASYNC230

                def write(entry: dict[str, Any]) -> None:
                    # Flushed at once: a test or a shell tails the file while the
                    # fake runs, and a kill must not lose what was already made.
                    lines.write(json.dumps(entry, ensure_ascii=False) + "\n")
                    lines.flush()

                fake.data.on_created.append(write)
            print(f"fake BioTorrents.de serving {fake.url}/api.php", file=out)
            print(f"  rate limit: {describe_rule(rule)}", file=out)
            if args.faults:
                print(f"  faults: {args.faults:.0%} of requests", file=out)
            print(f"  export BIOTORRENTS_BASE_URL={fake.url}", file=out)
            # The fake's own made-up demo credentials, public by design.
            print(f"  export BIOTORRENTS_TOKEN={fake.token}", file=out)
            cookie = "; ".join(f"{k}={v}" for k, v in fake.cookies.items())
            print(f"  export BIOTORRENTS_COOKIES='{cookie}'", file=out)
            if args.live:
                print(f"  live: a new item for kestrel every {args.live:g}s", file=out)
            if args.record:
                print(
                    f"  record: what it makes, as JSON lines in {args.record}", file=out
                )
            print("Ctrl-C to stop.", file=out, flush=True)
            count = 0
            while True:
                await asyncio.sleep(args.live or 3600)
                if args.live:
                    count += 1
                    add_live_item(fake.data, count)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``biotorrents`` command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out, err = sys.stdout, sys.stderr
    try:
        if args.command == "demo":
            from ._demo import run_demo

            asyncio.run(run_demo(parse_rule(args.rate_limit), out))
        elif args.command == "fake-server":
            asyncio.run(until_signal(run_fake_server(args, out)))
            print("stopped", file=err)
        elif args.command == "watch":
            asyncio.run(until_signal(run_watch(args, out, err)))
        else:
            asyncio.run(run_endpoint(args, out, err))
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130
    except BrokenPipeError:
        # `biotorrents ... | head`: the reader left; nothing is wrong.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except BioTorrentsError as exc:
        # Public exception types: worth naming, they are what a script catches.
        print(f"error: {type(exc).__name__}: {exc}", file=err)
        return 1
    except (CliError, ValueError, OSError, ImportError) as exc:
        print(f"error: {exc}", file=err)
        return 1
    except Exception as exc:  # a bug of ours: still one line, no traceback
        print(
            f"error: unexpected {type(exc).__name__}: {exc} "
            "(please report this as a bug)",
            file=err,
        )
        return 1
    return 0

"""Where a watch stream keeps its cursor, and who may move it: memory, SQLite, Redis.

A cursor is a small JSON-able mapping that says what a stream has handed over.
The minimal protocol (``CursorStore``) is two coroutines, ``load`` and ``save``.

The three stores of the package also hold a **lease** per cursor, so that of
several streams on one ``(store, name)`` (replicas of a bot, a rolling deploy, a
supervisor that starts the new process before the old one is gone) exactly one
is active and the others stand by:

- ``acquire`` takes a free (or expired) lease and bumps the cursor's **fence**
  number; a lease held by someone else is reported with its holder and the time
  it has left;
- the holder renews it well before it runs out, and releases it with
  its last save, so a standby takes over at once after a clean stop;
- every ``save`` of the holder carries its fence and is refused
  (``LeaseLostError``) once another acquisition moved the fence on, in the same
  transaction or script as the write: a holder paused past its lease cannot
  overwrite the new holder's cursor (the lock-with-fencing rule of Kleppmann's
  "How to do distributed locking").

Leases are timed by one clock per store: ``MemoryStore`` the process's monotonic
clock; ``FileStore`` the host's wall clock (``time.time()``: one host, every
process on it reads the same clock; a clock step longer than a lease can end a
lease early or late, and the fence still refuses a stale holder's save);
``RedisStore`` the Redis server's clock (key expiry), whatever the hosts' clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from ._redis import connect, in_own_task
from .exceptions import ArgumentError, CursorFileError, LeaseLostError, SharedStoreError

if TYPE_CHECKING:
    import redis.asyncio

__all__ = [
    "CursorStore",
    "FileStore",
    "Lease",
    "LeasedStore",
    "MemoryStore",
    "RedisStore",
    "lost_lease",
    "other_kind",
]

Cursor = dict[str, Any]


class CursorStore(Protocol):
    """Where watch streams keep their cursors, by stream name."""

    async def load(self, name: str) -> Cursor | None:
        """Return the cursor saved under ``name``, or ``None``."""
        ...

    async def save(self, name: str, cursor: Mapping[str, Any]) -> None:
        """Replace the cursor saved under ``name``."""
        ...


@attrs.frozen
class Lease:
    """What ``acquire`` found.

    Attributes:
        fence: The fence number of the lease just taken, or ``None`` when
            another stream holds it.
        holder: Who holds the lease (host, process and stream).
        expires_in: Seconds until the holder's lease runs out unless renewed.
    """

    fence: int | None
    holder: str
    expires_in: float


@runtime_checkable
class LeasedStore(CursorStore, Protocol):
    """A ``CursorStore`` that also holds one lease per cursor (see the module)."""

    async def acquire(self, name: str, *, kind: str, holder: str, ttl: float) -> Lease:
        """Take the lease of ``name`` if it is free or expired.

        Raises:
            ValueError: ``name`` holds the cursor of a stream of another kind.
        """
        ...

    async def renew(self, name: str, *, holder: str, fence: int, ttl: float) -> bool:
        """Extend the lease; ``False`` when another stream took it meanwhile."""
        ...

    async def release(self, name: str, *, holder: str, fence: int) -> None:
        """Give the lease up (a standby takes over at once)."""
        ...

    async def save(
        self, name: str, cursor: Mapping[str, Any], *, fence: int | None = None
    ) -> None:
        """Replace the cursor; with ``fence``, only while it is still current.

        Raises:
            LeaseLostError: Another stream took the lease (the fence moved on).
        """
        ...


def other_kind(name: str, kind: str, found: str) -> ArgumentError:
    return ArgumentError(
        f"the cursor {name!r} in this store belongs to a {found} stream, not to "
        f"a {kind} stream: give each stream its own name="
    )


def lost_lease(name: str) -> LeaseLostError:
    return LeaseLostError(
        f"the cursor {name!r} was taken over by another stream (this one was "
        "paused past its lease): it yields nothing more"
    )


class MemoryStore:
    """Cursors in this process only (the default): forgotten at exit.

    Its leases keep two streams of one process on one cursor apart.
    """

    def __init__(self) -> None:
        self._cursors: dict[str, str] = {}
        # name -> [kind, holder (None: free), fence, expires (monotonic)]
        self._leases: dict[str, list[Any]] = {}

    async def load(self, name: str) -> Cursor | None:
        """Return the cursor saved under ``name``, or ``None``."""
        text = self._cursors.get(name)
        return None if text is None else dict(json.loads(text))

    async def save(
        self, name: str, cursor: Mapping[str, Any], *, fence: int | None = None
    ) -> None:
        """Replace the cursor saved under ``name`` (with ``fence``: if current)."""
        if fence is not None and self._leases.get(name, [None, None, 0])[2] != fence:
            raise lost_lease(name)
        self._cursors[name] = json.dumps(cursor)

    async def acquire(self, name: str, *, kind: str, holder: str, ttl: float) -> Lease:
        """Take the lease of ``name`` if it is free or expired."""
        now = time.monotonic()
        record = self._leases.setdefault(name, [kind, None, 0, 0.0])
        if record[0] != kind:
            raise other_kind(name, kind, record[0])
        if record[1] not in (None, holder) and record[3] > now:
            return Lease(None, record[1], record[3] - now)
        if record[1] != holder:
            record[2] += 1
        record[1], record[3] = holder, now + ttl
        return Lease(record[2], holder, ttl)

    async def renew(self, name: str, *, holder: str, fence: int, ttl: float) -> bool:
        """Extend the lease; ``False`` when another stream took it meanwhile."""
        record = self._leases.get(name)
        if record is None or record[2] != fence or record[1] not in (None, holder):
            return False
        record[1], record[3] = holder, time.monotonic() + ttl
        return True

    async def release(self, name: str, *, holder: str, fence: int) -> None:
        """Give the lease up."""
        record = self._leases.get(name)
        if record is not None and record[1] == holder and record[2] == fence:
            record[1], record[3] = None, 0.0


class FileStore:
    """Cursors in a SQLite file: survives restarts, crashes and ``kill -9``.

    Every save is one SQLite transaction (journalled, fully synced), so a process
    killed in the middle of a write leaves the previous cursor intact. The file
    is written from a worker thread, never on the event loop, and created 0600.
    Leases live in the same file (one host; timed by its wall clock).

    Args:
        path: The database file; created with its tables if missing (its folder
            must exist).

    Raises (from its coroutines):
        CursorFileError: The file cannot be used (the message says why).
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._ready = False

    def __repr__(self) -> str:
        return f"<FileStore {str(self._path)!r}>"

    def _make_private(self) -> None:
        """Create the file 0600 (whatever the umask), or tighten an existing one.

        A cursor says what a bot has read; SQLite's own journal files take the
        database file's mode.
        """
        try:
            fd = os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            with contextlib.suppress(OSError):  # not ours to change: leave it
                if self._path.stat().st_mode & 0o077:
                    self._path.chmod(0o600)
        else:
            os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self._make_private()
        # Autocommit: each method opens its own BEGIN IMMEDIATE transaction, so
        # a lease check and the write it guards are one.
        connection = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        connection.execute("PRAGMA synchronous=FULL")
        if not self._ready:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS cursors "
                "(name TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            connection.execute(
                "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, "
                "kind TEXT NOT NULL, holder TEXT, fence INTEGER NOT NULL, "
                "expires REAL NOT NULL)"
            )
            self._ready = True
        return connection

    def _transaction(self, work: Any, *args: Any) -> Any:
        try:
            connection = self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise self._error(exc) from exc
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection, *args)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result
        except (sqlite3.Error, OSError) as exc:
            raise self._error(exc) from exc
        finally:
            connection.close()

    def _error(self, exc: BaseException) -> CursorFileError:
        if isinstance(exc, FileNotFoundError) or not self._path.parent.is_dir():
            cause = "its folder does not exist"
        elif isinstance(exc, PermissionError):
            cause = "permission denied"
        elif isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
            cause = "the file is not a SQLite database"
        elif "readonly" in str(exc) or "read-only" in str(exc):
            cause = "the file or its folder is read-only"
        else:
            cause = f"{type(exc).__name__}: {exc}"
        return CursorFileError(f"the cursor file {str(self._path)!r}: {cause}")

    @staticmethod
    def _load(connection: sqlite3.Connection, name: str) -> Cursor | None:
        row = connection.execute(
            "SELECT value FROM cursors WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    @staticmethod
    def _save(
        connection: sqlite3.Connection, name: str, text: str, fence: int | None
    ) -> None:
        if fence is not None:
            row = connection.execute(
                "SELECT fence FROM leases WHERE name = ?", (name,)
            ).fetchone()
            if row is None or row[0] != fence:
                raise lost_lease(name)
        connection.execute(
            "INSERT INTO cursors (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, text),
        )

    @staticmethod
    def _acquire(
        connection: sqlite3.Connection, name: str, kind: str, holder: str, ttl: float
    ) -> Lease:
        now = time.time()
        row = connection.execute(
            "SELECT kind, holder, fence, expires FROM leases WHERE name = ?", (name,)
        ).fetchone()
        if row is not None and row[0] != kind:
            raise other_kind(name, kind, row[0])
        if row is not None and row[1] not in (None, holder) and row[3] > now:
            return Lease(None, row[1], row[3] - now)
        fence = 1 if row is None else row[2] + (row[1] != holder)
        connection.execute(
            "INSERT INTO leases (name, kind, holder, fence, expires) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "holder = excluded.holder, fence = excluded.fence, "
            "expires = excluded.expires",
            (name, kind, holder, fence, now + ttl),
        )
        return Lease(fence, holder, ttl)

    @staticmethod
    def _renew(
        connection: sqlite3.Connection,
        name: str,
        holder: str,
        fence: int,
        ttl: float,
    ) -> bool:
        cursor = connection.execute(
            "UPDATE leases SET holder = ?, expires = ? WHERE name = ? AND fence = ? "
            "AND (holder IS NULL OR holder = ?)",
            (holder, time.time() + ttl, name, fence, holder),
        )
        return cursor.rowcount == 1

    @staticmethod
    def _release(
        connection: sqlite3.Connection, name: str, holder: str, fence: int
    ) -> None:
        connection.execute(
            "UPDATE leases SET holder = NULL, expires = 0 "
            "WHERE name = ? AND holder = ? AND fence = ?",
            (name, holder, fence),
        )

    async def load(self, name: str) -> Cursor | None:
        """Return the cursor saved under ``name``, or ``None``."""
        result: Cursor | None = await asyncio.to_thread(
            self._transaction, self._load, name
        )
        return result

    async def save(
        self, name: str, cursor: Mapping[str, Any], *, fence: int | None = None
    ) -> None:
        """Replace the cursor saved under ``name`` (atomically, off the loop)."""
        await asyncio.to_thread(
            self._transaction, self._save, name, json.dumps(cursor), fence
        )

    async def acquire(self, name: str, *, kind: str, holder: str, ttl: float) -> Lease:
        """Take the lease of ``name`` if it is free or expired."""
        lease: Lease = await asyncio.to_thread(
            self._transaction, self._acquire, name, kind, holder, ttl
        )
        return lease

    async def renew(self, name: str, *, holder: str, fence: int, ttl: float) -> bool:
        """Extend the lease; ``False`` when another stream took it meanwhile."""
        renewed: bool = await asyncio.to_thread(
            self._transaction, self._renew, name, holder, fence, ttl
        )
        return renewed

    async def release(self, name: str, *, holder: str, fence: int) -> None:
        """Give the lease up."""
        await asyncio.to_thread(self._transaction, self._release, name, holder, fence)


# KEYS: lease (holder, with expiry), fence (a counter), kind; ARGV as named.
_ACQUIRE = """
local kind = redis.call('GET', KEYS[3])
if kind and kind ~= ARGV[3] then return {-1, kind, 0} end
if not kind then redis.call('SET', KEYS[3], ARGV[3]) end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return {0, holder, redis.call('PTTL', KEYS[1])}
end
local fence = tonumber(redis.call('GET', KEYS[2]) or '0')
if holder ~= ARGV[1] then
  -- Never below the server's clock in ms: a fence key lost with its data (a
  -- restart without persistence, an eviction, a failover) cannot hand out a
  -- number an old holder still has.
  local t = redis.call('TIME')
  fence = math.max(fence + 1, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  redis.call('SET', KEYS[2], string.format('%d', fence))
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {fence, ARGV[1], tonumber(ARGV[2])}
"""
# KEYS: lease, fence. ARGV: holder, ttl_ms, fence.
_RENEW = """
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# KEYS: cursor, fence. ARGV: text, fence ('' = unfenced).
_SAVE = """
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""
# KEYS: lease, fence. ARGV: holder, fence.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2]
then redis.call('DEL', KEYS[1]) end
return 1
"""


class RedisStore:
    """Cursors in Redis, shared by the replicas of a bot.

    Leases are Redis keys with an expiry (timed by the Redis server's clock),
    taken, extended, released and checked against the fence by Lua scripts, so
    each check and the write it guards are one step. redis-py's ``Lock`` gives
    the token compare-and-delete and compare-and-extend, but no fence stored with
    the data and no save that checks it, so the scripts are our own; its
    pattern (a random holder token, expiry on the server) is reused.

    Args:
        redis: A ``redis://`` URL, or a ``redis.asyncio.Redis`` client of yours
            (borrowed: never closed).
        prefix: The start of every key: ``{prefix}{name}`` (the cursor) and
            ``{prefix}{name}:lease``, ``:fence``, ``:kind``. In Redis Cluster, put
            a hash tag in it (``"{mybot}:cursor:"``) so a name's keys share a slot.
    """

    def __init__(
        self, redis: str | redis.asyncio.Redis, *, prefix: str = "biotorrents:cursor:"
    ) -> None:
        self._redis, self._owned = connect(redis)
        self._prefix = prefix
        self._pending: set[asyncio.Future[Any]] = set()
        self._scripts = {
            name: self._redis.register_script(text)
            for name, text in (
                ("acquire", _ACQUIRE),
                ("renew", _RENEW),
                ("save", _SAVE),
                ("release", _RELEASE),
            )
        }

    def __repr__(self) -> str:
        return f"<RedisStore prefix={self._prefix!r}>"

    def _key(self, name: str, part: str = "") -> str:
        return f"{self._prefix}{name}{part}"

    async def load(self, name: str) -> Cursor | None:
        """Return the cursor saved under ``name``, or ``None``."""
        text = await self._call(self._redis.get(self._key(name)))
        return None if text is None else dict(json.loads(text))

    async def save(
        self, name: str, cursor: Mapping[str, Any], *, fence: int | None = None
    ) -> None:
        """Replace the cursor saved under ``name`` (with ``fence``: if current)."""
        saved = await self._call(
            self._scripts["save"](
                keys=[self._key(name), self._key(name, ":fence")],
                args=[json.dumps(cursor), "" if fence is None else str(fence)],
            )
        )
        if not int(saved):
            raise lost_lease(name)

    async def acquire(self, name: str, *, kind: str, holder: str, ttl: float) -> Lease:
        """Take the lease of ``name`` if it is free or expired."""
        fence, who, left = await self._call(
            self._scripts["acquire"](
                keys=[self._key(name, p) for p in (":lease", ":fence", ":kind")],
                args=[holder, max(1, round(ttl * 1000)), kind],
            )
        )
        who = who.decode() if isinstance(who, bytes) else str(who)
        if int(fence) < 0:
            raise other_kind(name, kind, who)
        return Lease(int(fence) or None, who, max(int(left), 0) / 1000)

    async def renew(self, name: str, *, holder: str, fence: int, ttl: float) -> bool:
        """Extend the lease; ``False`` when another stream took it meanwhile."""
        renewed = await self._call(
            self._scripts["renew"](
                keys=[self._key(name, ":lease"), self._key(name, ":fence")],
                args=[holder, max(1, round(ttl * 1000)), str(fence)],
            )
        )
        return bool(int(renewed))

    async def release(self, name: str, *, holder: str, fence: int) -> None:
        """Give the lease up."""
        await self._call(
            self._scripts["release"](
                keys=[self._key(name, ":lease"), self._key(name, ":fence")],
                args=[holder, str(fence)],
            )
        )

    async def aclose(self) -> None:
        """Close the Redis connection if this store opened it."""
        if self._pending:  # saves that went on after their caller was cancelled
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._owned:
            await self._redis.aclose()

    async def _call(self, command: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            # A save whose caller is cancelled is still kept (see in_own_task).
            return await asyncio.shield(in_own_task(command, self._pending))
        except (RedisError, OSError) as exc:
            raise SharedStoreError(
                f"the cursor store (Redis) failed: {type(exc).__name__}: {exc}"
            ) from exc

"""Where a watch stream keeps its cursor: memory, a SQLite file, or Redis.

A cursor is a small JSON-able mapping that says what a stream has handed over. The
protocol is two coroutines, so a shared store is a few lines: ``RedisStore``
is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ._redis import connect, in_own_task
from .exceptions import SharedStoreError

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["CursorStore", "FileStore", "MemoryStore", "RedisStore"]

Cursor = dict[str, Any]


class CursorStore(Protocol):
    """Where watch streams keep their cursors, by stream name."""

    async def load(self, name: str) -> Cursor | None:
        """Return the cursor saved under ``name``, or ``None``."""
        ...

    async def save(self, name: str, cursor: Mapping[str, Any]) -> None:
        """Replace the cursor saved under ``name``."""
        ...


class MemoryStore:
    """Cursors in this process only (the default): forgotten at exit."""

    def __init__(self) -> None:
        self._cursors: dict[str, str] = {}

    async def load(self, name: str) -> Cursor | None:
        """Return the cursor saved under ``name``, or ``None``."""
        text = self._cursors.get(name)
        return None if text is None else dict(json.loads(text))

    async def save(self, name: str, cursor: Mapping[str, Any]) -> None:
        """Replace the cursor saved under ``name``."""
        self._cursors[name] = json.dumps(cursor)


class FileStore:
    """Cursors in a SQLite file: survives restarts, crashes and ``kill -9``.

    Every save is one SQLite transaction (journalled, fully synced), so a process
    killed in the middle of a write leaves the previous cursor intact. The file
    is written from a worker thread, never on the event loop.

    Args:
        path: The database file; created with its table if missing.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._ready = False

    def __repr__(self) -> str:
        return f"<FileStore {str(self._path)!r}>"

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self._make_private()
        connection = sqlite3.connect(self._path, timeout=30)
        connection.execute("PRAGMA synchronous=FULL")
        if not self._ready:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS cursors "
                "(name TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            connection.commit()
            self._ready = True
        return connection

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

    def _load(self, name: str) -> Cursor | None:
        connection = self._connect()
        try:
            row = connection.execute(
                "SELECT value FROM cursors WHERE name = ?", (name,)
            ).fetchone()
        finally:
            connection.close()
        return None if row is None else dict(json.loads(row[0]))

    def _save(self, name: str, text: str) -> None:
        connection = self._connect()
        try:
            with connection:  # one transaction: all of it, or none of it
                connection.execute(
                    "INSERT INTO cursors (name, value) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    (name, text),
                )
        finally:
            connection.close()

    async def load(self, name: str) -> Cursor | None:
        """Return the cursor saved under ``name``, or ``None``."""
        return await asyncio.to_thread(self._load, name)

    async def save(self, name: str, cursor: Mapping[str, Any]) -> None:
        """Replace the cursor saved under ``name`` (atomically, off the loop)."""
        await asyncio.to_thread(self._save, name, json.dumps(cursor))


class RedisStore:
    """Cursors in Redis, shared by the replicas of a bot.

    Args:
        redis: A ``redis://`` URL, or a ``redis.asyncio.Redis`` client of yours
            (borrowed: never closed).
        prefix: The start of every key: ``{prefix}{name}``.
    """

    def __init__(
        self, redis: str | redis.asyncio.Redis, *, prefix: str = "biotorrents:cursor:"
    ) -> None:
        self._redis, self._owned = connect(redis)
        self._prefix = prefix
        self._pending: set[asyncio.Future[Any]] = set()

    async def load(self, name: str) -> Cursor | None:
        """Return the cursor saved under ``name``, or ``None``."""
        text = await self._call(self._redis.get(self._prefix + name))
        return None if text is None else dict(json.loads(text))

    async def save(self, name: str, cursor: Mapping[str, Any]) -> None:
        """Replace the cursor saved under ``name``."""
        await self._call(self._redis.set(self._prefix + name, json.dumps(cursor)))

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

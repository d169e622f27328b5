"""A read cache that costs no place of the rate allowance.

The session looks an answer up *before* it asks the pacer for a place, so a hit
sends nothing and waits for nothing. What is kept, and for how long, is decided
per action (``DEFAULT_TTLS``); actions that change state on the server, or whose
answers are there to notice change (``index``, the inbox, notifications and
alerts), are never kept (``NEVER_CACHED``). Only successful answers are stored:
the server reports failures with HTTP 200, so the session stores nothing until
the envelope said ``success``.

Entries are keyed by a *namespace* (the account as ``account_key`` names it for
``RedisPacer``, the authentication mode and the site; never token material
beyond that key's truncated hash), the action and the parameters. Every
namespace has a generation number: a POST of the client bumps it, which drops
every entry of the account at once, and an answer whose request began before the
bump is stored under the old generation, where nobody looks (read-your-writes,
the same rule as the session's coalescing).

``aiohttp-client-cache`` was considered and does not fit: its cache lives in a
``ClientSession`` subclass, so a borrowed session cannot get it; its keys ignore
headers by default, so two accounts would share entries; it caches by HTTP
status, so Gazelle's HTTP 200 failures would be cached; and a hit inside the
session would still have taken a pacer place above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Self, runtime_checkable

from ._redis import connect, in_own_task, redis_salt, salted

if TYPE_CHECKING:
    import redis.asyncio

__all__ = [
    "DEFAULT_TTLS",
    "NEVER_CACHED",
    "CacheKey",
    "Lookup",
    "MemoryCache",
    "ReadCache",
    "RedisCache",
    "bypass",
    "cache_bypassed",
    "check_ttl",
    "ttl_for",
]

logger = logging.getLogger("biotorrents_async.cache")

#: Seconds an answer of each read-only action is kept by default. Profiles and
#: counters move slowly; a search may find a new user any minute.
DEFAULT_TTLS: Mapping[str, float] = {
    "user": 300.0,
    "community_stats": 300.0,
    "user_recents": 120.0,
    "userhistory": 120.0,  # type=posts only; see ttl_for
    "usersearch": 60.0,
    "bookmarks": 60.0,
}

#: Actions never cached, whatever ``ttls`` or ``ttl=`` say: ``index``, the inbox,
#: notifications and alerts are what a bot polls to notice change, and
#: ``inbox&type=viewconv`` and ``notifications`` change state on a GET (they mark
#: things read), so a hit would skip the state change.
NEVER_CACHED = frozenset(
    {
        "index",
        "inbox",
        "notifications",
        "get_user_notifications",
        "clear_user_notification",
    }
)

_bypass: ContextVar[bool] = ContextVar("biotorrents_async_cache_bypass", default=False)


@contextlib.contextmanager
def bypass() -> Iterator[None]:
    """Read past the cache for every call made inside the ``with`` block.

    The answers are still stored, so the next ordinary call sees them.
    """
    token = _bypass.set(True)
    try:
        yield
    finally:
        _bypass.reset(token)


def cache_bypassed() -> bool:
    """Whether the current context reads past the cache."""
    return _bypass.get()


def check_ttl(name: str, value: object) -> float:
    """Return ``value`` as seconds (>= 0), or raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be finite and >= 0 seconds, got {value!r}")
    return float(value)


def _merge_ttls(ttls: Mapping[str, float] | None) -> dict[str, float]:
    merged = dict(DEFAULT_TTLS)
    if ttls is None:
        return merged
    if not isinstance(ttls, Mapping):
        raise ValueError("ttls must be a mapping of action name to seconds")
    for action, seconds in ttls.items():
        if not isinstance(action, str) or not action:
            raise ValueError("ttls keys must be action names")
        if action in NEVER_CACHED:
            raise ValueError(
                f"action {action!r} is never cached (it is in NEVER_CACHED)"
            )
        merged[action] = check_ttl(f"ttls[{action!r}]", seconds)
    return merged


def ttl_for(ttls: Mapping[str, float], action: str, params: Mapping[str, str]) -> float:
    """Seconds to keep this read's answer; 0 means not cached."""
    if action in NEVER_CACHED:
        return 0.0
    # userhistory has other types than posts (subscriptions, quotes) that are
    # the user's unread state; only the posts listing is a plain read.
    if action == "userhistory" and params.get("type") != "posts":
        return 0.0
    return ttls.get(action, 0.0)


class CacheKey(NamedTuple):
    """Where one answer is kept: whose it is, and what was asked."""

    namespace: str
    action: str
    params: str  # a digest of the sorted parameters

    @classmethod
    def of(cls, namespace: str, action: str, params: Mapping[str, str]) -> CacheKey:
        """Build a key; the parameters are hashed, never kept as text."""
        text = json.dumps(sorted(params.items()), separators=(",", ":"))
        return cls(namespace, action, hashlib.sha256(text.encode()).hexdigest()[:32])


class Lookup(NamedTuple):
    """What a lookup found: the answer's JSON text (``None``: a miss), and a stamp.

    The stamp is passed back to ``store``: an answer whose lookup came before an
    invalidation is stored where no later lookup looks.
    """

    text: str | None
    stamp: int


@runtime_checkable
class ReadCache(Protocol):
    """Where the client keeps answers of read-only actions.

    ``MemoryCache`` keeps them in this process, ``RedisCache`` shares them
    between the processes of one account. A backend stores JSON text; the
    session decodes it, so a caller cannot change a cached answer by mutating
    what it got.
    """

    @property
    def ttls(self) -> Mapping[str, float]:
        """Seconds an answer of each action is kept (``DEFAULT_TTLS`` merged)."""
        ...

    async def lookup(self, key: CacheKey, *, read: bool = True) -> Lookup:
        """Return the live entry of ``key`` (or a miss) and the current stamp.

        With ``read=False`` only the stamp is fetched (a bypass that refreshes).
        """
        ...

    async def store(self, key: CacheKey, stamp: int, text: str, ttl: float) -> None:
        """Keep ``text`` for ``ttl`` seconds, unless ``stamp`` is out of date."""
        ...

    async def invalidate(self, namespace: str) -> None:
        """Drop every entry of ``namespace`` (the client changed state)."""
        ...

    async def aclose(self) -> None:
        """Release what the cache holds (connections)."""
        ...


class _Base:
    def __init__(self, ttls: Mapping[str, float] | None) -> None:
        self._ttls = MappingProxyType(_merge_ttls(ttls))
        self.hits = 0
        """Lookups answered from this cache (all clients using it)."""
        self.misses = 0
        """Lookups that found nothing live."""

    @property
    def ttls(self) -> Mapping[str, float]:
        """Seconds an answer of each action is kept (``DEFAULT_TTLS`` merged)."""
        return self._ttls

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release what the cache holds (nothing, for ``MemoryCache``)."""


class MemoryCache(_Base):
    """Answers kept in this process, least recently used dropped first.

    Share one between clients of the same event loop if you like: entries are
    keyed by account, so two accounts never see each other's answers.

    Args:
        max_entries: The most answers kept; the least recently used goes first.
        ttls: Seconds per action, over ``DEFAULT_TTLS`` (``0`` turns an action
            off; actions in ``NEVER_CACHED`` are refused).
        clock: Monotonic clock in seconds; for tests.

    Raises:
        ValueError: ``max_entries`` below 1, or a bad ``ttls`` entry.
    """

    def __init__(
        self,
        max_entries: int = 1024,
        *,
        ttls: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (
            isinstance(max_entries, bool)
            or not isinstance(max_entries, int)
            or max_entries < 1
        ):
            raise ValueError(f"max_entries must be an int >= 1, got {max_entries!r}")
        super().__init__(ttls)
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[CacheKey, tuple[float, int, str]] = OrderedDict()
        self._generations: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<MemoryCache {len(self._entries)}/{self._max} entries>"

    def __len__(self) -> int:
        return len(self._entries)

    async def lookup(self, key: CacheKey, *, read: bool = True) -> Lookup:
        """Return the live entry of ``key`` (or a miss) and the current stamp."""
        generation = self._generations.get(key.namespace, 0)
        entry = self._entries.get(key) if read else None
        if entry is not None:
            expires, stamp, text = entry
            if expires > self._clock() and stamp == generation:
                self._entries.move_to_end(key)
                self.hits += 1
                return Lookup(text, generation)
            del self._entries[key]
        if read:
            self.misses += 1
        return Lookup(None, generation)

    async def store(self, key: CacheKey, stamp: int, text: str, ttl: float) -> None:
        """Keep ``text`` for ``ttl`` seconds, unless ``stamp`` is out of date."""
        if stamp != self._generations.get(key.namespace, 0) or ttl <= 0:
            return  # the client changed state while this answer was on its way
        self._entries[key] = (self._clock() + ttl, stamp, text)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def invalidate(self, namespace: str) -> None:
        """Drop every entry of ``namespace``."""
        self._generations[namespace] = self._generations.get(namespace, 0) + 1
        for key in [k for k in self._entries if k.namespace == namespace]:
            del self._entries[key]


class RedisCache(_Base):
    """Answers kept in Redis, shared by every process of an account.

    Each entry is one Redis string with its own expiry; a lookup is one ``MGET``
    of the entry and its namespace's generation. Keys are
    ``{prefix:namespace-digest}:...``: no token, no parameters in clear.

    When Redis fails, the cache steps aside rather than failing the call: a
    lookup is a miss, a store is skipped (each logged at WARNING, once per
    outage), and a failed invalidation makes this process read past the cache
    until a later one succeeds, so it never serves what it knows may be stale.
    The request then goes to the server, paced as usual. Never a raw Redis
    exception.

    Args:
        redis: A ``redis://`` URL, or a ``redis.asyncio.Redis`` client of yours
            (borrowed: never closed).
        ttls: Seconds per action, over ``DEFAULT_TTLS``.
        prefix: The first part of every key.

    Raises:
        ImportError: The ``redis`` package is missing (install the extra).
        ValueError: A bad ``ttls`` entry.
    """

    def __init__(
        self,
        redis: str | redis.asyncio.Redis,
        *,
        ttls: Mapping[str, float] | None = None,
        prefix: str = "biotorrents:cache",
    ) -> None:
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("prefix must be a non-empty str")
        super().__init__(ttls)
        self._redis, self._owned = connect(redis)
        self._prefix = prefix
        self._pending: set[asyncio.Future[Any]] = set()
        self._stale: set[str] = set()  # namespaces whose invalidation failed
        self._salt: bytes | None = None
        self._failing = False
        self.errors = 0
        """Redis commands that failed (each treated as a miss or a no-op)."""

    def __repr__(self) -> str:
        return f"<RedisCache prefix={self._prefix!r}>"

    def _tag(self, namespace: str) -> str:
        # Keyed by this Redis's install salt: a plain hash of the namespace
        # (which holds the token's hash) would name the token on every install.
        digest = salted(namespace, self._salt or b"")
        return f"{{{self._prefix}:{digest}}}"  # one hash slot per namespace

    async def _salted(self) -> None:
        if self._salt is None:
            self._salt = await self._run(redis_salt(self._redis, self._prefix))

    def _keys(self, key: CacheKey) -> tuple[str, str]:
        tag = self._tag(key.namespace)
        return f"{tag}:gen", f"{tag}:{key.action}:{key.params}"

    async def _run(self, command: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            # Shielded in a task of its own: see in_own_task.
            result = await asyncio.shield(in_own_task(command, self._pending))
        except (RedisError, OSError) as exc:
            self.errors += 1
            if not self._failing:
                self._failing = True
                logger.warning(
                    "cache: Redis failed (%s: %s); reading past the cache until "
                    "it answers again",
                    type(exc).__name__,
                    exc,
                )
            raise _UnavailableError from None
        if self._failing:
            self._failing = False
            logger.warning("cache: Redis answers again")
        return result

    async def lookup(self, key: CacheKey, *, read: bool = True) -> Lookup:
        """Return the live entry of ``key`` (or a miss) and the current stamp."""
        try:
            await self._salted()
            gen_key, entry_key = self._keys(key)
            if key.namespace in self._stale:
                await self._run(self._redis.incr(gen_key))
                self._stale.discard(key.namespace)
            if read:
                generation, raw = await self._run(self._redis.mget(gen_key, entry_key))
            else:
                generation, raw = await self._run(self._redis.get(gen_key)), None
        except _UnavailableError:
            if read:
                self.misses += 1
            return Lookup(None, -1)  # -1: never stored
        current = int(generation or 0)
        if raw is not None:
            stamp, _, text = raw.decode().partition(":")
            if stamp == str(current):
                self.hits += 1
                return Lookup(text, current)
        if read:
            self.misses += 1
        return Lookup(None, current)

    async def store(self, key: CacheKey, stamp: int, text: str, ttl: float) -> None:
        """Keep ``text`` for ``ttl`` seconds under the generation ``stamp``."""
        if stamp < 0 or ttl <= 0:
            return
        # An entry stored under a generation that has moved on is never read.
        with contextlib.suppress(_UnavailableError):
            await self._salted()
            _, entry_key = self._keys(key)
            await self._run(
                self._redis.set(
                    entry_key, f"{stamp}:{text}", px=max(1, round(ttl * 1000))
                )
            )

    async def invalidate(self, namespace: str) -> None:
        """Drop every entry of ``namespace`` in every process, by a new generation."""
        try:
            await self._salted()
            await self._run(self._redis.incr(f"{self._tag(namespace)}:gen"))
        except _UnavailableError:
            # Retried before the next lookup; until then nothing is served.
            self._stale.add(namespace)
        else:
            self._stale.discard(namespace)

    async def aclose(self) -> None:
        """Close the Redis connection if this cache opened it."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._owned:
            await self._redis.aclose()


class _UnavailableError(Exception):
    """Redis did not answer; the caller treats it as a miss."""

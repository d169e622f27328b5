"""One rate allowance shared by many processes and hosts, kept in Redis.

``RedisPacer`` implements the ``Pacer`` protocol with
the same semantics as ``LocalPacer``: a request holds a
place from sending until ``RateLimit.window`` after its answer, at most
``requests`` places are held, and waiters are served by priority (interactive
before background, with the same bounded bypass), first come first served —
across every process that uses the same Redis key.

Each decision is one server-side Lua script, timed by the Redis server's clock
(``TIME``), so hosts whose clocks differ still agree. Inside a process, waiters
queue locally (``WaitQueue``) and only the head
competes in Redis, so Redis sees one waiter per process, not one per task.

Faults:

- A process killed while holding a place: the place was leased until
  ``request_timeout + window`` after sending, and expires then.
- A process killed while waiting: its queue entry carries a heartbeat and is
  dropped after ``heartbeat`` seconds.
- Redis unreachable: ``SharedStoreError``, raised
  before anything is sent (never a hang: the connection made from a URL has
  short socket timeouts; never a burst: nothing is sent without a place).
- Redis restarted, restored from a stale dump, failed over to a replica, or
  some of the keys evicted: the script finds its state missing, its held
  places missing, or the state written by another server run (``run_id``);
  it cannot know what was sent in the last window, and holds everyone for one
  window; answers that arrive afterwards put their holds back.
- A process frozen between the grant and sending (``SIGSTOP``, a VM pause, a
  blocking call): a grant that took longer than one window to arrive, by the
  local monotonic clock, is given back unused and asked for again, since its
  lease may have run out meanwhile.

Needs the ``redis`` extra: ``pip install "biotorrents-async[redis]"``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ._pacing import INTERACTIVE, MAX_BYPASS, QueuedSlot, WaitQueue
from ._policy import RateLimit
from .exceptions import SharedStoreError

if TYPE_CHECKING:
    import redis.asyncio

__all__ = [
    "RedisPacer",
    "account_key",
    "connect",
    "in_own_task",
    "redis_salt",
    "salted",
]

logger = logging.getLogger("biotorrents_async.pacing")
T = TypeVar("T")

# One script for every operation, so that each decision is atomic and timed by
# the Redis server's clock. Keys share one hash tag (Redis Cluster friendly).
#   held   ZSET lease -> expiry (ms): in flight until sent+timeout+window, then
#          answer+window
#   queue  ZSET waiter -> priority * 2^40 + ticket (served lowest first)
#   age    ZSET waiter -> ticket (the oldest waiter, for the bounded bypass)
#   alive  ZSET waiter -> heartbeat deadline (ms)
#   state  HASH epoch, ticket, bypassed, paused (ms)
_SCRIPT = """
local held, queue, age, alive, state = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, window = ARGV[1], tonumber(ARGV[2])
local keep = 86400000
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
local fresh = redis.call('HSETNX', state, 'epoch', now) == 1
-- The held places carry a marker ('#', never expiring): an eviction that took
-- them but not the state (or the reverse) is seen, so it takes all or nothing.
local marked = redis.call('ZSCORE', held, '#')
if fresh or not marked or redis.call('HGET', state, 'run') ~= run then
  -- No state (a first use, a restart, an eviction), or state from another
  -- server run (restored from a dump, a replica promoted): what was sent in the
  -- last window is unknown, so nobody sends for one window.
  redis.call('HSET', state, 'paused', now + window, 'run', run)
  redis.call('ZADD', held, 'inf', '#')
end
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, keep) end
if op == 'release' then
  if ARGV[4] == '1' then
    redis.call('ZADD', held, now + window, ARGV[3])
  else
    redis.call('ZREM', held, ARGV[3])
  end
  return {1, 0}
end
if op == 'pause' then
  local until_ = now + tonumber(ARGV[3])
  if until_ > tonumber(redis.call('HGET', state, 'paused') or '0') then
    redis.call('HSET', state, 'paused', until_)
  end
  return {1, 0}
end
if op == 'leave' then
  redis.call('ZREM', queue, ARGV[3])
  redis.call('ZREM', age, ARGV[3])
  redis.call('ZREM', alive, ARGV[3])
  return {1, 0}
end
-- acquire: waiter, priority, lease, requests, lease_ms, heartbeat_ms, max_bypass
local waiter, priority, lease = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local requests, lease_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local heartbeat, max_bypass = tonumber(ARGV[8]), tonumber(ARGV[9])
redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', alive, '-inf', now)) do
  redis.call('ZREM', queue, dead)
  redis.call('ZREM', age, dead)
  redis.call('ZREM', alive, dead)
end
local ticket = redis.call('ZSCORE', age, waiter)
if not ticket then
  ticket = redis.call('HINCRBY', state, 'ticket', 1)
  redis.call('ZADD', age, ticket, waiter)
end
redis.call('ZADD', queue, priority * 1099511627776 + tonumber(ticket), waiter)
redis.call('ZADD', alive, now + heartbeat, waiter)
local paused = tonumber(redis.call('HGET', state, 'paused') or '0')
if paused > now then return {0, paused - now} end
local bypassed = tonumber(redis.call('HGET', state, 'bypassed') or '0')
local oldest = redis.call('ZRANGE', age, 0, 0)[1]
local head = redis.call('ZRANGE', queue, 0, 0)[1]
if bypassed >= max_bypass then head = oldest end
if head ~= waiter then return {0, -1} end
if redis.call('ZCARD', held) - 1 >= requests then
  local first = tonumber(redis.call('ZRANGE', held, 0, 0, 'WITHSCORES')[2])
  -- Every place in flight: its answer, not the clock, frees one; look again soon.
  if first - now > window then return {0, -1} end
  return {0, first - now}
end
redis.call('ZREM', queue, waiter)
redis.call('ZREM', age, waiter)
redis.call('ZREM', alive, waiter)
if oldest == waiter then
  redis.call('HSET', state, 'bypassed', 0)
else
  redis.call('HINCRBY', state, 'bypassed', 1)
end
redis.call('ZADD', held, now + lease_ms, lease)
return {1, 0}
"""


def in_own_task(
    command: Awaitable[T], pending: set[asyncio.Future[Any]]
) -> asyncio.Future[T]:
    """Run a Redis command in a task of its own, kept in ``pending`` until done.

    Await it through ``asyncio.shield``: redis-py can swallow a cancellation
    that lands while a command is under way (the cancelled task then carries on
    as if nothing happened, for up to a lease; measured with redis-py 8.1, and
    reported upstream as redis/redis-py#2028). Shielded, the command finishes
    on its own and the caller's cancellation is raised at once. Its error goes
    to whoever awaits it; once that caller is gone, nobody needs it.
    """
    task = asyncio.ensure_future(command)
    pending.add(task)
    task.add_done_callback(pending.discard)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


def connect(redis: str | redis.asyncio.Redis) -> tuple[redis.asyncio.Redis, bool]:
    """Return a Redis client for a URL (owned) or the caller's (borrowed).

    A client made from a URL has short socket timeouts: an unreachable Redis is
    an error in seconds, never a hang.

    Raises:
        ImportError: The ``redis`` package is missing (install the extra).
    """
    try:
        import redis.asyncio as redis_asyncio
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "Redis support needs the redis package: pip install "
            '"biotorrents-async[redis]" (from a checkout: pip install ".[redis]")'
        ) from exc
    if isinstance(redis, str):
        client = redis_asyncio.Redis.from_url(
            redis, socket_timeout=5.0, socket_connect_timeout=5.0
        )
        return client, True
    return redis, False


def account_key(token: str | None, cookies: Mapping[str, str] | None) -> str:
    """Return a name for the account behind these credentials, for this process.

    The ``userid`` cookie when there is one; otherwise a hash of the token (the
    token alone does not say whose it is). The token's hash is the same on every
    install, so it must not be written anywhere as it is: ``salted`` turns it into
    a name that only this install's state can link to the token.
    """
    if cookies and cookies.get("userid"):
        return f"user:{cookies['userid']}"
    digest = hashlib.sha256((token or "").encode()).hexdigest()[:16]
    return f"token:{digest}"


def salted(name: str, salt: bytes) -> str:
    """A name to write into files and Redis keys: keyed by this install's salt.

    ``user:<id>`` names no secret and stays as it is; anything else (a token's
    hash, a cache namespace) becomes an HMAC under ``salt``, so the same token
    gives unrelated names on two installs (no fingerprint that links them).
    """
    if name.startswith("user:") and " " not in name:
        return name
    digest = hmac.new(salt, name.encode(), hashlib.sha256).hexdigest()[:16]
    return f"token:{digest}" if name.startswith("token:") else digest


async def redis_salt(redis: redis.asyncio.Redis, prefix: str) -> bytes:
    """This Redis's install salt (made once, kept without expiry).

    Every process that uses the same Redis gets the same salt, so they derive
    the same keys for one account; another Redis derives others.
    """
    key = f"{prefix}:install-salt"
    value = await redis.get(key)
    if value is None:
        await redis.set(key, secrets.token_hex(16), nx=True)
        value = await redis.get(key)
    if isinstance(value, str):  # a client made with decode_responses=True
        return value.encode()
    return bytes(value) if value is not None else b""


class RedisPacer:
    """Pacing state in Redis: one allowance for every process using ``key``.

    Use it as ``BioTorrentsClient(token, pacer=RedisPacer(url, key=...))``. Give
    every process of one account the same ``key`` (the account's user id, say)
    and the same rule; different accounts need different keys.

    Args:
        redis: A ``redis://`` URL, or a ``redis.asyncio.Redis`` client of yours
            (borrowed: never closed).
        rate_limit: The server's rule (``RateLimit.default``).
        key: Names the account; keys are ``{prefix:key}:...``.
        prefix: The first part of every Redis key.
        request_timeout: The longest a request can take (the client's
            ``timeout``); a killed process's places expire this long plus one
            window after it sent.
        poll: Seconds between checks while another process is first in line.
            ``None`` means ``window / 60``, at least 2 ms and at most 0.25 s.
        heartbeat: Seconds after which a waiting process that stopped checking
            (killed) leaves the queue. ``None`` means one window, at most 2 s:
            a killed waiter then never holds the others up longer than a killed
            request does.
        max_bypass: See ``MAX_BYPASS``.

    Raises:
        ImportError: The ``redis`` package is missing (install the extra).
    """

    def __init__(
        self,
        redis: str | redis.asyncio.Redis,
        *,
        rate_limit: RateLimit = RateLimit.default(),  # noqa: B008
        key: str = "default",
        prefix: str = "biotorrents",
        request_timeout: float = 30.0,
        poll: float | None = None,
        heartbeat: float | None = None,
        max_bypass: int = MAX_BYPASS,
        _salt_key: bool = False,
    ) -> None:
        if not isinstance(rate_limit, RateLimit):
            raise ValueError("rate_limit must be a RateLimit")
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty str")
        self._redis, self._owned = connect(redis)
        self._limit = rate_limit
        self._prefix = prefix
        # from_env names a token-only account by the token's hash: salted with
        # this Redis's install salt before it becomes a key (see ``salted``).
        self._unsalted = key if _salt_key else None
        self._keys = self._keys_for(key)
        self._window_ms = round(rate_limit.window * 1000)
        self._lease_ms = round((request_timeout + rate_limit.window) * 1000)
        # A lease must still cover a whole request when it arrives.
        self._stale_grant = max(rate_limit.window, 0.05)
        self._poll = (
            min(0.25, max(0.002, rate_limit.window / 60)) if poll is None else poll
        )
        if heartbeat is None:
            heartbeat = min(2.0, rate_limit.window)
        self._heartbeat = max(heartbeat, 4 * self._poll)
        self._heartbeat_ms = round(self._heartbeat * 1000)
        self._max_bypass = max_bypass
        self._me = secrets.token_hex(8)  # this process's entry in the shared queue
        self._queue = WaitQueue(max_bypass)
        self._script = self._redis.register_script(_SCRIPT)
        self._background: set[asyncio.Future[Any]] = set()
        self.waits = 0
        """How many callers had to wait for a place or a pause."""

    def __repr__(self) -> str:
        return f"<RedisPacer key={self._keys[-1].removesuffix(':state')!r}>"

    def _keys_for(self, key: str) -> list[str]:
        tag = f"{{{self._prefix}:{key}}}"
        return [f"{tag}:{name}" for name in ("held", "queue", "age", "alive", "state")]

    @property
    def limit(self) -> RateLimit:
        """The rule being kept."""
        return self._limit

    async def _eval(self, *args: str | int) -> list[int]:
        from redis.exceptions import RedisError

        try:
            if self._unsalted is not None:
                salt = await redis_salt(self._redis, self._prefix)
                self._keys = self._keys_for(salted(self._unsalted, salt))
                self._unsalted = None
            result = await self._script(keys=self._keys, args=list(args))
        except (RedisError, OSError) as exc:
            raise SharedStoreError(
                f"the shared pacing store (Redis) failed: {type(exc).__name__}: "
                f"{exc}; nothing was sent"
            ) from exc
        return [int(x) for x in result]

    def _start(self, *args: str | int) -> asyncio.Future[list[int]]:
        """Run the script in a task of its own, which ``aclose`` waits for."""
        return in_own_task(self._eval(*args), self._background)

    async def _run(self, *args: str | int) -> list[int]:
        return await asyncio.shield(self._start(*args))  # see in_own_task

    async def pause(self, seconds: float) -> None:
        """Let nobody, in any process of this key, send for ``seconds``."""
        await self._run("pause", self._window_ms, round(seconds * 1000))

    async def aclose(self) -> None:
        """Close the Redis connection if this pacer opened it."""
        while self._background:  # a finished acquire may start its release
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._owned:
            await self._redis.aclose()

    def _in_background(self, *args: str | int) -> None:
        self._start(*args).add_done_callback(self._done)

    @staticmethod
    def _done(task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.warning("pacing: could not update Redis: %s", task.exception())

    async def _acquire(self, slot: _RedisSlot) -> None:
        queue = self._queue
        waiter = slot.waiter = queue.push(slot.priority)
        waited = False
        since = 0.0
        asking: asyncio.Future[list[int]] | None = None
        try:
            while True:
                waiter.event.clear()
                if queue.head() is not waiter:
                    await waiter.event.wait()
                    continue
                asking = self._start(
                    "acquire",
                    self._window_ms,
                    self._me,
                    waiter.priority,
                    slot.lease,
                    self._limit.requests,
                    self._lease_ms,
                    self._heartbeat_ms,
                    self._max_bypass,
                )
                asked = time.monotonic()
                granted, wait_ms = await asyncio.shield(asking)  # see in_own_task
                asking = None
                late = time.monotonic() - asked
                if granted and late > self._stale_grant:
                    # Frozen while the grant came (a paused process): its lease
                    # may have expired and the place gone to someone else.
                    logger.warning(
                        "pacing: a place took %.1fs to arrive; given back unused "
                        "and asked for again",
                        late,
                    )
                    await self._run("release", self._window_ms, slot.lease, 0)
                    slot.lease = secrets.token_hex(8)
                    continue
                if granted:
                    break
                if not waited:
                    waited = True
                    self.waits += 1
                    since = time.monotonic()
                elif since and time.monotonic() - since >= 1:
                    # Polls are short: say once that the wait is long.
                    logger.debug(
                        "pacing: waiting %.3fs for a free slot",
                        time.monotonic() - since,
                    )
                    since = 0.0
                # Another process is first (-1): look again soon. Otherwise the
                # script says when the first place frees.
                wait = self._poll if wait_ms < 0 else wait_ms / 1000
                # Check in often enough to stay in the queue (the heartbeat).
                wait = min(wait, self._heartbeat / 3)
                if wait >= 1:
                    logger.debug("pacing: waiting %.3fs for a free slot", wait)
                try:
                    # A more urgent local caller wakes us to take over the turn.
                    async with asyncio.timeout(wait):
                        await waiter.event.wait()
                except TimeoutError:
                    pass
        except BaseException:
            queue.remove(waiter)

            def give_back() -> None:
                # The script may have granted the lease just as we gave up: give
                # it back unused (a no-op if it was not granted).
                self._in_background("release", self._window_ms, slot.lease, 0)
                if not queue:
                    # Nobody here waits any more: leave the shared queue, or this
                    # process would stand in the others' way until its heartbeat
                    # ends.
                    self._in_background("leave", self._window_ms, self._me)

            if asking is not None and not asking.done():
                # Only once its answer is in, or the release could come first.
                asking.add_done_callback(lambda _: give_back())
            else:
                give_back()
            queue.wake_head()
            raise
        finally:
            slot.waiter = None
        queue.grant(waiter)
        queue.wake_head()

    async def _release(self, slot: _RedisSlot) -> None:
        try:
            await self._run("release", self._window_ms, slot.lease, int(slot.used))
        except SharedStoreError as exc:
            # The lease stays as it was sent: it expires request_timeout +
            # window after sending, which is later than needed, never sooner.
            logger.warning("pacing: %s", exc)

    def slot(self, priority: int = INTERACTIVE) -> _RedisSlot:
        """Return a slot to hold around one attempt."""
        return _RedisSlot(self, priority)


class _RedisSlot(QueuedSlot):
    __slots__ = ("_pacer", "lease")

    def __init__(self, pacer: RedisPacer, priority: int) -> None:
        super().__init__(pacer._queue, priority)
        self._pacer = pacer
        self.lease = secrets.token_hex(8)

    async def __aenter__(self) -> None:
        await self._pacer._acquire(self)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._pacer._release(self)

"""The session wrapper: the one place that touches aiohttp.

It builds ``{base_url}/{api_path}?action=...``, sends the credentials, paces every
attempt, retries what is worth retrying and shares identical reads. What each
answer means (the envelope, every failure shape of the server) is decided by the
pure ``_answers.interpret``; redaction is ``_redact.Redactor``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, NamedTuple

import aiohttp
from aiohttp import hdrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import _telemetry
from ._answers import Outcome, body_too_large, interpret
from ._cache import CacheKey, ReadCache, cache_bypassed, ttl_for
from ._pacing import LocalPacer, Pacer, Slot, current_priority
from ._policy import RateLimit, RetryPolicy
from ._redact import Redactor
from .exceptions import AuthenticationError, RateLimitError, TransportError

__all__ = ["DEFAULT_MAX_BODY_SIZE", "Answer", "ApiSession"]

logger = logging.getLogger("biotorrents_async")

USER_AGENT = "biotorrents-async/0.1 (+aiohttp)"
#: The largest decoded body read before giving up (the biggest real answers,
#: a few thousand bookmarks, are a few MiB).
DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024

_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "set-cookie"})
_CLOSED = "this BioTorrentsClient is closed"


class _OwnerCancelledError(Exception):
    """The caller that was sending a shared read was cancelled."""


class _BodyTooLargeError(Exception):
    """The answer is larger than the configured cap."""


# Actions that change state on the server (GET included): never coalesced.
_STATE_CHANGING = frozenset({"notifications", "clear_user_notification"})


@functools.cache
def _verifying_context() -> _ssl.SSLContext:
    # Passed with every request: a context wins over a borrowed connector's
    # ssl=False, so certificates are verified whatever session is used.
    return _ssl.create_default_context()


class Answer(NamedTuple):
    """A call's ``response`` value and how many HTTP attempts it took."""

    value: Any
    attempts: int


class _Shared:
    """An identical read under way that other callers may join."""

    __slots__ = ("future", "generation", "priority", "slot")

    def __init__(self, generation: int, priority: int) -> None:
        # Made by the first caller that joins: a read nobody shares (the
        # common case) needs none.
        self.future: asyncio.Future[Answer] | None = None
        self.generation = generation
        self.priority = priority
        self.slot: Slot | None = None

    def joined(self) -> asyncio.Future[Answer]:
        """The future the sender will settle; made on the first join."""
        if self.future is None:
            self.future = asyncio.get_running_loop().create_future()
        return self.future

    def join(self, priority: int) -> None:
        # The shared request goes at the most urgent priority waiting on it.
        if priority < self.priority:
            self.priority = priority
            if self.slot is not None:
                self.slot.prioritize(priority)


class _SendOnce:
    """A per-request aiohttp middleware that refuses aiohttp's silent resend.

    aiohttp re-sends an idempotent request once when a kept-alive connection drops
    after sending. The server may have counted the first one, so the resend must
    wait for a place of its own: refusing it hands the failure to our retry loop,
    which takes a new pacer slot.
    """

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if self.sent:
            raise aiohttp.ServerDisconnectedError(
                "connection dropped after the request was sent"
            )
        self.sent = True
        return await handler(request)


class ApiSession:
    """Sends API requests; owns (or borrows) the aiohttp session.

    Args:
        token: Bearer token, or ``None``.
        cookies: ``session`` and ``userid`` cookies, or ``None``.
        base_url: Scheme and host of the site.
        api_path: ``api.php`` or ``ajax.php``.
        session: A caller-owned ``aiohttp.ClientSession``, never closed or mutated.
        rate_limit: The server's rule, or ``None`` for no client-side pacing.
        retry: The retry policy.
        timeout: Seconds per attempt, or an ``aiohttp.ClientTimeout``.
        ssl: ``True`` verifies certificates with the system's authorities, or an
            ``ssl.SSLContext`` of the caller's.
        pacer: Pacing state to use instead of a fresh ``LocalPacer``.
        max_body_size: The largest decoded body to read, in bytes.
        cache: Where answers of read-only actions are kept, or ``None``.
        cache_namespace: Whose answers these are (account, auth mode, site).
        sleep: Coroutine used for backoff waits (tests inject a recorder).
        clock: Monotonic clock in seconds.
        random: Source of jitter in ``[0, 1)``.
    """

    def __init__(
        self,
        *,
        token: str | None,
        cookies: Mapping[str, str] | None,
        base_url: str,
        api_path: str,
        session: aiohttp.ClientSession | None,
        rate_limit: RateLimit | None,
        retry: RetryPolicy,
        timeout: float | aiohttp.ClientTimeout,
        ssl: _ssl.SSLContext | bool = True,
        pacer: Pacer | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        cache: ReadCache | None = None,
        cache_namespace: str = "",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
    ) -> None:
        self._cache = cache
        self._namespace = cache_namespace
        self._url = URL(base_url.rstrip("/") + "/" + api_path.lstrip("/"))
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        # The secrets are the token and the session cookie; userid is a small
        # public number and replacing it would garble ordinary text.
        self.redactor = Redactor((token, (cookies or {}).get("session")))
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        if cookies:
            # An explicit header: the server marks these cookies Secure, so a jar
            # would drop them on a plain-http (test) server.
            self._headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        self._borrowed = session
        self._owned: aiohttp.ClientSession | None = None
        # What each request carries itself. Our own session gets the headers as
        # its defaults and aiohttp's resend switched off, sparing per-request work
        # (a header merge in Python, a middleware two coroutines deep).
        self._request_headers: dict[str, str] | None = self._headers
        # Whether each request needs a _SendOnce (not when aiohttp's resend is off).
        self._refuse_resend = True
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active: set[asyncio.Task[Any]] = set()
        self._cancelled_by_close: set[asyncio.Task[Any]] = set()
        self._auth_failure: str | None = None
        self._generation = 0
        self._retry = retry
        self._rate_limit = rate_limit
        self._penalty = (rate_limit or RateLimit.default()).window
        self._timeout = (
            timeout
            if isinstance(timeout, aiohttp.ClientTimeout)
            else aiohttp.ClientTimeout(total=timeout)
        )
        self._ssl = ssl if isinstance(ssl, _ssl.SSLContext) else _verifying_context()
        self._max_body = max_body_size
        self._sleep = sleep
        self._clock = clock
        self._random = random
        self.pacer: Pacer = pacer or LocalPacer(rate_limit, clock=clock, sleep=sleep)
        self._in_flight: dict[tuple[tuple[str, str], ...], _Shared] = {}
        self.requests_sent = 0
        self.retries = 0
        self.rate_limit_pauses = 0
        self.coalesced = 0
        self.cache_hits = 0
        self.cache_misses = 0
        # Telemetry hook: no-ops without opentelemetry (see _telemetry.py).
        self._telemetry = _telemetry.telemetry_for(
            url=self._url, redact=self.redact, pacer=lambda: self.pacer
        )

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    @property
    def rate_limit(self) -> RateLimit | None:
        """The rule this session paces to, or ``None``."""
        return self._rate_limit

    @property
    def holds_connections(self) -> bool:
        """Whether this object created an aiohttp session and never closed it."""
        # Not `.closed`: in a garbage-collected cycle aiohttp's connector may
        # be finalised first and then reports itself closed.
        return self._owned is not None

    @property
    def auth_failure(self) -> str | None:
        """Why the server refused the credentials, or ``None`` while it has not."""
        return self._auth_failure

    def rearm(self) -> None:
        """Send again after an authentication failure (the caller fixed the cause)."""
        self._auth_failure = None

    def _session(self) -> aiohttp.ClientSession:
        if self._borrowed is not None:
            return self._borrowed
        if self._closed:
            raise RuntimeError(_CLOSED)
        if self._owned is None:
            # Created here, inside a running loop (aiohttp ≥ 3.10 requires one).
            # No cookie jar: logout answers try to delete the session cookies.
            self._owned = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), headers=self._headers
            )
            self._request_headers = None
            if hasattr(self._owned, "_retry_connection"):
                # aiohttp's own switch for its silent resend (its TestClient
                # turns it off the same way).
                self._owned._retry_connection = False
                self._refuse_resend = False
        return self._owned

    async def close(self) -> None:
        """Stop every call under way and close the aiohttp session if owned.

        Calls waiting for a place or in flight end promptly with ``RuntimeError``;
        nothing is sent afterwards and no session is created again.
        """
        self._closed = True
        current = asyncio.current_task()
        for task in list(self._active):
            if task is not current and task not in self._cancelled_by_close:
                self._cancelled_by_close.add(task)
                task.cancel()
        if self._owned is not None:
            owned, self._owned = self._owned, None
            await owned.close()

    def redact(self, text: str) -> str:
        """Replace the credentials and key-like values in ``text``, each whole."""
        return self.redactor(text)

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(
                "this BioTorrentsClient belongs to the event loop it was first "
                "used in; create one client per event loop (each asyncio.run() "
                "or thread needs its own)"
            )

    async def request(
        self,
        action: str,
        params: Mapping[str, str] | None = None,
        *,
        method: Literal["GET", "POST"] = "GET",
        data: Mapping[str, str] | None = None,
        empty_ok: bool = False,
        retry: RetryPolicy | None = None,
        cache_ttl: float | None = None,
        fresh: bool = False,
    ) -> Any:
        """Send one API call, with pacing and retries; return the ``response`` value.

        See ``call``.
        """
        answer = await self.call(
            action,
            params,
            method=method,
            data=data,
            empty_ok=empty_ok,
            retry=retry,
            cache_ttl=cache_ttl,
            fresh=fresh,
        )
        return answer.value

    async def call(
        self,
        action: str,
        params: Mapping[str, str] | None = None,
        *,
        method: Literal["GET", "POST"] = "GET",
        data: Mapping[str, str] | None = None,
        empty_ok: bool = False,
        retry: RetryPolicy | None = None,
        cache_ttl: float | None = None,
        fresh: bool = False,
    ) -> Answer:
        """Send one API call, with pacing and retries.

        Identical concurrent reads (same action and parameters) share one HTTP
        request, unless a state-changing call of this client finished after the
        shared one started; calls that change state on the server never share.

        With a cache, a read-only action's answer is looked up first, before
        any place is asked for: a hit sends nothing and has ``attempts == 0``.
        Only successful answers are stored. A POST drops every entry of the
        account.

        Args:
            action: The ``action=`` value.
            params: Further query parameters (strings only).
            method: ``GET``, or ``POST`` for form data.
            data: Form fields for a POST.
            empty_ok: An empty 2xx body is success (``clear_user_notification``).
            retry: This call's retry policy instead of the client's.
            cache_ttl: Seconds to keep this read's answer instead of the cache's
                table (``0``: not cached); ``None`` follows the table.
            fresh: Read past the cache (the answer is still stored).

        Returns:
            The ``response`` value and the number of attempts it took.

        Raises:
            BioTorrentsError: A subclass for every failure; see the module docs.
            RuntimeError: The client is closed, or used from another event loop.
        """
        if asyncio.get_running_loop() is not self._loop:
            self._check_loop()
        if self._closed:
            raise RuntimeError(_CLOSED)
        task = asyncio.current_task()
        if task is not None:
            self._active.add(task)
        # Telemetry hook: this call's span and metrics, around everything below
        # (the close-to-RuntimeError conversion included); None while it is off,
        # and then nothing more is done for it.
        record = self._telemetry.call(action, method)
        if record is not None:
            record.__enter__()
        try:
            query = {"action": action, **params} if params else {"action": action}
            policy = retry or self._retry
            if (
                method != "GET"
                or action in _STATE_CHANGING
                # inbox&type=viewconv marks the conversation read.
                or query.get("type") == "viewconv"
            ):
                try:
                    answer, _ = await self._exchange(
                        None, method, query, data, action, empty_ok, policy
                    )
                finally:
                    # Later reads must not join a listing that began before this
                    # state change landed (read-your-writes).
                    self._generation += 1
                    if method == "POST" and self._cache is not None:
                        # What a POST changes is the server's business: drop every
                        # entry of the account, even if the call failed (it may
                        # have done its work before the answer was lost).
                        await self._cache.invalidate(self._namespace)
            else:
                key = tuple(sorted(query.items()))
                cache = self._cache
                ttl = 0.0
                if cache is not None:
                    ttl = (
                        ttl_for(cache.ttls, action, params or {})
                        if cache_ttl is None
                        else cache_ttl
                    )
                if cache is None or ttl <= 0:
                    answer, _ = await self._exchange(
                        key, method, query, data, action, empty_ok, policy
                    )
                else:
                    answer = await self._cached(
                        cache,
                        ttl,
                        fresh,
                        key,
                        params or {},
                        query,
                        data,
                        action,
                        empty_ok,
                        policy,
                    )
        except BaseException as exc:
            error = exc
            if (
                isinstance(exc, asyncio.CancelledError)
                and task is not None
                and task in self._cancelled_by_close
            ):
                self._cancelled_by_close.discard(task)
                if task.uncancel() == 0:
                    error = RuntimeError(_CLOSED)
            if record is not None:
                record.__exit__(type(error), error, error.__traceback__)
            if error is exc:
                raise
            raise error from None
        finally:
            self._active.discard(task)
        if record is not None:
            record.__exit__(None, None, None)
        return answer

    async def _cached(
        self,
        cache: ReadCache,
        ttl: float,
        fresh: bool,
        key: tuple[tuple[str, str], ...],
        params: Mapping[str, str],
        query: Mapping[str, str],
        data: Mapping[str, str] | None,
        action: str,
        empty_ok: bool,
        policy: RetryPolicy,
    ) -> Answer:
        """A cacheable read: the cache's answer, or the server's (then stored)."""
        # The authentication stop holds for cached answers too: a bot should
        # learn at once that its credentials were refused.
        if self._closed or self._auth_failure is not None:
            raise self._blocked(action)
        # Before the pacer: a hit costs no place and no wait.
        cache_key = CacheKey.of(self._namespace, action, params)
        found = await cache.lookup(cache_key, read=not (fresh or cache_bypassed()))
        self._telemetry.cache(action, found.text is not None)  # telemetry hook
        if found.text is not None:
            self.cache_hits += 1
            return Answer(json.loads(found.text), 0)
        self.cache_misses += 1
        # Only a success gets here: every failure shape (HTTP 200 "failure"
        # envelopes included) has raised.
        answer, sent = await self._exchange(
            key, "GET", query, data, action, empty_ok, policy
        )
        if sent:
            await cache.store(cache_key, found.stamp, json.dumps(answer.value), ttl)
        return answer

    async def discard(self) -> None:
        """Drop the account's cached answers: one of them was unusable.

        A success envelope whose ``response`` has the wrong shape raised
        ``ResponseError`` in the caller after it was stored; it must not be
        served again. Rare (a server bug), so the whole account goes.
        """
        if self._cache is not None:
            await self._cache.invalidate(self._namespace)

    async def _exchange(
        self,
        key: tuple[tuple[str, str], ...] | None,
        method: str,
        query: Mapping[str, str],
        data: Mapping[str, str] | None,
        action: str,
        empty_ok: bool,
        policy: RetryPolicy,
    ) -> tuple[Answer, bool]:
        """Send a call, retrying what is worth it, or share an identical read.

        Args:
            key: The read's identity for sharing, or ``None``: never shared.
            method: ``GET`` or ``POST``.
            query: The query parameters, ``action`` included.
            data: Form fields for a POST.
            action: The ``action=`` value (named in errors and telemetry).
            empty_ok: An empty 2xx body is success.
            policy: How often to send, and how long to wait in between.

        Returns:
            The answer, and whether this caller sent it (``False``: shared).
        """
        mine: _Shared | None = None
        if key is not None:
            while True:
                shared = self._in_flight.get(key)
                if shared is None or shared.generation != self._generation:
                    break
                # An identical read is under way: share its answer, and its slot.
                shared.join(current_priority.get())
                future = shared.joined()
                try:
                    answer = await asyncio.shield(future)
                except _OwnerCancelledError:
                    continue  # its caller gave up; send our own (or join the next)
                except BaseException:
                    if future.done() and not future.cancelled():
                        self.coalesced += 1
                        self._telemetry.coalesced(action)  # telemetry hook
                    raise
                self.coalesced += 1
                self._telemetry.coalesced(action)  # telemetry hook
                return answer, False
            # This caller sends; later identical callers wait on a future it
            # settles. No task is created, and no future unless someone joins,
            # so the common, uncontended case costs next to nothing.
            mine = self._in_flight[key] = _Shared(
                self._generation, current_priority.get()
            )
        try:
            attempt = 0
            while True:
                attempt += 1
                outcome = await self._attempt(
                    method, query, data, action, attempt, empty_ok, policy, mine
                )
                if outcome.error is None:
                    break
                await self._after_failure(
                    outcome, outcome.error, action, attempt, policy
                )
            # Answer(...) without NamedTuple's __new__, a Python call per answer.
            answer = tuple.__new__(Answer, (outcome.value, attempt))
        except asyncio.CancelledError:
            if mine is not None and mine.future is not None:
                mine.future.set_exception(_OwnerCancelledError())
            raise
        except BaseException as exc:
            if mine is not None and mine.future is not None:
                mine.future.set_exception(exc)
            raise
        else:
            if mine is not None and mine.future is not None:
                mine.future.set_result(answer)
            return answer, True
        finally:
            if mine is not None and key is not None:
                # Synchronous from the settling above: nobody joins in between.
                if self._in_flight.get(key) is mine:
                    del self._in_flight[key]
                if mine.future is not None and not mine.future.cancelled():
                    mine.future.exception()  # joiners raise it; never "unretrieved"

    async def _after_failure(
        self,
        outcome: Outcome,
        error: Exception,
        action: str,
        attempt: int,
        policy: RetryPolicy,
    ) -> None:
        """Wait before the next attempt, or raise ``error`` if there is none."""
        last = attempt == policy.attempts
        if outcome.rate_limited:
            self.rate_limit_pauses += 1
            pause = (
                self._penalty if outcome.retry_after is None else outcome.retry_after
            )
            self._telemetry.rate_limited(action, attempt, pause)  # telemetry hook
            # Callers are never held up silently for longer than the
            # backoff cap; a longer Retry-After is raised, not slept.
            longest = max(policy.backoff_max, self._penalty)
            await self.pacer.pause(min(pause, longest))
            if last or pause > longest:
                raise RateLimitError(
                    f"{action}: rate limit exceeded after {attempt} "
                    f"attempt(s); retry after {pause:.1f}s",
                    retry_after=pause,
                    action=action,
                ) from error
            logger.warning(
                "%s: server said rate limit exceeded; pausing all requests "
                "for %.1fs (attempt %d/%d)",
                action,
                pause,
                attempt,
                policy.attempts,
                extra=_telemetry.log_fields(action, attempt),
            )
            self.retries += 1
            self._telemetry.retry(action, attempt, pause, error)  # telemetry hook
            return
        if not outcome.retry or last:
            raise error
        delay = policy.backoff(attempt, self._random())
        logger.warning(
            "%s; retrying in %.2fs (attempt %d/%d)",
            error,
            delay,
            attempt,
            policy.attempts,
            extra=_telemetry.log_fields(action, attempt),
        )
        self.retries += 1
        self._telemetry.retry(action, attempt, delay, error)  # telemetry hook
        await self._sleep(delay)

    async def _send(
        self, method: str, query: Mapping[str, str], data: Mapping[str, str] | None
    ) -> tuple[int, str, str, bytes]:
        """Send one HTTP request; return status, Location, Retry-After and body."""
        session = self._owned or self._session()
        async with session.request(
            method,
            self._url,
            params=query,
            data=data,
            headers=self._request_headers,
            allow_redirects=False,
            timeout=self._timeout,
            ssl=self._ssl,
            # Per request: it remembers whether this request went out already
            # (an object costs less than keying one shared middleware by task).
            middlewares=(_SendOnce(),) if self._refuse_resend else (),
        ) as resp:
            status = resp.status
            headers = resp.headers
            cap = self._max_body
            length_header = headers.get(hdrs.CONTENT_LENGTH)
            # aiohttp's parser has checked it is digits (its content_length, inline).
            length = None if length_header is None else int(length_header)
            if length is not None and length > cap:
                raise _BodyTooLargeError(status)
            if (
                length is not None
                and hdrs.CONTENT_ENCODING not in headers
                and hdrs.TRANSFER_ENCODING not in headers
            ):
                # An identity body of a stated length: aiohttp reads exactly
                # that many bytes, so one read() stays within the cap.
                body = await resp.read()
            else:
                body = await _read_capped(resp.content, cap, status)
            return (
                status,
                headers.get(hdrs.LOCATION, ""),
                headers.get(hdrs.RETRY_AFTER, ""),
                body,
            )

    def _stopped(self) -> bool:
        """Whether nothing may be sent now (see ``_blocked``)."""
        return self._closed or self._auth_failure is not None

    def _blocked(self, action: str) -> Exception:
        """Why nothing may be sent now: closed, or credentials refused."""
        if self._closed:
            return RuntimeError(_CLOSED)
        return AuthenticationError(
            f"{action}: not sent: an earlier request failed authentication "
            f"({self._auth_failure}). The server bans IPs after repeated "
            "failures, so this client sends nothing more until you fix the "
            "credentials and call rearm(), or build a new client",
            action=action,
        )

    async def _attempt(
        self,
        method: str,
        query: Mapping[str, str],
        data: Mapping[str, str] | None,
        action: str,
        attempt: int,
        empty_ok: bool,
        policy: RetryPolicy,
        shared: _Shared | None,
    ) -> Outcome:
        if self._closed or self._auth_failure is not None:
            raise self._blocked(action)
        priority = current_priority.get() if shared is None else shared.priority
        slot = self.pacer.slot(priority)
        # Telemetry hooks, skipped while telemetry is off (the call has no record).
        record = _telemetry.current_call()
        if record is not None:
            slot = record.paced(slot, priority)  # the slot measures its wait
        if shared is not None:
            shared.slot = slot
        async with slot:
            if shared is not None:
                shared.slot = None
            # Waiting for the place may have taken a while: look again.
            if self._stopped():
                slot.unused()
                raise self._blocked(action)
            # The clock is read only for the debug log.
            debug = logger.isEnabledFor(logging.DEBUG)
            started = self._clock() if debug else 0.0
            self.requests_sent += 1
            try:
                if record is None:
                    status, location, retry_after, body = await self._send(
                        method, query, data
                    )
                else:
                    # Telemetry hook: http.client.request.duration of this attempt.
                    with record.http(method) as http:
                        status, location, retry_after, body = await self._send(
                            method, query, data
                        )
                        http.status = status
            except _BodyTooLargeError as exc:
                return body_too_large(action, exc.args[0], self._max_body)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if self._closed:
                    raise RuntimeError(_CLOSED) from None
                if debug:
                    logger.debug(
                        "%s %s -> %s after %.3fs (attempt %d/%d)",
                        method,
                        action,
                        type(exc).__name__,
                        self._clock() - started,
                        attempt,
                        policy.attempts,
                        extra=_telemetry.log_fields(action, attempt),
                    )
                _scrub(exc)
                error = TransportError(
                    f"{action}: {self.redactor(_describe_transport(exc))}",
                    action=action,
                )
                error.__cause__ = exc
                # A certificate the client does not trust will not change.
                return Outcome(
                    error=error, retry=not isinstance(exc, aiohttp.ClientSSLError)
                )
        if debug:
            logger.debug(
                "%s %s -> HTTP %d, %d bytes in %.3fs (attempt %d/%d)",
                method,
                action,
                status,
                len(body),
                self._clock() - started,
                attempt,
                policy.attempts,
                extra=_telemetry.log_fields(action, attempt),
            )
        outcome = interpret(
            action,
            status,
            location,
            retry_after,
            body,
            empty_ok=empty_ok,
            redact=self.redactor,
        )
        if isinstance(outcome.error, AuthenticationError):
            # Stop here: queued and later calls fail without sending.
            self._auth_failure = str(outcome.error)
        return outcome


async def _read_capped(content: aiohttp.StreamReader, cap: int, status: int) -> bytes:
    """Read a body of unknown decoded size, giving up past ``cap`` bytes.

    Content-Length counts the compressed bytes: a small gzip answer may inflate
    far beyond the cap, so the decoded chunks are counted as they come (aiohttp
    inflates them in pieces of bounded size).
    """
    chunks = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > cap:
            raise _BodyTooLargeError(status)
        chunks.append(chunk)
    return b"".join(chunks)


def _describe_transport(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"certificate of {exc.host} not trusted: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        # Its own str() shows the connection key, SSL context object included.
        reason = exc.os_error.strerror or str(exc.os_error) or "refused"
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _without_credentials(headers: Any) -> CIMultiDictProxy[str]:
    kept = CIMultiDict(
        (k, v) for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS
    )
    return CIMultiDictProxy(kept)


def _scrub(exc: BaseException) -> None:
    """Drop credential headers from aiohttp errors before they are chained.

    ``ClientResponseError`` keeps the request's headers (``Authorization``,
    ``Cookie``) in ``request_info`` and the answer's (``Set-Cookie``) in
    ``headers``; a user's traceback or ``repr`` of ``__cause__`` would show them.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        info = getattr(current, "request_info", None)
        if isinstance(info, aiohttp.RequestInfo):
            current.request_info = aiohttp.RequestInfo(  # type: ignore[attr-defined]
                info.url, info.method, _without_credentials(info.headers), info.real_url
            )
        headers = getattr(current, "headers", None)
        if isinstance(current, aiohttp.ClientResponseError) and headers is not None:
            current.headers = _without_credentials(headers)
        current = current.__cause__ or current.__context__

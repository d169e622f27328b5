"""The session wrapper: the one place that touches aiohttp.

It builds ``{base_url}/{api_path}?action=...``, sends the credentials, paces every
attempt, retries what is worth retrying, decodes the body whatever its
Content-Type, unwraps the ``{"status", "response"}`` envelope and maps every
failure shape of api-reference §3 and §18 to :mod:`biotorrents_async.exceptions`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, NamedTuple

import aiohttp
from yarl import URL

from ._pacing import LocalPacer, Pacer, current_priority
from ._policy import RateLimit, RetryPolicy
from .exceptions import (
    ApiError,
    AuthenticationError,
    BioTorrentsError,
    LegacyApiUnavailableError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    TransportError,
)

__all__ = ["ApiSession"]

logger = logging.getLogger("biotorrents_async")

USER_AGENT = "biotorrents-async/0.1 (+aiohttp)"

# api-reference §1.2 (R1 token check) and §1.3 / §3.4 (R2 and HEAD wording).
_AUTH_MESSAGES = frozenset(
    {
        "your ip address has been banned",
        "authorization type must be bearer",
        "invalid token format",
        "token user mismatch",
        "token revoked",
        "user disabled",
        "no authorization header present",
        "invalid authorization header format",
        "invalid token",
    }
)
_NOT_FOUND_MESSAGES = frozenset({"no such user", "not found"})
_RATE_LIMIT_TEXT = "rate limit exceeded"
_EXCERPT_LENGTH = 300
# Keys the HTML error pages embed (meta tags, RSS links): never show their values.
_SECRET_FIELDS = re.compile(
    r"(?i)(authkey|passkey|torrent_pass|auth|session|token)"
    r"(\s*=\s*[\"']?|[\"']?\s*(?:content=)[\"']?|\"\s*:\s*\")([A-Za-z0-9%._\-]+)"
)


class _OwnerCancelledError(Exception):
    """The caller that was sending a shared read was cancelled."""


# Actions that change state on the server (GET included): never coalesced.
_STATE_CHANGING = frozenset({"notifications", "clear_user_notification"})


def _coalescing_key(
    method: str, query: Mapping[str, str]
) -> tuple[tuple[str, str], ...] | None:
    action = query["action"]
    # inbox&type=viewconv marks the conversation read (api-reference §12).
    if method != "GET" or action in _STATE_CHANGING or query.get("type") == "viewconv":
        return None
    return tuple(sorted(query.items()))


class _Outcome(NamedTuple):
    """What one attempt came to: a value, or an error and whether to retry it."""

    value: Any = None
    error: BioTorrentsError | None = None
    retry: bool = False
    rate_limited: bool = False


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
        ssl: Passed to aiohttp per request: ``True`` verifies certificates, or an
            ``ssl.SSLContext`` of the caller's.
        pacer: Pacing state to use instead of a fresh :class:`LocalPacer`.
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
        ssl: ssl.SSLContext | bool = True,
        pacer: Pacer | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
    ) -> None:
        self._url = URL(base_url.rstrip("/") + "/" + api_path.lstrip("/"))
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        self._secrets = [s for s in (token, *(cookies or {}).values()) if s]
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        if cookies:
            # An explicit header: the server marks these cookies Secure, so a jar
            # would drop them on a plain-http (test) server.
            self._headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        self._borrowed = session
        self._owned: aiohttp.ClientSession | None = None
        self._closed = False
        self._retry = retry
        self._rate_limit = rate_limit
        self._penalty = (rate_limit or RateLimit.default()).window
        self._timeout = (
            timeout
            if isinstance(timeout, aiohttp.ClientTimeout)
            else aiohttp.ClientTimeout(total=timeout)
        )
        self._ssl = ssl
        self._sleep = sleep
        self._clock = clock
        self._random = random
        self.pacer: Pacer = pacer or LocalPacer(rate_limit, clock=clock, sleep=sleep)
        self._in_flight: dict[tuple[tuple[str, str], ...], asyncio.Future[Any]] = {}
        self.requests_sent = 0
        self.retries = 0
        self.rate_limit_pauses = 0
        self.coalesced = 0

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _session(self) -> aiohttp.ClientSession:
        if self._borrowed is not None:
            return self._borrowed
        if self._owned is None:
            # Created here, inside a running loop (aiohttp ≥ 3.10 requires one).
            # No cookie jar: logout answers try to delete the session cookies.
            self._owned = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._owned

    async def close(self) -> None:
        """Close the aiohttp session if this object created it."""
        self._closed = True
        if self._owned is not None:
            owned, self._owned = self._owned, None
            await owned.close()

    def redact(self, text: str) -> str:
        """Remove the credentials and key-like values from ``text``."""
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return _SECRET_FIELDS.sub(
            lambda m: m.group(1) + m.group(2) + "<redacted>", text
        )

    async def request(
        self,
        action: str,
        params: Mapping[str, str] | None = None,
        *,
        method: Literal["GET", "POST"] = "GET",
        data: Mapping[str, str] | None = None,
        empty_ok: bool = False,
    ) -> Any:
        """Send one API call, with pacing and retries; return the ``response`` value.

        Identical concurrent reads (same action and parameters) share one HTTP
        request; calls that change state on the server never do.

        Args:
            action: The ``action=`` value.
            params: Further query parameters (strings only).
            method: ``GET``, or ``POST`` for form data.
            data: Form fields for a POST.
            empty_ok: An empty 2xx body is success (``clear_user_notification``).

        Raises:
            BioTorrentsError: A subclass for every failure; see the module docs.
        """
        query = {"action": action, **(params or {})}
        key = _coalescing_key(method, query)
        if key is None:
            return await self._request(method, query, data, action, empty_ok)
        while True:
            shared = self._in_flight.get(key)
            if shared is None:
                break
            # An identical read is under way: share its answer, and its slot.
            self.coalesced += 1
            try:
                return await asyncio.shield(shared)
            except _OwnerCancelledError:
                continue  # its caller gave up; send our own (or join the next)
        # This caller sends; later identical callers wait on the future. No task
        # is created, so the common, uncontended case costs nothing extra.
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            result = await self._request(method, query, data, action, empty_ok)
        except asyncio.CancelledError:
            future.set_exception(_OwnerCancelledError())
            raise
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._in_flight[key]
            if not future.cancelled():
                future.exception()  # the joiners raise it; never "unretrieved"

    async def _request(
        self,
        method: str,
        query: Mapping[str, str],
        data: Mapping[str, str] | None,
        action: str,
        empty_ok: bool,
    ) -> Any:
        policy = self._retry
        for attempt in range(1, policy.attempts + 1):
            outcome = await self._attempt(
                method, query, data, action, attempt, empty_ok
            )
            if outcome.error is None:
                return outcome.value
            last = attempt == policy.attempts
            if outcome.rate_limited:
                self.rate_limit_pauses += 1
                self.pacer.pause(self._penalty)
                if last:
                    raise RateLimitError(
                        f"{action}: rate limit exceeded and {policy.attempts} "
                        "attempt(s) used",
                        retry_after=self._penalty,
                        action=action,
                    ) from outcome.error
                logger.warning(
                    "%s: server said rate limit exceeded; pausing all requests "
                    "for %.1fs (attempt %d/%d)",
                    action,
                    self._penalty,
                    attempt,
                    policy.attempts,
                )
                self.retries += 1
                continue
            if not outcome.retry or last:
                raise outcome.error
            delay = policy.backoff(attempt, self._random())
            logger.warning(
                "%s; retrying in %.2fs (attempt %d/%d)",
                outcome.error,
                delay,
                attempt,
                policy.attempts,
            )
            self.retries += 1
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self, method: str, query: Mapping[str, str], data: Mapping[str, str] | None
    ) -> tuple[int, str, bytes]:
        """Send one HTTP request; return status, ``Location`` and the whole body."""
        session = self._session()
        async with session.request(
            method,
            self._url,
            params=query,
            data=data,
            headers=self._headers,
            allow_redirects=False,
            timeout=self._timeout,
            ssl=self._ssl,
        ) as resp:
            body = await resp.read()
            return resp.status, resp.headers.get("Location", ""), body

    async def _attempt(
        self,
        method: str,
        query: Mapping[str, str],
        data: Mapping[str, str] | None,
        action: str,
        attempt: int,
        empty_ok: bool,
    ) -> _Outcome:
        if self._closed:
            raise RuntimeError("this BioTorrentsClient is closed")
        async with self.pacer.slot(current_priority.get()):
            started = self._clock()
            self.requests_sent += 1
            try:
                status, location, body = await self._send(method, query, data)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                logger.debug(
                    "%s %s -> %s after %.3fs (attempt %d/%d)",
                    method,
                    action,
                    type(exc).__name__,
                    self._clock() - started,
                    attempt,
                    self._retry.attempts,
                )
                error = TransportError(
                    f"{action}: {self.redact(_describe_transport(exc))}", action=action
                )
                error.__cause__ = exc
                # A certificate the client does not trust will not change.
                return _Outcome(
                    error=error, retry=not isinstance(exc, aiohttp.ClientSSLError)
                )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> HTTP %d, %d bytes in %.3fs (attempt %d/%d)",
                method,
                action,
                status,
                len(body),
                self._clock() - started,
                attempt,
                self._retry.attempts,
            )
        return self._interpret(action, status, location, body, empty_ok)

    def _interpret(
        self, action: str, status: int, location: str, body: bytes, empty_ok: bool
    ) -> _Outcome:
        if 300 <= status < 400:
            # enforce_login(): no or expired session → 302 to login.php + HTML.
            where = URL(location).path if location else "nowhere"
            return _Outcome(
                error=AuthenticationError(
                    f"{action}: not logged in (HTTP {status} redirect to {where})",
                    action=action,
                )
            )
        text = body.decode("utf-8", errors="replace")
        doc = _leading_json(text)
        if doc is _NOTHING:
            return self._not_json(action, status, text, empty_ok)
        if isinstance(doc, dict) and "errors" in doc and "status" not in doc:
            # HEAD-era JSON:API (§3.4): the action= endpoints are gone for good.
            return _Outcome(
                error=LegacyApiUnavailableError(
                    f"{action}: the server answers with the newer JSON:API "
                    f"(HTTP {status}); it no longer serves action= endpoints",
                    status=status,
                    body_excerpt=self._excerpt(text),
                    action=action,
                )
            )
        if not isinstance(doc, dict) or doc.get("status") not in ("success", "failure"):
            return _Outcome(
                error=ResponseError(
                    f"{action}: HTTP {status} with JSON that is not an API envelope",
                    status=status,
                    body_excerpt=self._excerpt(text),
                    action=action,
                ),
                retry=status >= 500,
            )
        if doc["status"] == "failure":
            return self._failure(action, status, doc)
        if status in (401, 403):
            return _Outcome(
                error=AuthenticationError(f"{action}: HTTP {status}", action=action)
            )
        if "response" not in doc:
            return _Outcome(
                error=ResponseError(
                    f"{action}: success without a response",
                    status=status,
                    body_excerpt=self._excerpt(text),
                    action=action,
                )
            )
        return _Outcome(value=doc["response"])

    def _failure(self, action: str, status: int, doc: dict[str, Any]) -> _Outcome:
        message = doc.get("error")
        message = message if isinstance(message, str) else None
        lowered = (message or "").strip().lower()
        if _RATE_LIMIT_TEXT in lowered:
            return _Outcome(
                error=ApiError(message, action=action), rate_limited=True, retry=True
            )
        if lowered in _AUTH_MESSAGES or status in (401, 403):
            return _Outcome(
                error=AuthenticationError(
                    f"{action}: {message or 'authentication failed'}", action=action
                )
            )
        if lowered in _NOT_FOUND_MESSAGES or lowered.startswith("no such "):
            return _Outcome(error=NotFoundError(message, action=action))
        return _Outcome(error=ApiError(message, action=action))

    def _not_json(
        self, action: str, status: int, text: str, empty_ok: bool
    ) -> _Outcome:
        if status in (401, 403):
            return _Outcome(
                error=AuthenticationError(f"{action}: HTTP {status}", action=action)
            )
        if status == 429:
            return _Outcome(
                error=ApiError("rate limit exceeded (HTTP 429)", action=action),
                rate_limited=True,
                retry=True,
            )
        if not text.strip() and empty_ok and 200 <= status < 300:
            return _Outcome(value=None)
        what = "an empty body" if not text.strip() else "a body that is not JSON"
        return _Outcome(
            error=ResponseError(
                f"{action}: HTTP {status} with {what}",
                status=status,
                body_excerpt=self._excerpt(text),
                action=action,
            ),
            # 5xx, error pages and truncated bodies can pass; a 4xx page will not.
            retry=status >= 500 or 200 <= status < 300,
        )

    def _excerpt(self, text: str) -> str:
        return self.redact(text[:_EXCERPT_LENGTH])


_NOTHING: Any = object()
_DECODER = json.JSONDecoder()


def _leading_json(text: str) -> Any:
    """Return the JSON value the body starts with, ignoring what follows.

    Failures of ``inbox``/``viewconv`` are ``{"status":"failure"}`` followed by an
    HTML page; R2-era servers glue a token-check failure (with an int ``response``)
    in front of the real answer, so that one is skipped when another value follows.
    """
    try:
        return _DECODER.decode(text)  # the common case: one clean JSON value
    except (ValueError, RecursionError):
        pass
    values: list[Any] = []
    pos = 0
    text = text.lstrip("\ufeff")
    while len(values) < 2:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text) or text[pos] not in "{[":
            break
        try:
            value, pos = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            break
        values.append(value)
    if not values:
        return _NOTHING
    first = values[0]
    if (
        len(values) == 2
        and isinstance(first, dict)
        and first.get("status") == "failure"
        and isinstance(first.get("response"), int)
    ):
        return values[1]
    return first


def _describe_transport(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

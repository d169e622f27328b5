"""The public client: configuration, lifecycle and the endpoint namespaces."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random as _random
import re
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp
from yarl import URL

from ._converter import default_converter, structure
from ._endpoints import Bookmarks, Inbox, Notifications, Users
from ._pacing import Pacer, background
from ._policy import RateLimit, RetryPolicy
from ._session import ApiSession
from .models import Index

__all__ = ["BioTorrentsClient"]

DEFAULT_BASE_URL = "https://biotorrents.de"
# Header-safe: no whitespace, separators or control characters.
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")
_COOKIE_RE = re.compile(r"[\x21-\x7e]+")


def _check_token(token: object) -> str | None:
    if token is None:
        return None
    if not isinstance(token, str):
        raise ValueError(f"token must be a str or None, got {type(token).__name__}")
    # The server splits the header on single spaces and wants exactly two parts.
    if not _TOKEN_RE.fullmatch(token):
        raise ValueError("token must be non-empty printable ASCII without spaces")
    return token


def _check_cookies(cookies: object) -> dict[str, str] | None:
    if cookies is None:
        return None
    if not isinstance(cookies, Mapping):
        raise ValueError("cookies must be a mapping of 'session' and 'userid'")
    missing = {"session", "userid"} - set(cookies)
    if missing:
        # The server counts a request as logged in only with both cookies.
        raise ValueError(f"cookies must include {sorted(missing)}")
    out: dict[str, str] = {}
    for key, value in cookies.items():
        text = str(value) if isinstance(value, int) else value
        if not isinstance(key, str) or not isinstance(text, str):
            raise ValueError("cookie names and values must be str")
        if not _COOKIE_RE.fullmatch(text) or ";" in text or "," in text:
            raise ValueError(f"cookie {key!r} has characters a Cookie header forbids")
        out[key] = text
    return out


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    # 0.0.0.0 and :: reach this very machine when connected to.
    return address.is_loopback or address.is_unspecified


def _check_base_url(base_url: object, allow_insecure_http: bool) -> str:
    if not isinstance(base_url, str):
        raise ValueError("base_url must be a str")
    url = URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"base_url must be an http(s) URL with a host, got {base_url!r}"
        )
    if url.query_string or url.fragment:
        raise ValueError("base_url must not carry a query or fragment")
    if url.scheme == "http" and not _is_loopback(url.host) and not allow_insecure_http:
        # The token and cookies would cross the network in clear text.
        raise ValueError(
            f"base_url {base_url!r} is plain http to a host that is not loopback; "
            "use https, or pass allow_insecure_http=True if you really mean it"
        )
    return base_url


class BioTorrentsClient:
    """Async client for the BioTorrents.de JSON API.

    Safe to share between many concurrent tasks: they share one connection pool,
    one pacing state and one retry policy.

    Args:
        token: Bearer token (``Authorization: Bearer <token>``), or ``None``.
        cookies: ``{"session": ..., "userid": ...}`` for full-user mode, or ``None``.
            At least one of ``token``/``cookies`` is required; both may be given.
        base_url: Scheme and host of the site.
        api_path: ``"api.php"``, or ``"ajax.php"`` for deployments that use it.
        session: An ``aiohttp.ClientSession`` to borrow; never closed or mutated.
        rate_limit: The server's rule (:meth:`RateLimit.default`), or ``None`` for
            no client-side pacing (Donor accounts). A server rejection still pauses
            the client for a window and retries.
        retry: The retry policy; :meth:`RetryPolicy.none` for a single attempt.
        timeout: Seconds per attempt, or an ``aiohttp.ClientTimeout``.
        ssl: ``True`` (verify certificates, the default) or an ``ssl.SSLContext``
            of your own (a private certificate authority, say).
        allow_insecure_http: Allow a plain-``http`` ``base_url`` on a host that is
            not loopback. Off by default: the token would travel in clear text.
        pacer: Pacing state to share with other clients of the same account in
            this event loop (see :class:`biotorrents_async.LocalPacer`).
        sleep: Coroutine used for every wait; for tests.
        clock: Monotonic clock in seconds; for tests.
        random: Jitter source returning floats in ``[0, 1)``; for tests.

    Raises:
        ValueError: Missing or malformed credentials, URL or timeout.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        cookies: Mapping[str, str] | None = None,
        base_url: str = DEFAULT_BASE_URL,
        api_path: str = "api.php",
        session: aiohttp.ClientSession | None = None,
        rate_limit: RateLimit | None = RateLimit.default(),  # noqa: B008
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008
        timeout: float | aiohttp.ClientTimeout = 30.0,
        ssl: _ssl.SSLContext | bool = True,
        allow_insecure_http: bool = False,
        pacer: Pacer | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        token = _check_token(token)
        checked_cookies = _check_cookies(cookies)
        if token is None and checked_cookies is None:
            raise ValueError("give a token, cookies, or both")
        self._base_url = _check_base_url(base_url, allow_insecure_http)
        if not isinstance(ssl, _ssl.SSLContext) and ssl is not True:
            # ssl=False would turn certificate checks off without saying so.
            raise ValueError("ssl must be True or an ssl.SSLContext")
        if not isinstance(api_path, str) or not api_path.strip("/"):
            raise ValueError("api_path must be a non-empty str such as 'api.php'")
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise ValueError("rate_limit must be a RateLimit or None")
        if not isinstance(retry, RetryPolicy):
            raise ValueError("retry must be a RetryPolicy")
        if not isinstance(timeout, aiohttp.ClientTimeout) and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not timeout > 0
        ):
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise ValueError("session must be an aiohttp.ClientSession")
        self._auth = "+".join(
            name for name, v in (("token", token), ("cookies", checked_cookies)) if v
        )
        self._session = ApiSession(
            token=token,
            cookies=checked_cookies,
            base_url=base_url,
            api_path=api_path,
            session=session,
            rate_limit=rate_limit,
            retry=retry,
            timeout=timeout,
            ssl=ssl,
            pacer=pacer,
            sleep=sleep,
            clock=clock,
            random=random,
        )
        self._converter = default_converter()
        self.users = Users(self._session, self._converter)
        """Profiles, user search, community stats, recents and forum posts."""
        self.inbox = Inbox(self._session, self._converter)
        """Your conversations."""
        self.bookmarks = Bookmarks(self._session, self._converter)
        """Your bookmarked torrent groups and artists."""
        self.notifications = Notifications(self._session, self._converter)
        """Torrent-filter notifications and site alerts."""

    @classmethod
    def from_env(cls, **kwargs: Any) -> Self:
        """Build a client from ``BIOTORRENTS_TOKEN`` (and ``BIOTORRENTS_BASE_URL``).

        Args:
            **kwargs: Any other constructor argument.

        Raises:
            ValueError: ``BIOTORRENTS_TOKEN`` is not set.
        """
        token = os.environ.get("BIOTORRENTS_TOKEN", "").strip()
        if not token:
            raise ValueError("BIOTORRENTS_TOKEN is not set")
        base_url = os.environ.get("BIOTORRENTS_BASE_URL", "").strip()
        if base_url:
            kwargs.setdefault("base_url", base_url)
        return cls(token, **kwargs)

    def __repr__(self) -> str:
        return f"<BioTorrentsClient base_url={self._base_url!r} auth={self._auth}>"

    @property
    def base_url(self) -> str:
        """The site this client talks to."""
        return self._base_url

    @property
    def stats(self) -> dict[str, int]:
        """Counters since creation.

        ``requests`` (HTTP attempts sent), ``retries``, ``rate_limit_pauses`` (the
        server said "rate limit exceeded"), ``throttle_waits`` (calls that waited
        for the client's own pacing) and ``coalesced`` (calls that shared another
        identical call's request).
        """
        s = self._session
        return {
            "requests": s.requests_sent,
            "retries": s.retries,
            "rate_limit_pauses": s.rate_limit_pauses,
            "throttle_waits": getattr(s.pacer, "waits", 0),
            "coalesced": s.coalesced,
        }

    @staticmethod
    def background() -> contextlib.AbstractContextManager[None]:
        """Mark the calls made inside a ``with`` block as background work.

        Background calls (and every page fetch of an ``iter_*``) wait while any
        direct call is waiting for the rate limit, so a user-facing call queued
        behind a long crawl waits at most for the next free slot::

            with client.background():
                await client.users.get(some_id)
        """
        return background()

    async def __aenter__(self) -> Self:
        if self._session.closed:
            raise RuntimeError("a closed BioTorrentsClient cannot be reopened")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the connection pool (a borrowed session is left open)."""
        await self._session.close()

    async def index(self) -> Index:
        """Fetch who you are (``action=index``).

        With token-only auth the server knows only your id: ``username``,
        ``authkey``, ``passkey`` and the class come back as ``None``.
        """
        raw = await self._session.request("index")
        result: Index = structure(self._converter, raw, Index, "index")
        return result

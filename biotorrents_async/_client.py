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
import warnings
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Literal, Self

import aiohttp
from yarl import URL

from ._cache import NEVER_CACHED, ReadCache, bypass, check_ttl
from ._converter import default_converter, structure
from ._endpoints import Bookmarks, Inbox, Notifications, Users, check_call
from ._hub import WatchHub
from ._pacing import Pacer, background
from ._policy import RateLimit, RetryPolicy
from ._redis import RedisPacer, account_key
from ._session import DEFAULT_MAX_BODY_SIZE, ApiSession
from ._stream import MAX_INTERVAL, check_seconds
from .exceptions import ArgumentError
from .models import Index

__all__ = ["BioTorrentsClient"]

DEFAULT_BASE_URL = "https://biotorrents.de"
# Header-safe: no whitespace, separators or control characters.
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")
# RFC 6265 cookie-octet: printable ASCII but '"', ',', ';' and '\\'.
_COOKIE_RE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+")


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
        if not _COOKIE_RE.fullmatch(text):
            raise ValueError(f"cookie {key!r} has characters a Cookie header forbids")
        out[key] = text
    return out


def parse_cookies(text: str) -> dict[str, str]:
    """Parse ``session=...; userid=...`` (``;`` or newlines between pairs).

    Raises:
        ValueError: A part is not ``name=value``, or a name is given twice.
    """
    cookies: dict[str, str] = {}
    parts = [p.strip() for p in text.replace("\n", ";").split(";")]
    for number, part in enumerate((p for p in parts if p), start=1):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            # Never echo the part: it may be the session value itself.
            raise ValueError(
                f"cookies must be 'name=value' pairs separated by ';' or new "
                f"lines; part {number} is not"
            )
        if name in cookies:
            raise ValueError(f"cookie {name!r} is given twice")
        cookies[name] = value
    return cookies


def parse_rule(text: str) -> RateLimit | None:
    """Parse ``REQUESTS/SECONDS`` (``2/6``) or ``none``."""
    if text.strip().lower() == "none":
        return None
    try:
        requests, per = text.split("/")
        return RateLimit(int(requests), float(per))
    except ValueError:
        raise ValueError(
            f"expected REQUESTS/SECONDS such as 2/6, or none; got {text!r}"
        ) from None


#: The environment variables shared by the library and the ``biotorrents``
#: command, and what each sets.
ENVIRONMENT = {
    "BIOTORRENTS_TOKEN": "the bearer token",
    "BIOTORRENTS_COOKIES": "cookies for full-user mode: 'session=...; userid=...'",
    "BIOTORRENTS_BASE_URL": "the site (default https://biotorrents.de)",
    "BIOTORRENTS_API_PATH": "api.php (default) or ajax.php",
    "BIOTORRENTS_RATE_LIMIT": "the server's rule, REQUESTS/SECONDS (default 2/6) "
    "or none",
    "BIOTORRENTS_REDIS_URL": "share one allowance with other processes through "
    "this Redis (needs the redis extra)",
    "BIOTORRENTS_STATE_DIR": "the command only: where it remembers the places "
    "its last requests hold (default ~/.local/state/biotorrents-async)",
}


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read the ``ENVIRONMENT`` variables into constructor arguments.

    Unset or empty variables are left out. ``BIOTORRENTS_REDIS_URL`` becomes a
    ``pacer``: a ``RedisPacer`` keyed by the account.

    Raises:
        ValueError: A variable is malformed.
    """
    env = os.environ if environ is None else environ

    def get(name: str) -> str:
        return env.get(name, "").strip()

    out: dict[str, Any] = {}
    if token := get("BIOTORRENTS_TOKEN"):
        out["token"] = token
    if cookies := get("BIOTORRENTS_COOKIES"):
        try:
            out["cookies"] = parse_cookies(cookies)
        except ValueError as exc:
            raise ValueError(f"BIOTORRENTS_COOKIES: {exc}") from None
    if base_url := get("BIOTORRENTS_BASE_URL"):
        out["base_url"] = base_url
    if api_path := get("BIOTORRENTS_API_PATH"):
        out["api_path"] = api_path
    if rule := get("BIOTORRENTS_RATE_LIMIT"):
        try:
            out["rate_limit"] = parse_rule(rule)
        except ValueError as exc:
            raise ValueError(f"BIOTORRENTS_RATE_LIMIT: {exc}") from None
    if redis_url := get("BIOTORRENTS_REDIS_URL"):
        out["redis_url"] = redis_url
    return out


# Only names and addresses that can never resolve elsewhere: "*.localhost" names
# go through DNS on ordinary machines.
_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    # 0.0.0.0 and :: reach this very machine when connected to.
    return address.is_loopback or address.is_unspecified


_API_SCRIPTS = ("api.php", "ajax.php")


def _check_base_url(
    base_url: object, api_path: object, allow_insecure_http: bool
) -> tuple[str, str]:
    if not isinstance(base_url, str):
        raise ValueError("base_url must be a str")
    if not isinstance(api_path, str) or not api_path.strip("/"):
        raise ValueError("api_path must be a non-empty str such as 'api.php'")
    try:
        url = URL(base_url)
        host = url.host
    except ValueError as exc:
        raise ValueError(f"base_url is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not host:
        raise ValueError(
            f"base_url must be an http(s) URL with a host, got {base_url!r}"
        )
    if url.raw_user is not None or url.raw_password is not None:
        # It would show in repr and logs, and be sent as Basic auth.
        raise ValueError("base_url must not carry a user name or password")
    if url.query_string or url.fragment:
        raise ValueError("base_url must not carry a query or fragment")
    if url.scheme == "http" and not _is_loopback(host) and not allow_insecure_http:
        # The token and cookies would cross the network in clear text.
        raise ValueError(
            f"base_url {base_url!r} is plain http to a host that is not loopback; "
            "use https, or allow it explicitly (allow_insecure_http=True, or "
            "--allow-insecure-http on the command line) if you really mean it"
        )
    script = url.path.rsplit("/", 1)[-1]
    if script in _API_SCRIPTS:
        # The whole endpoint URL, as `biotorrents fake-server` prints it.
        if api_path not in ("api.php", script):
            raise ValueError(
                f"base_url ends in {script!r} but api_path is {api_path!r}; give "
                "the site's root as base_url"
            )
        base_url, api_path = str(url.parent).rstrip("/"), script
    return base_url, api_path


class BioTorrentsClient:
    """Async client for the BioTorrents.de JSON API.

    Safe to share between many concurrent tasks of one event loop: they share one
    connection pool, one pacing state and one retry policy. A client belongs to
    the event loop it is first used in.

    Args:
        token: Bearer token (``Authorization: Bearer <token>``), or ``None``.
        cookies: ``{"session": ..., "userid": ...}`` for full-user mode, or ``None``.
            At least one of ``token``/``cookies`` is required; both may be given.
        base_url: Scheme and host of the site. A URL ending in ``/api.php`` or
            ``/ajax.php`` is accepted too and sets ``api_path``.
        api_path: ``"api.php"``, or ``"ajax.php"`` for deployments that use it.
        session: An ``aiohttp.ClientSession`` to borrow; never closed or mutated.
            Certificates are verified even if its connector says ``ssl=False``.
        rate_limit: The server's rule (``RateLimit.default``), or ``None`` for
            no client-side pacing (Donor accounts). A server rejection still pauses
            the client for a window and retries.
        retry: The retry policy; ``RetryPolicy.none`` for a single attempt.
        timeout: Seconds per attempt, or an ``aiohttp.ClientTimeout``.
        ssl: ``True`` (verify certificates, the default) or an ``ssl.SSLContext``
            of your own (a private certificate authority, say).
        allow_insecure_http: Allow a plain-``http`` ``base_url`` on a host that is
            not loopback. Off by default: the token would travel in clear text.
        pacer: Pacing state to share: a ``LocalPacer``
            for several clients of one account in this event loop, or a
            ``RedisPacer`` for several processes.
        max_body_size: The largest decoded answer to read, in bytes; a larger
            one is a ``ResponseError``.
        cache: Where answers of read-only actions are kept (``MemoryCache``,
            or ``RedisCache`` shared by processes), or ``None``. A hit is
            answered before the pacer: no place, no wait. See ``cache_bypass``.
        watch_interval: The interval of every watch stream of this client that
            does not give its own (``None``: half of the allowance, 6.1 s on
            BioTorrents). The streams poll together, at the smallest interval
            among those open.
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
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        cache: ReadCache | None = None,
        watch_interval: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        watch_interval = check_seconds(
            "watch_interval", watch_interval, low=0, high=MAX_INTERVAL, none_ok=True
        )
        token = _check_token(token)
        checked_cookies = _check_cookies(cookies)
        if token is None and checked_cookies is None:
            raise ValueError("give a token, cookies, or both")
        base_url, api_path = _check_base_url(base_url, api_path, allow_insecure_http)
        if not isinstance(ssl, _ssl.SSLContext) and ssl is not True:
            # ssl=False would turn certificate checks off without saying so.
            raise ValueError("ssl must be True or an ssl.SSLContext")
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
        if (
            isinstance(max_body_size, bool)
            or not isinstance(max_body_size, int)
            or max_body_size < 1
        ):
            raise ValueError(
                f"max_body_size must be an int >= 1, got {max_body_size!r}"
            )
        if cache is not None and not isinstance(cache, ReadCache):
            raise ValueError("cache must be a MemoryCache, a RedisCache or None")
        self._base_url = base_url
        # Names the account without a secret (places remembered by the CLI).
        self._account = account_key(token, checked_cookies)
        self._auth_mode = "+".join(
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
            max_body_size=max_body_size,
            cache=cache,
            # Whose answers: the account as RedisPacer keys it (no token, only
            # its truncated hash), how it authenticates (a token-only client
            # sees less) and which site.
            cache_namespace=f"{self._account}|{self._auth_mode}|{base_url}/{api_path}",
            sleep=sleep,
            clock=clock,
            random=random,
        )
        self._owned_pacer: RedisPacer | None = None
        self._converter = default_converter()
        self._hub = WatchHub(
            index=self.index,
            conversations=lambda n, unread: self.inbox.conversations(
                page=n, unread_first=unread
            ),
            torrents=lambda n: self.notifications.torrents(page=n),
            alerts=lambda: self.notifications.alerts(),
            closed=lambda: self._session.closed,
            pacer=lambda: self._session.pacer,
            interval=watch_interval,
        )
        self.users = Users(self._session, self._converter)
        """Profiles, user search, community stats, recents and forum posts."""
        self.inbox = Inbox(self._session, self._converter, self._hub)
        """Your conversations, and a watch stream of new ones."""
        self.bookmarks = Bookmarks(self._session, self._converter)
        """Your bookmarked torrent groups and artists."""
        self.notifications = Notifications(
            self._session,
            self._converter,
            self._hub,
            cookies=checked_cookies is not None,
        )
        """Torrent-filter notifications and site alerts, and their watch streams."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Self:
        """Build a client from the environment, like the ``biotorrents`` command.

        Reads ``BIOTORRENTS_TOKEN``, ``BIOTORRENTS_COOKIES`` (``session=...;
        userid=...``), ``BIOTORRENTS_BASE_URL``, ``BIOTORRENTS_API_PATH``,
        ``BIOTORRENTS_RATE_LIMIT`` (``2/6`` or ``none``) and
        ``BIOTORRENTS_REDIS_URL`` (one allowance shared through Redis, keyed by
        the account; needs ``pip install "biotorrents-async[redis]"``). Keyword
        arguments win over the environment.

        Args:
            environ: Where to read the variables; ``os.environ`` by default.
            **kwargs: Any other constructor argument.

        Raises:
            ValueError: Neither a token nor cookies are set, or a variable is
                malformed.
        """
        settings = settings_from_env(environ)
        redis_url = settings.pop("redis_url", None)
        settings.update(kwargs)
        token = settings.pop("token", None)
        if token is None and settings.get("cookies") is None:
            raise ValueError(
                "set BIOTORRENTS_TOKEN or BIOTORRENTS_COOKIES (or both) to build "
                "a client from the environment"
            )
        owned = None
        if redis_url and "pacer" not in settings:
            rule = settings.get("rate_limit", RateLimit.default())
            if rule is None:
                raise ValueError(
                    "BIOTORRENTS_REDIS_URL shares a rate rule; it cannot go with "
                    "BIOTORRENTS_RATE_LIMIT=none"
                )
            timeout = settings.get("timeout", 30.0)
            if isinstance(timeout, aiohttp.ClientTimeout):
                timeout = timeout.total or 30.0
            account = account_key(token, settings.get("cookies"))
            owned = settings["pacer"] = RedisPacer(
                redis_url,
                rate_limit=rule,
                key=account,
                # A token's hash would be the same key on every install.
                _salt_key=not account.startswith("user:"),
                # A place is leased for as long as a request can take.
                request_timeout=timeout,
            )
        client = cls(token, **settings)
        client._owned_pacer = owned
        return client

    def __repr__(self) -> str:
        return f"<BioTorrentsClient base_url={self._base_url!r} auth={self._auth_mode}>"

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        session = getattr(self, "_session", None)
        if session is not None and session.holds_connections:
            _warn(
                f"unclosed {self!r}: use 'async with' or 'await client.aclose()'",
                ResourceWarning,
                source=self,
            )

    @property
    def base_url(self) -> str:
        """The site this client talks to."""
        return self._base_url

    @property
    def auth_mode(self) -> str:
        """How the client authenticates: ``"token"``, ``"cookies"`` or both.

        ``"token+cookies"`` when both are given. Token-only clients cannot read
        torrent notifications and see only their id in ``index``.
        """
        return self._auth_mode

    @property
    def stats(self) -> dict[str, int]:
        """Counters since creation.

        ``requests`` (HTTP attempts sent), ``retries``, ``rate_limit_pauses`` (the
        server said "rate limit exceeded"), ``throttle_waits`` (calls that waited
        for the client's own pacing), ``coalesced`` (calls that shared another
        identical call's request), ``cache_hits`` (calls answered from the
        cache, without a request) and ``cache_misses`` (cacheable calls that
        went to the server, ``fresh`` ones included).
        """
        s = self._session
        return {
            "requests": s.requests_sent,
            "retries": s.retries,
            "rate_limit_pauses": s.rate_limit_pauses,
            "throttle_waits": getattr(s.pacer, "waits", 0),
            "coalesced": s.coalesced,
            "cache_hits": s.cache_hits,
            "cache_misses": s.cache_misses,
        }

    @staticmethod
    def background() -> contextlib.AbstractContextManager[None]:
        """Mark the calls made inside a ``with`` block as background work.

        Background calls (and every page fetch of an ``iter_*``, and the watch
        streams) wait while direct calls are waiting for the rate limit, but are
        never passed over more than three times in a row:

            with client.background():
                await client.users.get(some_id)
        """
        return background()

    @staticmethod
    def cache_bypass() -> contextlib.AbstractContextManager[None]:
        """Read past the cache for the calls made inside a ``with`` block.

        The typed methods' way to say ``fresh=True``: the answers come from the
        server and replace what the cache held:

            with client.cache_bypass():
                profile = await client.users.get(some_id)
        """
        return bypass()

    async def call(
        self,
        action: str,
        params: Mapping[str, str | int] | None = None,
        *,
        method: Literal["GET", "POST"] = "GET",
        data: Mapping[str, str | int] | None = None,
        fresh: bool = False,
        ttl: float | None = None,
    ) -> Any:
        """Call any ``action=`` and return its decoded ``response``, as plain JSON.

        For the actions this library does not wrap (``top10``, say). Prefer the
        typed methods where they exist: they validate, structure and document
        what comes back; here the shape of the answer is the server's, whatever
        it sends. The call goes through everything a typed one does: pacing and
        priorities, the authentication stop, redaction, error mapping
        (``{"status": "failure"}`` is ``ApiError``, and so on) and coalescing of
        identical concurrent reads. A GET is retried like any read; **a POST is
        never retried** (it may have done its work before the answer was lost),
        and drops every cached answer of the account.

        Args:
            action: The ``action=`` value: letters, digits and ``_``.
            params: Query parameters; values are ``str`` or ``int``.
            method: ``"GET"``, or ``"POST"`` to send ``data`` as form fields.
            data: Form fields of a POST; values are ``str`` or ``int``.
            fresh: Read past the cache (the answer still replaces the entry).
            ttl: Seconds to keep this read's answer in the client's cache. By
                default the cache's table decides, and actions it does not list
                are not cached; ``0`` turns caching off for this call.

        Returns:
            The ``response`` value of the envelope (``None`` for an empty answer
            to a POST).

        Raises:
            ValueError: A malformed action, parameter or ``ttl``, or a ``ttl`` for
                an action that is never cached or for a POST; before any request.
            ArgumentError: An argument of the wrong type.
            BioTorrentsError: The server's answer, mapped as for typed calls.
        """
        action, query, verb, form = check_call(action, params, method, data)
        if not isinstance(fresh, bool):
            raise ArgumentError("fresh must be a bool")
        cache_ttl = None
        if ttl is not None:
            cache_ttl = check_ttl("ttl", ttl)
            if cache_ttl and (verb == "POST" or action in NEVER_CACHED):
                raise ValueError(
                    f"{action!r} with method {verb} is never cached; drop ttl="
                )
        return await self._session.request(
            action,
            query,
            method=verb,
            data=form,
            # What a POST does is unknown here: never send it twice.
            retry=RetryPolicy.none() if verb == "POST" else None,
            empty_ok=verb == "POST",
            cache_ttl=cache_ttl,
            fresh=fresh,
        )

    def rearm(self) -> None:
        """Let the client send again after an authentication failure.

        After the server refuses the credentials once, every queued and later
        call fails at once with ``AuthenticationError``
        without sending, because the server bans IPs after repeated failures.
        Call this once the cause is fixed (a token re-issued on the site, say).
        """
        self._session.rearm()

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
        """Close the client: stop every call under way and release the pool.

        Calls still waiting for a place or in flight end promptly with
        ``RuntimeError``; nothing is sent afterwards. A borrowed session is left
        open.
        """
        await self._hub.close()
        await self._session.close()
        if self._owned_pacer is not None:
            await self._owned_pacer.aclose()

    async def index(self) -> Index:
        """Fetch who you are (``action=index``).

        With token-only auth the server knows only your id: ``username``,
        ``authkey``, ``passkey`` and the class come back as ``None``.
        """
        answer = await self._session.call("index")
        result: Index = structure(self._converter, answer.value, Index, "index")
        return result

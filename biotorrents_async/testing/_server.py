"""A fake BioTorrents.de: a real aiohttp.web server that behaves like the real one.

It reproduces the legacy ``action=`` API as api-reference.md describes it: the
envelopes and failure shapes, HTML-escaped text, numbers as strings, ``text/plain``
for ``user``, 302 to ``login.php`` without credentials, the skeletal token-only
user, page sizes and past-the-end pages, state changes on GET, the empty body of
``clear_user_notification`` and the fixed-window rate limiter (2 per 6 s by
default; Donor class and user ids 0/1 exempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import re
import ssl
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

import attrs
from aiohttp import web

from .._policy import RateLimit
from ._data import (
    CLASS_LEVELS,
    NOTIFY_CLASSES,
    SNATCHLIST_CLASSES,
    FakeConversation,
    FakeData,
    FakeGroup,
    FakeUser,
)
from ._php import (
    display_str,
    error_page,
    json_body,
    number_format,
    php_date,
    ratio_index,
    ratio_user,
    render,
)

__all__ = [
    "DEMO_COOKIES",
    "DEMO_TOKEN",
    "FakeBioTorrents",
    "Fault",
    "FaultPlan",
    "RecordedRequest",
]

# Public, made-up credentials of the fake's seeded accounts.
DEMO_TOKEN = "fake-token-kestrel-0002"  # noqa: S105
ADMIN_TOKEN = "fake-token-labadmin-0001"  # noqa: S105
DEMO_COOKIES = {"session": "fake-session-kestrel", "userid": "2"}
_ADMIN_SESSION = "fake-session-labadmin"
_INFO = {"source": "BioTorrents.de", "version": 1}
_JSON = "application/json; charset=utf-8"
_ALERT_ORDER = (
    "Global",
    "News",
    "Blog",
    "StaffPM",
    "Inbox",
    "Torrents",
    "Collages",
    "Quotes",
    "Subscriptions",
)
# Notice text and link of the site-post alerts (api-reference §15).
_POST_ALERTS = {
    "News": ("Announcement", "index.php#news"),
    "Blog": ("Blog", "blog.php#blog"),
}
_INTEGER = re.compile(r"\s*-?\d+")
_NUMERIC = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


class Fault(StrEnum):
    """Failures the fake can inject in front of a request."""

    HTTP_502 = "502"
    HTTP_503 = "503"
    DROP = "drop"  # the connection closes without an answer
    DELAY = "delay"  # the answer comes after FaultPlan.delay seconds
    TRUNCATE = "truncate"  # the body is cut in half
    HTML_ERROR = "html"  # a PHP error page (HTTP 500) instead of JSON
    RATE_LIMIT = "rate-limit"  # "rate limit exceeded", whatever the counter says


class FaultPlan:
    """Which requests fail, by schedule or by seeded probability."""

    def __init__(self) -> None:
        self._schedule: deque[Fault | None] = deque()
        self._rate = 0.0
        self._kinds: tuple[Fault, ...] = tuple(Fault)
        self._rng = random.Random(0)
        self.delay = 1.0
        self.injected: Counter[Fault] = Counter()

    def schedule(self, *faults: Fault | None) -> None:
        """Fail the next requests in this order (``None`` = no fault for that one)."""
        self._schedule.extend(faults)

    def randomly(
        self, rate: float, kinds: Iterable[Fault] = tuple(Fault), *, seed: int = 0
    ) -> None:
        """Fail each request with probability ``rate``, picking from ``kinds``."""
        self._rate = rate
        self._kinds = tuple(kinds)
        self._rng = random.Random(seed)

    def clear(self) -> None:
        """Stop injecting faults."""
        self._schedule.clear()
        self._rate = 0.0

    def next(self) -> Fault | None:
        """Return the fault for the request now arriving, if any."""
        fault = self._schedule.popleft() if self._schedule else None
        if fault is None and self._rate and self._rng.random() < self._rate:
            fault = self._rng.choice(self._kinds)
        if fault is not None:
            self.injected[fault] += 1
        return fault


@attrs.frozen
class RecordedRequest:
    """One request the fake received. Credentials are never recorded."""

    time: float
    method: str
    path: str
    action: str | None
    params: Mapping[str, str]
    auth: str  # "token", "cookie", "token+cookie" or "none"
    user_id: int | None
    outcome: str  # "ok", "failure", "rate-limited", "login-redirect", "fault:<kind>"
    peer_port: int | None = None  # the client's port: one per connection


@attrs.define
class _Viewer:
    user: FakeUser
    skeletal: bool  # token-only: the server loads nothing but the id (§1.2)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def class_name(self) -> str | None:
        return None if self.skeletal else self.user.class_name


@attrs.frozen
class _Call:
    """What an action handler may read of a request."""

    method: str
    query: Mapping[str, str]
    form: Mapping[str, str]


@attrs.frozen
class _Reply:
    status: int
    body: bytes
    content_type: str = _JSON
    headers: Mapping[str, str] = attrs.field(factory=dict)
    outcome: str = "ok"


class _Windows:
    """The memcached counter ``ajax_requests_<userid>`` (api-reference §2.1)."""

    def __init__(self, rule: RateLimit, jitter: float, rng: random.Random) -> None:
        self._rule = rule
        self._jitter = jitter
        self._rng = rng
        self._counters: dict[int, list[float]] = {}  # user → [expires_at, count]

    def allow(self, user_id: int, now: float) -> bool:
        entry = self._counters.get(user_id)
        if entry is None or now >= entry[0]:
            # The window opens with this request; expiry has coarse resolution.
            length = self._rule.per + self._rng.uniform(-self._jitter, self._jitter)
            entry = self._counters[user_id] = [now + length, 0]
        if entry[1] >= self._rule.requests:
            return False  # rejected requests are not counted
        entry[1] += 1
        return True


def _success(payload: Any, *, info: bool = True) -> _Reply:
    doc: dict[str, Any] = {"status": "success", "response": payload}
    if info:
        doc["info"] = _INFO
    return _Reply(200, json_body(doc))


def _failure(message: str | None = "bad parameters") -> _Reply:
    doc: dict[str, Any] = {"status": "failure"}
    if message is not None:
        doc["error"] = message
        doc["info"] = _INFO
    return _Reply(200, json_body(doc), outcome="failure")


def _page_number(raw: str | None) -> int | None:
    """``Format::page_limit``: missing → 1, ≤ 0 → 1, not an integer → error page."""
    if raw is None:
        return 1
    if not _INTEGER.fullmatch(raw):
        return None
    return max(1, int(raw))


def _like(pattern: str, value: str, *, anywhere: bool) -> bool:
    """MySQL ``LIKE`` (case-insensitive): ``%`` and ``_`` are wildcards."""
    regex = "".join(
        ".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern
    )
    if anywhere:
        regex = f".*{regex}.*"
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL) is not None


def _pages(total: int, per_page: int) -> int:
    return -(-total // per_page)


class FakeBioTorrents:
    """A running fake of the BioTorrents.de legacy JSON API on 127.0.0.1.

    Use it as an async context manager; ``url``, ``token`` and ``cookies`` then
    tell a client where and how to connect::

        async with FakeBioTorrents(rate_limit=RateLimit(2, 0.2)) as fake:
            async with BioTorrentsClient(fake.token, base_url=fake.url,
                                         rate_limit=RateLimit(2, 0.2)) as client:
                me = await client.index()

    Args:
        data: The data to serve; a seeded open-science set by default.
        rate_limit: The fixed-window rule, or ``None`` to never throttle.
        expiry_jitter: Seconds by which each window's length varies either way
            (memcached expiry has one-second resolution: ``1.0`` makes a 6-second
            window last 5 to 7 seconds).
        latency: ``(low, high)`` seconds added to every answer, uniformly.
        host: Interface to bind; loopback by default.
        port: Port to bind; ``0`` picks a free one.
        ssl_context: Serve HTTPS with this context.
        new_api: Answer like servers running the current code: JSON:API errors
            (HTTP 401/404) for every ``action=`` request.
        seed: Seed of the randomness (jitter, latency, random faults).

    Attributes:
        data: The served :class:`FakeData`; change it at any time.
        faults: The :class:`FaultPlan` of injected failures.
        requests: Every request received, in order (no secret values).
    """

    def __init__(
        self,
        data: FakeData | None = None,
        *,
        rate_limit: RateLimit | None = RateLimit.default(),  # noqa: B008
        expiry_jitter: float = 0.0,
        latency: tuple[float, float] = (0.0, 0.0),
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        new_api: bool = False,
        seed: int = 0,
    ) -> None:
        self.data = data if data is not None else FakeData.seeded(seed)
        self.rate_limit = rate_limit
        self.faults = FaultPlan()
        self.requests: list[RecordedRequest] = []
        self.new_api = new_api
        self._rng = random.Random(seed)
        self._latency = latency
        self._windows = (
            _Windows(rate_limit, expiry_jitter, self._rng) if rate_limit else None
        )
        self._tokens: dict[str, int] = {DEMO_TOKEN: 2, ADMIN_TOKEN: 1}
        self._revoked: set[str] = set()
        self._sessions: dict[str, int] = {DEMO_COOKIES["session"]: 2, _ADMIN_SESSION: 1}
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        self._actions: dict[str, Callable[[_Viewer, _Call], Awaitable[_Reply]]]
        self._actions = {
            "index": self._index,
            "user": self._user,
            "usersearch": self._usersearch,
            "community_stats": self._community_stats,
            "user_recents": self._user_recents,
            "userhistory": self._userhistory,
            "inbox": self._inbox,
            "bookmarks": self._bookmarks,
            "notifications": self._notifications,
            "get_user_notifications": self._get_user_notifications,
            "clear_user_notification": self._clear_user_notification,
        }

    # --- credentials ----------------------------------------------------------------

    @property
    def token(self) -> str:
        """Bearer token of the demo user (id 2, ``kestrel``, Power User)."""
        return DEMO_TOKEN

    @property
    def cookies(self) -> dict[str, str]:
        """``session``/``userid`` cookies of the demo user (full-user mode)."""
        return dict(DEMO_COOKIES)

    def add_token(self, user_id: int) -> str:
        """Issue a bearer token for ``user_id`` and return it."""
        token = f"fake-token-{user_id:04d}-{len(self._tokens):04d}"
        self._tokens[token] = user_id
        return token

    def add_session(self, user_id: int) -> dict[str, str]:
        """Open a cookie session for ``user_id`` and return its cookies."""
        session = f"fake-session-{user_id:04d}-{len(self._sessions):04d}"
        self._sessions[session] = user_id
        return {"session": session, "userid": str(user_id)}

    def revoke_token(self, token: str) -> None:
        """Make ``token`` fail with ``"token revoked"``."""
        self._tokens.pop(token, None)
        self._revoked.add(token)

    # --- lifecycle ------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """Build the aiohttp application (to run it under your own runner)."""
        app = web.Application()
        for path in ("/api.php", "/ajax.php", "/api"):
            app.router.add_route("*", path, self._handle)
        return app

    @property
    def url(self) -> str:
        """Base URL to give a client (``http://127.0.0.1:<port>``)."""
        if self._runner is None:
            raise RuntimeError("the fake server is not running; use `async with`")
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> Self:
        """Start serving on ``host:port`` (a free port when ``port`` is 0)."""
        # handler_cancellation: a client that hangs up cancels its handler, so a
        # stalled (DELAY) answer does not hold the server open at shutdown.
        runner = web.AppRunner(
            self.make_app(), access_log=None, handler_cancellation=True
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, ssl_context=self._ssl)
        await site.start()
        self._port = runner.addresses[0][1]
        self._runner = runner
        return self

    async def close(self) -> None:
        """Stop serving and close every connection."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- request handling -------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        form: dict[str, str] = {}
        if request.method == "POST":
            form = await self._read_form(request)
        action = request.query.get("action")
        auth = self._auth_kind(request)
        params = dict(request.query) | {f"form:{k}": v for k, v in form.items()}

        peer = (
            request.transport.get_extra_info("peername") if request.transport else None
        )
        peer_port = peer[1] if isinstance(peer, tuple) else None

        def record(outcome: str, user_id: int | None = None) -> None:
            self.requests.append(
                RecordedRequest(
                    now,
                    request.method,
                    request.path,
                    action,
                    params,
                    auth,
                    user_id,
                    outcome,
                    peer_port,
                )
            )

        if self.new_api:
            reply = self._new_api_reply(request)
            record(reply.outcome)
            return self._respond(reply)
        fault = self.faults.next()
        if fault in (Fault.HTTP_502, Fault.HTTP_503):
            record(f"fault:{fault}")
            status = int(fault)
            page = f"<html><body><h1>{status}</h1>nginx</body></html>"
            return web.Response(status=status, text=page, content_type="text/html")
        if fault is Fault.DROP:
            record(f"fault:{fault}")
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # aiohttp drops the handler quietly
        viewer, denied = self._authenticate(request)
        if denied is not None or viewer is None:
            reply = denied or _failure()
            record(reply.outcome)
            return self._respond(reply)
        if not action:
            record("failure", viewer.id)
            return self._respond(_failure())  # not rate-counted without an action
        if fault is Fault.RATE_LIMIT or not self._allow(viewer, now):
            record("rate-limited", viewer.id)
            return self._respond(_failure("rate limit exceeded"))
        if fault is Fault.DELAY:
            # Slow processing: the request was counted when it arrived. Recorded
            # now, since a client that gives up cancels this handler.
            record(f"fault:{fault}", viewer.id)
            await asyncio.sleep(self.faults.delay)
        handler = self._actions.get(action)
        call = _Call(request.method, request.query, form)
        reply = await handler(viewer, call) if handler else _failure()
        if fault is Fault.HTML_ERROR:
            reply = _Reply(
                500, error_page(500, "Internal Server Error").encode(), "text/html"
            )
        elif fault is Fault.TRUNCATE:
            reply = attrs.evolve(reply, body=reply.body[: max(1, len(reply.body) // 2)])
        if fault is not Fault.DELAY:
            record(f"fault:{fault}" if fault else reply.outcome, viewer.id)
        low, high = self._latency
        if high > 0:
            await asyncio.sleep(self._rng.uniform(low, high))
        return self._respond(reply)

    @staticmethod
    async def _read_form(request: web.Request) -> dict[str, str]:
        # With a JSON Content-Type the server replaces $_POST by the decoded body.
        if request.content_type == "application/json":
            with contextlib.suppress(ValueError):
                decoded = json.loads(await request.text())
                if isinstance(decoded, dict):
                    return {str(k): str(v) for k, v in decoded.items()}
            return {}
        posted = await request.post()
        return {k: v for k, v in posted.items() if isinstance(v, str)}

    @staticmethod
    def _respond(reply: _Reply) -> web.Response:
        response = web.Response(status=reply.status, body=reply.body)
        response.headers["Content-Type"] = reply.content_type
        for key, value in reply.headers.items():
            response.headers[key] = value
        return response

    @staticmethod
    def _auth_kind(request: web.Request) -> str:
        kinds = []
        if "Authorization" in request.headers:
            kinds.append("token")
        if request.cookies.get("session") or request.cookies.get("userid"):
            kinds.append("cookie")
        return "+".join(kinds) or "none"

    def _new_api_reply(self, request: web.Request) -> _Reply:
        header = request.headers.get("Authorization", "")
        parts = header.split(" ")
        if not header:
            status, message = 401, "no authorization header present"
        elif len(parts) != 2 or parts[0] != "Bearer":
            status, message = 401, "invalid authorization header format"
        elif parts[1] not in self._tokens:
            status, message = 401, "invalid token"
        else:
            status, message = 404, "not found"
        doc = {
            "errors": message,
            "jsonapi": {"version": "1.1"},
            "meta": {"id": f"{self._rng.getrandbits(52):013x}", "count": 1},
        }
        return _Reply(
            status, json_body(doc), "application/vnd.api+json", outcome="failure"
        )

    def _authenticate(
        self, request: web.Request
    ) -> tuple[_Viewer | None, _Reply | None]:
        token_user: FakeUser | None = None
        header = request.headers.get("Authorization")
        if header is not None:
            parts = header.split(" ")
            if len(parts) != 2 or parts[0] != "Bearer":
                return None, _failure("authorization type must be Bearer")
            user_id = self._tokens.get(parts[1])
            if user_id is None:
                message = (
                    "token revoked"
                    if parts[1] in self._revoked
                    else "invalid token format"
                )
                return None, _failure(message)
            token_user = self.data.users.get(user_id)
            if token_user is None:
                return None, _failure("token user mismatch")
            if not token_user.enabled:
                return None, _failure("user disabled")
        session = request.cookies.get("session")
        cookie_id = request.cookies.get("userid")
        if session and cookie_id:
            user_id = self._sessions.get(session)
            user = self.data.users.get(user_id) if user_id is not None else None
            if user is not None and str(user.id) == cookie_id:
                return _Viewer(user, skeletal=False), None
        if token_user is not None:
            return _Viewer(token_user, skeletal=True), None
        # enforce_login(): logout() → Location: login.php, then an HTML page.
        page = error_page(400, "Bad Request").encode()
        return None, _Reply(
            302,
            page,
            "text/html; charset=UTF-8",
            headers={"Location": "login.php"},
            outcome="login-redirect",
        )

    def _allow(self, viewer: _Viewer, now: float) -> bool:
        if self._windows is None or viewer.id in (0, 1):
            return True
        if viewer.user.class_name == "Donor":  # primary class only (§2.1)
            return True
        return self._windows.allow(viewer.id, now)

    def _html_failure(self, viewer: _Viewer, status: int = 200) -> _Reply:
        """``{"status":"failure"}`` then the error page (inbox, viewconv)."""
        page = error_page(400, "Bad Request", authkey=viewer.user.authkey)
        body = json_body({"status": "failure"}) + b"\n" + page.encode()
        return _Reply(status, body, outcome="failure")

    def _error_page(self, viewer: _Viewer, status: int, title: str) -> _Reply:
        page = error_page(status, title, authkey=viewer.user.authkey)
        return _Reply(
            status, page.encode(), "text/html; charset=UTF-8", outcome="failure"
        )

    # --- actions ------------------------------------------------------------------

    def _unread_count(self, user_id: int) -> int:
        return sum(
            1
            for conv in self.data.conversations.values()
            if user_id in conv.unread_for and self._received(conv, user_id)
        )

    def _unread_hits(self, user_id: int) -> int:
        return sum(
            1 for n in self.data.notifications if n.user_id == user_id and n.unread
        )

    def _can_notify(self, viewer: _Viewer) -> bool:
        return viewer.class_name in NOTIFY_CLASSES

    async def _index(self, viewer: _Viewer, call: _Call) -> _Reply:
        user = viewer.user
        latest_news = max((n for n, _ in self.data.news), default=-1)
        latest_blog = max((n for n, _ in self.data.blog), default=-1)
        skeletal = viewer.skeletal
        new_subs = sum(1 for k in user.alerts if k == "Subscriptions")
        return _success(
            {
                "username": None if skeletal else display_str(user.username),
                "id": user.id,
                "authkey": None if skeletal else user.authkey,
                "passkey": None if skeletal else user.passkey,
                "notifications": {
                    "messages": self._unread_count(user.id),
                    "notifications": (
                        self._unread_hits(user.id) if self._can_notify(viewer) else 0
                    ),
                    # Token-only: null < X is loosely true (§5).
                    "newAnnouncement": skeletal or user.last_read_news < latest_news,
                    "newBlog": skeletal or user.last_read_blog < latest_blog,
                    "newSubscriptions": new_subs == 1,
                },
                "userstats": {
                    "uploaded": 0 if skeletal else user.uploaded,
                    "downloaded": 0 if skeletal else user.downloaded,
                    "ratio": 0
                    if skeletal
                    else ratio_index(user.uploaded, user.downloaded),
                    "requiredratio": 0 if skeletal else _num(user.required_ratio),
                    "class": None if skeletal else user.class_name,
                },
            }
        )

    async def _user(self, viewer: _Viewer, call: _Call) -> _Reply:
        raw = call.query.get("id", "")
        if raw in ("", "0") or not _NUMERIC.fullmatch(raw):
            return _failure("bad id parameter")
        number = float(raw)
        user = self.data.users.get(int(number)) if number.is_integer() else None
        if user is None:
            return _failure("no such user")
        uploads = self._uploads(user.id)
        snatched = self.data.snatches.get(user.id, [])
        posts = sum(1 for p in self.data.posts.values() if p.author_id == user.id)
        body = {
            "username": display_str(user.username),
            "avatar": display_str(user.avatar),
            "isFriend": False,
            "profileText": render(user.profile_text) if user.profile_text else "",
            "stats": {
                "joinedDate": php_date(user.joined),
                "lastAccess": php_date(user.last_access),
                "uploaded": user.uploaded,
                "downloaded": user.downloaded,
                "ratio": ratio_user(user.uploaded, user.downloaded),
                "requiredRatio": _num(user.required_ratio),
            },
            "ranks": {
                "uploaded": min(99, user.uploaded // (1 << 28)),
                "downloaded": min(99, user.downloaded // (1 << 28)),
                "uploads": min(99, len(uploads) * 5),
                "requests": 0,
                "bounty": 0,
                "posts": min(99, posts * 2),
                "artists": 0,
                "overall": min(99, len(uploads) + posts),
            },
            "personal": {
                "class": user.class_name,
                "paranoia": 0,
                "paranoiaText": "Off",
                "donor": False,  # enum '1' compared strictly with int 1 (§6)
                "warned": user.warned,
                "enabled": user.enabled,
                "passkey": "",
            },
            "community": {
                "posts": posts,
                "torrentComments": 0,
                "artistComments": 0,
                "collageComments": 0,
                "requestComments": 0,
                "collagesStarted": 0,
                "collagesContrib": 0,
                "requestsFilled": 0,
                "bountyEarned": 0,
                "requestsVoted": 0,
                "bountySpent": 0,
                "uploaded": len(uploads),
                "groups": len({t.group_id for t in uploads}),
                "seeding": self._seeding(user),
                "leeching": user.leeching,
                "snatched": len(snatched),
                "invited": 0,
                "artistsAdded": 0,
            },
        }
        return _plain(_success(body))

    def _uploads(self, user_id: int) -> list[Any]:
        torrents = [
            t
            for g in self.data.groups.values()
            for t in g.torrents
            if t.uploader_id == user_id
        ]
        return sorted(torrents, key=lambda t: t.time, reverse=True)

    def _seeding(self, user: FakeUser) -> int:
        if user.seeding is not None:
            return user.seeding
        return len(self._uploads(user.id)) + len(self.data.snatches.get(user.id, []))

    async def _usersearch(self, viewer: _Viewer, call: _Call) -> _Reply:
        term = call.query.get("search", "").strip()
        if term in ("", "0"):
            return _failure("no search terms")
        page = _page_number(call.query.get("page"))
        if page is None:
            return self._error_page(viewer, 500, "Internal Server Error")
        hits = sorted(
            (
                u
                for u in self.data.users.values()
                if _like(term, u.username, anywhere=True)
            ),
            key=lambda u: u.username.lower(),
        )
        chunk = hits[(page - 1) * 30 : page * 30]
        return _success(
            {
                "currentPage": page,
                "pages": _pages(len(hits), 30),
                "results": [
                    {
                        "userId": u.id,
                        "username": display_str(u.username),
                        "donor": u.donor,
                        "warned": u.warned,
                        "enabled": u.enabled,
                        "class": u.class_name,
                        "avatar": display_str(u.avatar),
                    }
                    for u in chunk
                ],
            }
        )

    async def _community_stats(self, viewer: _Viewer, call: _Call) -> _Reply:
        raw = call.query.get("userid", "")
        if not _INTEGER.fullmatch(raw):
            return _failure("bad parameters")
        user = self.data.users.get(int(raw))
        if user is None:
            seeding = leeching = snatched = 0
        else:
            seeding, leeching = self._seeding(user), user.leeching
            snatched = (
                user.snatched
                if user.snatched is not None
                else len(self.data.snatches.get(user.id, []))
            )
        may_see = viewer.class_name in SNATCHLIST_CLASSES
        target_level = CLASS_LEVELS.get(user.class_name, 0) if user else 0
        viewer_level = CLASS_LEVELS.get(viewer.class_name or "", 0)
        perc: Any = False
        if snatched:
            perc = _num(100 * min(1, round(seeding / snatched, 2)))
        return _success(
            {
                # leeching is the int 0 when there is none, else a string (§8).
                "leeching": number_format(leeching) if leeching else 0,
                "seeding": number_format(seeding),
                "snatched": number_format(snatched),
                "usnatched": (
                    number_format(snatched)
                    if may_see and viewer_level >= target_level
                    else False
                ),
                "downloaded": number_format(snatched) if may_see else False,
                "udownloaded": number_format(snatched) if may_see else False,
                "seedingperc": perc,
            }
        )

    async def _user_recents(self, viewer: _Viewer, call: _Call) -> _Reply:
        user_id = _php_int(call.query.get("userid"))
        limit = _php_int(call.query.get("limit")) or 15
        if not user_id or limit > 50:
            return _failure("bad parameters")
        if limit < 0:
            return self._error_page(viewer, 500, "Internal Server Error")
        snatched = [self.data.torrent(t) for t in self.data.snatches.get(user_id, [])]
        uploads = self._uploads(user_id)
        return _success(
            {
                "snatches": self._recent_groups(
                    [t.group_id for t in reversed(snatched) if t], limit
                ),
                "uploads": self._recent_groups([t.group_id for t in uploads], limit),
            }
        )

    def _recent_groups(self, group_ids: list[int], limit: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[int] = set()
        for group_id in group_ids:
            group = self.data.groups.get(group_id)
            # Only category-1 groups with a picture are listed (§9).
            if group is None or group.id in seen or group.category_id != 1:
                continue
            if not group.picture:
                continue
            seen.add(group.id)
            artists = sorted(group.artists, key=lambda a: a.name)
            out.append(
                {
                    "ID": group.id,
                    "Name": display_str(group.name),
                    "WikiImage": display_str(group.picture),
                    # Artist names come raw from Artists::get_artists.
                    "artists": [[{"id": a.id, "name": a.name} for a in artists]],
                }
            )
            if len(out) >= limit:
                break
        return out

    async def _userhistory(self, viewer: _Viewer, call: _Call) -> _Reply:
        if call.query.get("type") != "posts":
            return _Reply(200, json_body({"status": "failure"}), outcome="failure")
        raw_user = call.query.get("userid")
        if raw_user is not None and not _INTEGER.fullmatch(raw_user):
            html = error_page(500, "Internal Server Error", authkey=viewer.user.authkey)
            return _Reply(200, b"Array" + html.encode(), "text/html", outcome="failure")
        page = _page_number(call.query.get("page"))
        if page is None:
            return self._error_page(viewer, 500, "Internal Server Error")
        target = int(raw_user) if raw_user is not None else viewer.id
        posts = sorted(
            (p for p in self.data.posts.values() if p.author_id == target),
            key=lambda p: (p.added, p.id),
            reverse=True,
        )
        grouped = raw_user is None and call.query.get("group", "1") not in ("", "0")
        if grouped:
            newest: dict[int, Any] = {}
            for post in posts:
                newest.setdefault(post.thread_id, post)
            posts = list(newest.values())
        chunk = posts[(page - 1) * 25 : page * 25]
        threads = []
        for post in chunk:
            thread = self.data.threads[post.thread_id]
            last_post = max(
                p.id for p in self.data.posts.values() if p.thread_id == thread.id
            )
            editor = self.data.users.get(post.edited_user_id)
            if raw_user is None:
                last_read, locked, sticky = 0, thread.locked, thread.sticky
            else:
                # With userid the SQL drops LastRead but PHP unpacks 12 columns.
                last_read, locked, sticky = int(thread.locked), thread.sticky, False
            threads.append(
                {
                    "postId": post.id,
                    "topicId": thread.id,
                    "threadTitle": display_str(thread.title),
                    "lastPostId": last_post,
                    "lastRead": last_read,
                    "locked": locked,
                    "sticky": sticky,
                    "addedTime": php_date(post.added),
                    "body": render(post.body),
                    "bbbody": display_str(post.body),
                    "editedUserId": post.edited_user_id,
                    "editedTime": php_date(post.edited_time),
                    "editedUsername": display_str(editor.username) if editor else "",
                }
            )
        return _success(
            {"currentPage": page, "pages": _pages(len(posts), 25), "threads": threads},
            info=False,
        )

    @staticmethod
    def _received(conv: FakeConversation, user_id: int) -> bool:
        return any(m.sender_id != user_id for m in conv.messages)

    async def _inbox(self, viewer: _Viewer, call: _Call) -> _Reply:
        kind = call.query.get("type", "inbox")
        if kind == "viewconv":
            return self._viewconv(viewer, call)
        if kind not in ("inbox", "sentbox"):
            return self._html_failure(viewer)
        page = _page_number(call.query.get("page"))
        if page is None:
            return self._error_page(viewer, 500, "Internal Server Error")
        me = viewer.id
        rows = []
        for conv in self.data.conversations.values():
            if me not in conv.participants:
                continue
            mine = [m for m in conv.messages if m.sender_id == me]
            theirs = [m for m in conv.messages if m.sender_id != me]
            shown = theirs if kind == "inbox" else mine
            if not shown:
                continue
            other_id = next((p for p in conv.participants if p != me), 0)
            rows.append((conv, other_id, max(m.sent for m in shown)))
        rows = self._inbox_search(rows, call.query)
        unread_first = call.query.get("sort") == "unread"
        rows.sort(
            key=lambda r: (
                r[0].sticky,
                unread_first and me in r[0].unread_for,
                r[2],
                r[0].id,
            ),
            reverse=True,
        )
        chunk = rows[(page - 1) * 25 : page * 25]
        messages = []
        for conv, other_id, date in chunk:
            other = self.data.users.get(other_id)
            messages.append(
                {
                    "convId": conv.id,
                    "subject": display_str(conv.subject),
                    "unread": me in conv.unread_for,
                    "sticky": conv.sticky,
                    "forwardedId": conv.forwarded_id,
                    "forwardedName": self._name(conv.forwarded_id),
                    "senderId": other_id if other else 0,
                    "username": display_str(other.username) if other else "",
                    "avatar": display_str(other.avatar) if other else "",
                    "donor": other.donor if other else False,
                    "warned": False,  # a datetime compared loosely with 1 (§11)
                    "enabled": other.enabled if other else True,
                    "date": php_date(date),
                }
            )
        return _success(
            {"currentPage": page, "pages": _pages(len(rows), 25), "messages": messages},
            info=False,
        )

    def _name(self, user_id: int) -> str:
        user = self.data.users.get(user_id) if user_id else None
        return display_str(user.username) if user else ""

    def _inbox_search(
        self,
        rows: list[tuple[FakeConversation, int, dt.datetime]],
        query: Mapping[str, str],
    ) -> list[tuple[FakeConversation, int, dt.datetime]]:
        term = query.get("search", "")
        how = query.get("searchtype")
        if not term or how not in ("user", "subject", "message"):
            return rows  # search without a valid searchtype is ignored (§11)
        if how == "message":
            return []  # bodies are stored encrypted: nothing ever matches
        if how == "user":
            return [
                r
                for r in rows
                if (u := self.data.users.get(r[1]))
                and _like(term, u.username, anywhere=False)
            ]
        words = term.lower().split()
        return [r for r in rows if all(w in r[0].subject.lower() for w in words)]

    def _viewconv(self, viewer: _Viewer, call: _Call) -> _Reply:
        raw = call.query.get("id", "")
        conv = (
            self.data.conversations.get(int(raw))
            if _INTEGER.fullmatch(raw) and int(raw) > 0
            else None
        )
        if conv is None or viewer.id not in conv.participants:
            return self._html_failure(viewer)
        conv.unread_for.discard(viewer.id)  # state change on GET (§12)
        subject = display_str(conv.subject)
        if conv.forwarded_id:
            subject += f" (Forwarded to {self._name(conv.forwarded_id)})"
        messages = []
        for n, msg in enumerate(conv.messages):
            sender = self.data.users.get(msg.sender_id)
            if msg.sender_id == 0:
                name: str | None = "System"
                avatar: str | None = ""
            elif sender is None:
                name = avatar = None
            else:
                name, avatar = display_str(sender.username), display_str(sender.avatar)
            messages.append(
                {
                    "messageId": conv.id * 100 + n,
                    "senderId": msg.sender_id,
                    "senderName": name,
                    "sentDate": php_date(msg.sent),
                    "avatar": avatar,
                    "bbBody": msg.body,  # decrypted source: raw, not escaped
                    "body": render(msg.body),
                }
            )
        return _success(
            {
                "convId": conv.id,
                "subject": subject,
                "sticky": conv.sticky,
                "messages": messages,
            },
            info=False,
        )

    async def _bookmarks(self, viewer: _Viewer, call: _Call) -> _Reply:
        form = call.form
        kind = form.get("type") or call.query.get("type", "torrents")
        if kind not in ("torrents", "artists"):
            return _failure("bad parameters")
        staff = viewer.class_name in SNATCHLIST_CLASSES
        target = viewer.id
        if "userid" in call.query:
            if not staff:
                if kind == "torrents":
                    return self._error_page(viewer, 403, "Forbidden")
                return _failure("bad parameters")
            target = _php_int(call.query.get("userid"))
        if kind == "artists":
            ids = self.data.artist_bookmarks.get(target, [])
            artists = [self.data.artists[i] for i in ids if i in self.data.artists]
            return _success(
                {
                    "artists": [
                        {"artistId": a.id, "artistName": display_str(a.name)}
                        for a in artists
                    ]
                },
                info=False,
            )
        groups = [
            self.data.groups[g]
            for g in self.data.bookmarks.get(target, [])
            if g in self.data.groups
        ]
        return _success({"bookmarks": [_bookmark(g) for g in groups]}, info=False)

    async def _notifications(self, viewer: _Viewer, call: _Call) -> _Reply:
        if not self._can_notify(viewer):
            return _failure("bad parameters")
        page = _page_number(call.query.get("page"))
        if page is None:
            return self._error_page(viewer, 500, "Internal Server Error")
        hits = [n for n in self.data.notifications if n.user_id == viewer.id]
        rows = []
        for hit in hits:
            torrent = self.data.torrent(hit.torrent_id)
            if torrent is not None:
                rows.append((hit, torrent, self.data.groups[torrent.group_id]))
        rows.sort(key=lambda r: (r[1].time, r[1].id), reverse=True)
        chunk = rows[(page - 1) * 50 : page * 50]
        results = []
        for hit, torrent, group in chunk:
            results.append(
                {
                    "torrentId": torrent.id,
                    "groupId": group.id,
                    "groupName": display_str(group.name),
                    "groupCategoryId": group.category_id,
                    "wikiImage": display_str(group.picture),
                    "torrentTags": " ".join(group.tags),
                    "size": torrent.size,
                    "fileCount": torrent.file_count,
                    "format": None,
                    "encoding": None,
                    "media": display_str(torrent.platform),
                    "scene": False,
                    "groupYear": group.year,
                    "remasterYear": 0,
                    "remasterTitle": None,
                    "snatched": torrent.snatched,
                    "seeders": torrent.seeders,
                    "leechers": torrent.leechers,
                    "notificationTime": php_date(torrent.time),
                    "hasLog": False,
                    "hasCue": False,
                    "logScore": 0,
                    "freeTorrent": torrent.free,
                    "logInDb": False,
                    "unread": hit.unread,
                }
            )
        num_new = sum(1 for r in results if r["unread"])
        if results:
            for hit in hits:  # marks *all* of them read, not only this page (§14)
                hit.unread = False
        return _success(
            {
                "currentPages": page,  # sic: the WhatCD typo
                "pages": _pages(len(rows), 50),
                "numNew": num_new,
                "results": results,
            }
        )

    async def _get_user_notifications(self, viewer: _Viewer, call: _Call) -> _Reply:
        user = viewer.user
        alerts: dict[str, dict[str, Any]] = {}
        posts = {
            "News": (max(self.data.news, default=None), user.last_read_news),
            "Blog": (max(self.data.blog, default=None), user.last_read_blog),
        }
        for kind in _ALERT_ORDER:
            entry: tuple[int, str, str, str] | None = None
            if kind in posts:
                newest, last_read = posts[kind]
                # Token-only viewers compare against a null "last read": true.
                if newest and (viewer.skeletal or last_read < newest[0]):
                    prefix, anchor = _POST_ALERTS[kind]
                    entry = (
                        newest[0],
                        f"{prefix}: {display_str(newest[1])}",
                        f"{anchor}{newest[0]}",
                        "information",
                    )
            elif kind == "Inbox":
                count = self._unread_count(user.id)
                if count:
                    text = "a new message" if count == 1 else f"{count} new messages"
                    entry = (0, f"You have {text}", "inbox.php", "confirmation")
            elif kind == "Torrents":
                count = self._unread_hits(user.id) if self._can_notify(viewer) else 0
                if count:
                    text = (
                        "a new torrent notification"
                        if count == 1
                        else f"{count} new torrent notifications"
                    )
                    entry = (
                        0,
                        f"You have {text}",
                        "torrents.php?action=notify",
                        "confirmation",
                    )
            elif kind in user.alerts:
                message, url = user.alerts[kind]
                importance = "information" if kind == "Global" else "confirmation"
                entry = (0, display_str(message), url, importance)
            if entry is not None:
                alerts[kind] = dict(
                    zip(("id", "message", "url", "importance"), entry, strict=True)
                )
        # json_die('success', []) for an empty payload: a JSON array (§3.1).
        return _success(alerts or [])

    async def _clear_user_notification(self, viewer: _Viewer, call: _Call) -> _Reply:
        form = call.form
        kind = form.get("type") if call.method == "POST" else None
        user = viewer.user
        if kind == "Inbox":
            for conv in self.data.conversations.values():
                conv.unread_for.discard(user.id)
        elif kind == "News":
            user.last_read_news = max((n for n, _ in self.data.news), default=0)
        elif kind == "Blog":
            user.last_read_blog = max((n for n, _ in self.data.blog), default=0)
        elif kind == "Torrents":
            for hit in self.data.notifications:
                if hit.user_id == user.id:
                    hit.unread = False
        elif kind is not None:
            user.alerts.pop(kind, None)
        # The handler prints nothing at all (§16).
        return _Reply(200, b"")


def _bookmark(group: FakeGroup) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": display_str(group.name),
        "year": group.year,
        "accession": display_str(group.accession),
        "tagList": " ".join(group.tags),
        "vanityHouse": False,
        "picture": display_str(group.picture),
        "torrents": [
            {
                "id": t.id,
                "groupId": t.group_id,
                "platform": display_str(t.platform),
                "fileCount": t.file_count,
                "freeTorrent": False,  # enum compared strictly with int (§13)
                "size": t.size,
                "leechers": t.leechers,
                "seeders": t.seeders,
                "snatched": t.snatched,
                "time": php_date(t.time),
                "hasFile": t.id,
            }
            for t in group.torrents
        ],
    }


def _plain(reply: _Reply) -> _Reply:
    # user.php switches the Content-Type to text/plain (§3.3) once the id checks
    # have passed; its failures keep application/json (recorded answers).
    return attrs.evolve(reply, content_type="text/plain; charset=utf-8")


def _num(value: float) -> float | int:
    # json_encode prints an integral float without ".0".
    return int(value) if float(value).is_integer() else value


def _php_int(raw: str | None) -> int:
    """PHP ``(int)`` cast of a query value: leading integer or 0."""
    match = re.match(r"\s*-?\d+", raw or "")
    return int(match.group(0)) if match else 0

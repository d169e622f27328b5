"""A fake BioTorrents.de: a real aiohttp.web server that behaves like the real one.

It reproduces the legacy ``action=`` API as docs/server-behaviour.md describes it: the
envelopes and failure shapes, HTML-escaped text, numbers as strings, ``text/plain``
for ``user``, 302 to ``login.php`` without credentials, the skeletal token-only
user, page sizes and past-the-end pages, state changes on GET, the empty body of
``clear_user_notification`` and the fixed-window rate limiter (2 per 6 s by
default; Donor class and user ids 0/1 exempt).

This module is the server itself: routing, authentication, the rate limiter, the
request log and the lifecycle. The answers of each action are in ``_actions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import attrs
from aiohttp import web

from .._policy import RateLimit
from ._actions import bookmarks, inbox, notifications, top10, users
from ._data import FakeData, FakeUser
from ._envelope import Call, Handler, Reply, Viewer, failure
from ._faults import Fault, FaultPlan
from ._php import error_page, json_body

__all__ = [
    "DEMO_COOKIES",
    "DEMO_TOKEN",
    "FakeBioTorrents",
    "RecordedRequest",
]


# Public, made-up credentials of the fake's seeded accounts.
DEMO_TOKEN = "fake-token-kestrel-0002"  # noqa: S105
ADMIN_TOKEN = "fake-token-labadmin-0001"  # noqa: S105
DEMO_COOKIES = {"session": "fake-session-kestrel", "userid": "2"}
_ADMIN_SESSION = "fake-session-labadmin"


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
    cookies: tuple[str, ...] = ()  # names of the cookies sent, never values


_ACTIONS: Mapping[str, Handler] = {
    "index": users.index,
    "user": users.user,
    "usersearch": users.usersearch,
    "community_stats": users.community_stats,
    "user_recents": users.user_recents,
    "userhistory": users.userhistory,
    "inbox": inbox.inbox,
    "bookmarks": bookmarks.bookmarks,
    "notifications": notifications.notifications,
    "get_user_notifications": notifications.get_user_notifications,
    "clear_user_notification": notifications.clear_user_notification,
    # Not wrapped by the client: for BioTorrentsClient.call.
    "top10": top10.top10,
}


class _Windows:
    """The memcached counter ``ajax_requests_<userid>`` of the real limiter.

    The first counted request sets the counter with a ``per``-second expiry;
    memcached drops it at the first tick of its whole-second clock at or after
    that, so a window lasts between ``per - 1`` and ``per`` seconds (scaled:
    ``per - resolution``), or a little longer when a tick runs late.
    """

    def __init__(
        self, rule: RateLimit, resolution: float, late_tick: float, rng: random.Random
    ) -> None:
        self._rule = rule
        self._resolution = resolution
        self._late_tick = late_tick
        self._rng = rng
        self._counters: dict[int, list[float]] = {}  # user → [expires_at, count]

    def allow(self, user_id: int, now: float) -> bool:
        entry = self._counters.get(user_id)
        if entry is None or now >= entry[0]:
            # The window opens with this request and closes on a clock tick.
            length = (
                self._rule.per
                - self._rng.uniform(0, self._resolution)
                + self._rng.uniform(0, self._late_tick)
            )
            entry = self._counters[user_id] = [now + length, 0]
        if entry[1] >= self._rule.requests:
            return False  # rejected requests are not counted
        entry[1] += 1
        return True


class FakeBioTorrents:
    """A running fake of the BioTorrents.de legacy JSON API on 127.0.0.1.

    Use it as an async context manager; ``url``, ``token`` and ``cookies`` then
    tell a client where and how to connect:

        async with FakeBioTorrents(rate_limit=RateLimit(2, 0.2)) as fake:
            async with BioTorrentsClient(fake.token, base_url=fake.url,
                                         rate_limit=RateLimit(2, 0.2)) as client:
                me = await client.index()

    Args:
        data: The data to serve; a seeded open-science set by default.
        rate_limit: The fixed-window rule, or ``None`` to never throttle.
        expiry_resolution: How much shorter than ``per`` a window may be; each
            window's length is drawn from ``[per - expiry_resolution, per]`` (the
            real server's memcached expires on a whole-second clock, so a 6-second
            window lasts 5 to 6 s). ``None`` means ``per / 6``; ``0`` gives exact
            windows.
        late_tick: Extra seconds a window may last when the expiry tick runs late
            on a loaded server, drawn per window from ``[0, late_tick]``. ``None``
            means ``per / 60`` (0.1 s for the 6-second rule).
        latency: ``(low, high)`` seconds added to every answer, uniformly.
        host: Interface to bind; loopback by default.
        port: Port to bind; ``0`` picks a free one.
        ssl_context: Serve HTTPS with this context.
        new_api: Answer like servers running the current code: JSON:API errors
            (HTTP 401/404) for every ``action=`` request.
        seed: Seed of the randomness (jitter, latency, random faults).

    Attributes:
        data: The served ``FakeData``; change it at any time.
        faults: The ``FaultPlan`` of injected failures.
        requests: Every request received, in order (no secret values).
        created: Every item made since the start (see the property).
    """

    def __init__(
        self,
        data: FakeData | None = None,
        *,
        rate_limit: RateLimit | None = RateLimit.default(),  # noqa: B008
        expiry_resolution: float | None = None,
        late_tick: float | None = None,
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
            _Windows(
                rate_limit,
                rate_limit.per / 6 if expiry_resolution is None else expiry_resolution,
                rate_limit.per / 60 if late_tick is None else late_tick,
                self._rng,
            )
            if rate_limit
            else None
        )
        self._tokens: dict[str, int] = {DEMO_TOKEN: 2, ADMIN_TOKEN: 1}
        self._revoked: set[str] = set()
        self._sessions: dict[str, int] = {DEMO_COOKIES["session"]: 2, _ADMIN_SESSION: 1}
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None

    @property
    def created(self) -> tuple[dict[str, Any], ...]:
        """Every item the fake made since it started, oldest first (a copy).

        One JSON-ready dict per ``add_*`` call on ``data`` (a test's, ``--live``'s
        or the example bot's): ``kind`` (``"conversation"``, ``"reply"``,
        ``"notification"``, ``"news"``, ``"blog"``, ``"quote"``,
        ``"subscription"``, ``"alert"``, ``"user"``, ``"group"``, ``"torrent"``,
        ``"post"``, ...), the ids that find it (``conv_id``, ``user_id``,
        ``torrent_id``, ...) and ``time``, the fake's clock in ISO 8601. The seed
        set is not in it. ``biotorrents fake-server --record FILE`` writes the
        same dicts as JSON lines.
        """
        return tuple(self.data.created)

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
                    tuple(sorted(request.cookies)),
                )
            )

        if self.new_api:
            reply = self._new_api_reply(request)
            record(reply.outcome)
            return self._respond(reply)
        fault = self.faults.next(action)
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
            reply = denied or failure()
            record(reply.outcome)
            return self._respond(reply)
        if not action:
            record("failure", viewer.id)
            return self._respond(failure())  # not rate-counted without an action
        if fault is Fault.RATE_LIMIT or not self._allow(viewer, now):
            record("rate-limited", viewer.id)
            return self._respond(failure("rate limit exceeded"))
        if fault is Fault.DELAY:
            # Slow processing: the request was counted when it arrived. Recorded
            # now, since a client that gives up cancels this handler.
            record(f"fault:{fault}", viewer.id)
            await asyncio.sleep(self.faults.delay)
        handler = _ACTIONS.get(action)
        call = Call(request.method, request.query, form)
        reply = await handler(self.data, viewer, call) if handler else failure()
        if fault is Fault.HTML_ERROR:
            reply = Reply(
                500, error_page(500, "Internal Server Error").encode(), "text/html"
            )
        elif fault is Fault.TRUNCATE:
            reply = attrs.evolve(reply, body=reply.body[: max(1, len(reply.body) // 2)])
        if fault is not Fault.DELAY:
            record(f"fault:{fault}" if fault else reply.outcome, viewer.id)
        if fault is Fault.DROP_AFTER:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
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
    def _respond(reply: Reply) -> web.Response:
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

    def _new_api_reply(self, request: web.Request) -> Reply:
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
        return Reply(
            status, json_body(doc), "application/vnd.api+json", outcome="failure"
        )

    def _authenticate(self, request: web.Request) -> tuple[Viewer | None, Reply | None]:
        token_user: FakeUser | None = None
        header = request.headers.get("Authorization")
        if header is not None:
            parts = header.split(" ")
            if len(parts) != 2 or parts[0] != "Bearer":
                return None, failure("authorization type must be Bearer")
            user_id = self._tokens.get(parts[1])
            if user_id is None:
                message = (
                    "token revoked"
                    if parts[1] in self._revoked
                    else "invalid token format"
                )
                return None, failure(message)
            token_user = self.data.users.get(user_id)
            if token_user is None:
                return None, failure("token user mismatch")
            if not token_user.enabled:
                return None, failure("user disabled")
        session = request.cookies.get("session")
        cookie_id = request.cookies.get("userid")
        if session and cookie_id:
            user_id = self._sessions.get(session)
            user = self.data.users.get(user_id) if user_id is not None else None
            if user is not None and str(user.id) == cookie_id:
                return Viewer(user, skeletal=False), None
        if token_user is not None:
            return Viewer(token_user, skeletal=True), None
        # enforce_login(): logout() → Location: login.php, then an HTML page.
        page = error_page(400, "Bad Request").encode()
        return None, Reply(
            302,
            page,
            "text/html; charset=UTF-8",
            # logout() also sets a redirect cookie and deletes the session ones.
            headers={
                "Location": "login.php",
                "Set-Cookie": "redirect=%2Fapi.php; Max-Age=1800; path=/",
            },
            outcome="login-redirect",
        )

    def _allow(self, viewer: Viewer, now: float) -> bool:
        if self._windows is None or viewer.id in (0, 1):
            return True
        if viewer.user.class_name == "Donor":  # primary class only
            return True
        return self._windows.allow(viewer.id, now)

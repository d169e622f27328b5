"""What every action handler of the fake shares: its inputs, its replies, paging."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias

import attrs

from ._data import FakeData, FakeUser
from ._php import error_page, json_body

__all__ = [
    "INTEGER",
    "Call",
    "Handler",
    "Reply",
    "Viewer",
    "error_page_reply",
    "failure",
    "page_count",
    "page_number",
    "php_int",
    "sql_like",
    "success",
]

_INFO = {"source": "BioTorrents.de", "version": 1}
_JSON = "application/json; charset=utf-8"
INTEGER = re.compile(r"\s*-?\d+")


@attrs.define
class Viewer:
    """The authenticated user a request acts as."""

    user: FakeUser
    skeletal: bool  # token-only: the server loads nothing but the id

    @property
    def id(self) -> int:
        """The user's id."""
        return self.user.id

    @property
    def class_name(self) -> str | None:
        """The user's class, unknown (``None``) to a token-only viewer."""
        return None if self.skeletal else self.user.class_name


@attrs.frozen
class Call:
    """What an action handler may read of a request."""

    method: str
    query: Mapping[str, str]
    form: Mapping[str, str]


@attrs.frozen
class Reply:
    """An answer to send: status, body, content type, headers, logged outcome."""

    status: int
    body: bytes
    content_type: str = _JSON
    headers: Mapping[str, str] = attrs.field(factory=dict)
    outcome: str = "ok"


# The data is passed on each call, not bound once: FakeBioTorrents.data may be
# replaced at any time.
Handler: TypeAlias = Callable[[FakeData, Viewer, Call], Awaitable[Reply]]


def success(payload: Any, *, info: bool = True) -> Reply:
    """The ``{"status": "success", "response": ...}`` envelope."""
    doc: dict[str, Any] = {"status": "success", "response": payload}
    if info:
        doc["info"] = _INFO
    return Reply(200, json_body(doc))


def failure(message: str | None = "bad parameters") -> Reply:
    """The ``{"status": "failure", "error": ...}`` envelope (bare without message)."""
    doc: dict[str, Any] = {"status": "failure"}
    if message is not None:
        doc["error"] = message
        doc["info"] = _INFO
    return Reply(200, json_body(doc), outcome="failure")


def error_page_reply(viewer: Viewer, status: int, title: str) -> Reply:
    """The site's HTML error page, as the viewer would get it."""
    page = error_page(status, title, authkey=viewer.user.authkey)
    return Reply(status, page.encode(), "text/html; charset=UTF-8", outcome="failure")


def page_number(raw: str | None) -> int | None:
    """``Format::page_limit``: missing → 1, ≤ 0 → 1, not an integer → error page."""
    if raw is None:
        return 1
    if not INTEGER.fullmatch(raw):
        return None
    return max(1, int(raw))


def page_count(total: int, per_page: int) -> int:
    """How many pages of ``per_page`` hold ``total`` items."""
    return -(-total // per_page)


def sql_like(pattern: str, value: str, *, anywhere: bool) -> bool:
    """MySQL ``LIKE`` (case-insensitive): ``%`` and ``_`` are wildcards."""
    regex = "".join(
        ".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern
    )
    if anywhere:
        regex = f".*{regex}.*"
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL) is not None


def php_int(raw: str | None) -> int:
    """PHP ``(int)`` cast of a query value: leading integer or 0."""
    match = re.match(r"\s*-?\d+", raw or "")
    return int(match.group(0)) if match else 0

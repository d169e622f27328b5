"""What the server said: one HTTP answer in, a value or an error out. No I/O.

``interpret`` turns an answer (action, status, ``Location``, ``Retry-After``, body
bytes) into an ``Outcome``: the ``response`` value, or a ``BioTorrentsError``
with whether sending again may help and, for "rate limit exceeded", how long to
wait first. Every failure shape of the server (docs/server-behaviour.md,
api-reference §18) is mapped here, in one place, to ``exceptions``; the session
sends, waits, retries and shares, and asks this module what each answer means.
Nothing here touches aiohttp or the event loop, so tests feed it bytes directly.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import json
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from yarl import URL

from ._redact import Redactor
from .exceptions import (
    ApiError,
    AuthenticationError,
    BioTorrentsError,
    LegacyApiUnavailableError,
    NotFoundError,
    ResponseError,
)

__all__ = [
    "AUTH_MESSAGES",
    "NOT_FOUND_MESSAGES",
    "Outcome",
    "body_too_large",
    "interpret",
    "leading_json",
    "retry_after_seconds",
]

#: The bearer-token failure messages (R1 token check) and the 2022 wording.
AUTH_MESSAGES = frozenset(
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
#: Failure messages meaning "that does not exist" (any ``"no such ..."`` too).
NOT_FOUND_MESSAGES = frozenset({"no such user", "not found"})
_RATE_LIMIT_TEXT = "rate limit exceeded"
#: The longest ``Retry-After`` obeyed, in seconds.
MAX_RETRY_AFTER = 86400.0
# A 200 answer that is the site's login form: the session ended without a redirect
# (a proxy or a newer front page).
_LOGIN_PAGE = re.compile(r"(?i)<title>\s*log\s*in\b|<input[^>]*type=[\"']?password")
_WHITESPACE = re.compile(r"[ \t\r\n]*")
_NO_SECRETS = Redactor()


class Outcome(NamedTuple):
    """What one answer comes to.

    One of three: a success (``error is None``, the ``response`` value in
    ``value``); an error that sending again may cure (``retry``), which for
    "rate limit exceeded" is ``rate_limited`` with the server's ``retry_after``
    in seconds if it sent one; or an error to raise as it is.
    """

    value: Any = None
    error: BioTorrentsError | None = None
    retry: bool = False
    rate_limited: bool = False
    retry_after: float | None = None


def interpret(
    action: str,
    status: int,
    location: str,
    retry_after: str,
    body: bytes,
    *,
    empty_ok: bool = False,
    redact: Redactor = _NO_SECRETS,
    now: _dt.datetime | None = None,
) -> Outcome:
    """Say what one answer of the server means.

    Args:
        action: The ``action=`` value the answer is for (named in messages).
        status: The HTTP status.
        location: The ``Location`` header, or ``""``.
        retry_after: The ``Retry-After`` header, or ``""``.
        body: The whole (decoded) body.
        empty_ok: An empty 2xx body is success (``clear_user_notification``
            prints nothing).
        redact: Replaces the account's secrets in messages and excerpts.
        now: The current time, for a ``Retry-After`` date (default: now).

    Returns:
        The value, or the error and whether to send again.
    """
    if 300 <= status < 400:
        return _redirect(action, status, location)
    text = body.decode("utf-8", errors="replace")
    try:
        # The common case, one clean JSON value, in one C call (json.loads
        # takes three Python ones to get there); anything else, leading_json.
        doc, end = _SCAN(text, 0)
    except (StopIteration, ValueError, RecursionError):
        doc = leading_json(text)
    else:
        if end != len(text):
            doc = leading_json(text)  # HTML or a second value after the JSON
    if status == 429:
        # Whatever the body: a proxy's or a newer server's "too many requests".
        return Outcome(
            error=ApiError("rate limit exceeded (HTTP 429)", action=action),
            rate_limited=True,
            retry=True,
            retry_after=retry_after_seconds(retry_after, now=now),
        )
    if doc is NOTHING:
        return _not_json(action, status, text, empty_ok, redact)
    if isinstance(doc, dict) and "errors" in doc and "status" not in doc:
        # Servers on the current code answer JSON:API (HTTP 401 or 404):
        # action= is gone for good.
        return Outcome(
            error=LegacyApiUnavailableError(
                f"{action}: the server answers with the newer JSON:API "
                f"(HTTP {status}); it no longer serves action= endpoints",
                status=status,
                body_excerpt=redact.excerpt(text),
                action=action,
            )
        )
    if status in (401, 403):
        return Outcome(
            error=AuthenticationError(f"{action}: HTTP {status}", action=action)
        )
    if not isinstance(doc, dict) or doc.get("status") not in ("success", "failure"):
        return Outcome(
            error=ResponseError(
                f"{action}: HTTP {status} with JSON that is not an API envelope",
                status=status,
                body_excerpt=redact.excerpt(text),
                action=action,
            ),
            retry=status >= 500,
        )
    if doc["status"] == "failure":
        return _failure(action, status, doc, redact)
    if "response" not in doc:
        return Outcome(
            error=ResponseError(
                f"{action}: success without a response",
                status=status,
                body_excerpt=redact.excerpt(text),
                action=action,
            )
        )
    # Outcome(value=...) without NamedTuple's __new__, a Python call per answer.
    return tuple.__new__(Outcome, (doc["response"], None, False, False, None))


def body_too_large(action: str, status: int, cap: int) -> Outcome:
    """The outcome of an answer whose body is larger than ``cap`` bytes (final)."""
    return Outcome(
        error=ResponseError(
            f"{action}: HTTP {status} with a body larger than "
            f"{cap} bytes (max_body_size); not read further",
            status=status,
            action=action,
        )
    )


def _redirect(action: str, status: int, location: str) -> Outcome:
    try:
        target = URL(location) if location else None
    except ValueError:
        return Outcome(
            error=ResponseError(
                f"{action}: HTTP {status} with a malformed Location header; "
                "redirects are not followed",
                status=status,
                action=action,
            )
        )
    if target is not None and target.path.rsplit("/", 1)[-1] == "login.php":
        # enforce_login(): no or expired session → 302 to login.php + HTML.
        return Outcome(
            error=AuthenticationError(
                f"{action}: not logged in (HTTP {status} redirect to login.php)",
                action=action,
            )
        )
    where = "nowhere"
    if target is not None:
        # Scheme, host and path only: never a query or userinfo.
        host = f"{target.scheme}://{target.raw_host}" if target.raw_host else ""
        where = host + target.raw_path
    return Outcome(
        error=ResponseError(
            f"{action}: HTTP {status} redirect to {where}; redirects are not "
            "followed (has the site moved? check base_url)",
            status=status,
            action=action,
        )
    )


def _failure(
    action: str, status: int, doc: dict[str, Any], redact: Redactor
) -> Outcome:
    message = doc.get("error")
    # A server that echoes the request would put the credentials here.
    message = redact(message) if isinstance(message, str) else None
    lowered = (message or "").strip().lower()
    if _RATE_LIMIT_TEXT in lowered:
        # The legacy limiter's answer: HTTP 200, no Retry-After (§2.1).
        return Outcome(
            error=ApiError(message, action=action), rate_limited=True, retry=True
        )
    if lowered in AUTH_MESSAGES:
        return Outcome(
            error=AuthenticationError(
                f"{action}: {message or 'authentication failed'}", action=action
            )
        )
    if lowered in NOT_FOUND_MESSAGES or lowered.startswith("no such "):
        return Outcome(error=NotFoundError(message, action=action))
    # A failure envelope on a 5xx is a server in trouble, not a verdict.
    return Outcome(error=ApiError(message, action=action), retry=status >= 500)


def _not_json(
    action: str, status: int, text: str, empty_ok: bool, redact: Redactor
) -> Outcome:
    if status in (401, 403) or (status == 200 and _LOGIN_PAGE.search(text)):
        return Outcome(
            error=AuthenticationError(
                f"{action}: not logged in (HTTP {status}"
                + (")" if status != 200 else ", the login page)"),
                action=action,
            )
        )
    blank = not text.strip(" \t\r\n")
    if blank and empty_ok and 200 <= status < 300:
        return Outcome(value=None)
    what = "an empty body" if blank else "a body that is not JSON"
    return Outcome(
        error=ResponseError(
            f"{action}: HTTP {status} with {what}",
            status=status,
            body_excerpt=redact.excerpt(text),
            action=action,
        ),
        # 5xx, error pages and truncated bodies can pass; a 4xx page will not.
        retry=status >= 500 or 200 <= status < 300,
    )


#: What ``leading_json`` returns for a body that does not start with JSON.
NOTHING: Any = object()
_DECODER = json.JSONDecoder()
# The decoder's C scanner: (text, index) → (value, end); typeshed does not know it.
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def leading_json(text: str) -> Any:
    """Return the JSON value the body starts with, ignoring what follows.

    Failures of ``inbox``/``viewconv`` are ``{"status":"failure"}`` followed by an
    HTML page; R2-era servers glue a token-check failure (with an int ``response``)
    in front of the real answer, so that one is skipped when another value follows.

    Returns:
        The value, or ``NOTHING`` when the text does not start with JSON.
    """
    try:
        return _DECODER.decode(text)  # the common case: one clean JSON value
    except (ValueError, RecursionError):
        pass
    values: list[Any] = []
    pos = 0
    text = text.lstrip("\ufeff")
    while len(values) < 2:
        pos = _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= len(text) or text[pos] not in "{[":
            break
        try:
            value, pos = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            break
        values.append(value)
    if not values:
        return NOTHING
    first = values[0]
    if (
        len(values) == 2
        and isinstance(first, dict)
        and first.get("status") == "failure"
        and isinstance(first.get("response"), int)
    ):
        return values[1]
    return first


def retry_after_seconds(value: str, *, now: _dt.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), or ``None``.

    At most a day: a longer (or absurd, "9" * 400) value would pause the whole
    client beyond any use, or overflow. A date in the past means now.
    """
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return min(
            float(value[:12]) if len(value) <= 12 else MAX_RETRY_AFTER,
            MAX_RETRY_AFTER,
        )
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    seconds = (when - (now or _dt.datetime.now(_dt.UTC))).total_seconds()
    return min(max(0.0, seconds), MAX_RETRY_AFTER)

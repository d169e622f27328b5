"""Exceptions raised by biotorrents_async.

Everything the library raises on purpose derives from ``BioTorrentsError``:

    BioTorrentsError
    ├── AuthenticationError        302 to login.php, HTTP 401/403, token failure message
    │   └── CookiesRequiredError   the call needs the cookie session (token-only client)
    ├── RateLimitError             "rate limit exceeded" and the retry budget is spent
    ├── ApiError                   {"status": "failure"}
    │   └── NotFoundError          "no such user" and the like
    ├── TransportError             connection errors and timeouts, after retries
    ├── ResponseError              a body that is not the JSON the action promises
    │   └── LegacyApiUnavailableError   the server speaks the newer JSON:API instead
    ├── StoreError                 a store behind a stream or a pacer failed
    │   ├── CursorFileError        a FileStore's file (no folder, read-only, not SQLite)
    │   └── SharedStoreError       Redis (RedisPacer, RedisStore) failed or is gone
    ├── LeaseLostError             another replica took over a stream's cursor
    └── StreamFailedError          every poll of a stream failed for ``fail_after``

Invalid arguments raise ``ValueError`` before anything is sent; an argument of the
wrong type raises ``ArgumentError``, which is both a ``ValueError`` and a
``TypeError``.

No message, ``repr`` or attribute of these exceptions carries the token or the
cookie values: the session wrapper never puts them there and redacts body excerpts.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "ArgumentError",
    "AuthenticationError",
    "BioTorrentsError",
    "CookiesRequiredError",
    "CursorFileError",
    "LeaseLostError",
    "LegacyApiUnavailableError",
    "NotFoundError",
    "SharedStoreError",
    "RateLimitError",
    "ResponseError",
    "StoreError",
    "StreamFailedError",
    "TransportError",
]


class BioTorrentsError(Exception):
    """Base class of every error the library raises on purpose.

    Attributes:
        action: The API action that failed (``"inbox"``, ``"user"``, …), or ``None``.
    """

    def __init__(self, message: str, *, action: str | None = None) -> None:
        super().__init__(message)
        self.action = action


class AuthenticationError(BioTorrentsError):
    """The server did not accept the credentials.

    Raised for a redirect to ``login.php`` (no or expired session), HTTP 401/403 and
    the bearer-token failure messages (``"invalid token format"``, ``"token
    revoked"``, …). Never retried: the server bans IPs after repeated failures.
    """


class CookiesRequiredError(AuthenticationError):
    """The call needs the cookie session and the client has only a token.

    The server loads a skeletal user for token-only requests and refuses
    ``notifications`` with ``"bad parameters"``; the client says so at once,
    without sending. Give ``cookies={"session": ..., "userid": ...}`` too.
    """


class RateLimitError(BioTorrentsError):
    """The server said "rate limit exceeded" and the retry budget ran out.

    Attributes:
        retry_after: Seconds to wait before the server's window has surely reset.
    """

    def __init__(
        self, message: str, *, retry_after: float, action: str | None = None
    ) -> None:
        super().__init__(message, action=action)
        self.retry_after = retry_after


class ApiError(BioTorrentsError):
    """The server answered ``{"status": "failure"}``.

    Attributes:
        message: The server's ``error`` text, or ``None`` when it sent none.
    """

    def __init__(self, message: str | None, *, action: str | None = None) -> None:
        text = message if message is not None else "request failed (no error message)"
        super().__init__(f"{action or 'request'}: {text}", action=action)
        self.message = message


class NotFoundError(ApiError):
    """The thing asked for does not exist (``"no such user"`` and the like)."""


class TransportError(BioTorrentsError):
    """The request did not complete: connection error or timeout, after retries.

    The aiohttp (or asyncio) error is chained as ``__cause__``.
    """


class ResponseError(BioTorrentsError):
    """The body is not the JSON the action promises.

    An HTML error page, an empty or truncated body, or JSON of the wrong shape.

    Attributes:
        status: The HTTP status of the answer.
        body_excerpt: The start of the body, with secrets redacted.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body_excerpt: str = "",
        action: str | None = None,
    ) -> None:
        super().__init__(message, action=action)
        self.status = status
        self.body_excerpt = body_excerpt


class LegacyApiUnavailableError(ResponseError):
    """The server answers with the newer JSON:API shape (``{"errors": ...}``).

    Servers running the current BioGazelle code no longer serve the ``action=``
    endpoints at all; retrying will not help.
    """


class StoreError(BioTorrentsError):
    """A store behind a watch stream or a pacer failed; the cause is chained.

    A watch stream checks its store when it starts, before any item: a store
    that cannot be used ends the stream then, and a save that fails later ends
    it with the item in hand not handed over (it comes again after a restart).
    """


class CursorFileError(StoreError):
    """A ``FileStore``'s file cannot be used: the message names the path and cause.

    A folder that does not exist, a read-only file or folder, a file that is not
    SQLite, a disk that is full.
    """


class LeaseLostError(BioTorrentsError):
    """Another replica took over this watch stream's cursor; the stream ends.

    The stream was paused past its lease (a long GC pause, ``SIGSTOP``, a
    stalled disk, a VM pause) and another process or host took the cursor over:
    its saves are refused (the fence number moved on), so it yields nothing more.
    """


class StreamFailedError(BioTorrentsError):
    """Every poll of a watch stream failed for ``fail_after`` seconds.

    The last error is chained as ``__cause__``: a wrong ``base_url`` (a closed
    port, a server that answers 404 to everything) or a long outage.
    """


class SharedStoreError(StoreError):
    """Redis, behind a ``RedisPacer`` or ``RedisStore``, failed or is unreachable.

    For pacing, nothing was sent: without the shared state the client cannot know
    whether the account's allowance is free. The Redis error is chained as
    ``__cause__``.
    """


class ArgumentError(ValueError, TypeError):
    """An argument of the wrong type: both a ``ValueError`` and a ``TypeError``."""

"""Fuzzing the decode/structure path: broken bodies end as BioTorrentsError or models.

Every action's real path runs (retry loop, envelope, error mapping, converter,
endpoint structuring); only the socket is replaced, so hundreds of examples per
action take seconds. The same bodies also go straight into the pure
``_answers.interpret``, without a client or an event loop. ``-m slow`` runs a
profile with many more.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import COOKIES, SECRETS, TOKEN, load_exchange

from biotorrents_async import (
    Alert,
    ApiError,
    AuthenticationError,
    BioTorrentsClient,
    BioTorrentsError,
    BookmarkedArtist,
    BookmarkedGroup,
    CommunityStats,
    Conversation,
    ConversationSummary,
    ForumPost,
    Index,
    LegacyApiUnavailableError,
    NotFoundError,
    Page,
    RateLimitError,
    ResponseError,
    RetryPolicy,
    TorrentNotification,
    User,
    UserRecents,
    UserSearchResult,
)
from biotorrents_async._answers import interpret
from biotorrents_async._redact import Redactor

Call = Callable[[BioTorrentsClient], Awaitable[Any]]

# action → (call, recorded success to mutate, what a success must be)
ACTIONS: dict[str, tuple[Call, str, Any]] = {
    "index": (lambda c: c.index(), "index.txt", Index),
    "user": (lambda c: c.users.get(1), "user_id1.txt", User),
    "usersearch": (
        lambda c: c.users.search("lab"),
        "usersearch.txt",
        Page[UserSearchResult],
    ),
    "community_stats": (
        lambda c: c.users.community_stats(2),
        "community_stats.txt",
        CommunityStats,
    ),
    "user_recents": (lambda c: c.users.recents(2), "user_recents.txt", UserRecents),
    "userhistory": (
        lambda c: c.users.posts(2),
        "userhistory_posts.txt",
        Page[ForumPost],
    ),
    "inbox": (
        lambda c: c.inbox.conversations(),
        "inbox.txt",
        Page[ConversationSummary],
    ),
    "viewconv": (
        lambda c: c.inbox.conversation(2),
        "inbox_viewconv.txt",
        Conversation,
    ),
    "bookmarks_torrents": (
        lambda c: c.bookmarks.torrents(),
        "bookmarks_torrents.txt",
        tuple[BookmarkedGroup, ...],
    ),
    "bookmarks_artists": (
        lambda c: c.bookmarks.artists(),
        "bookmarks_artists.txt",
        tuple[BookmarkedArtist, ...],
    ),
    "notifications": (
        lambda c: c.notifications.torrents(),
        "notifications_poweruser.txt",
        Page[TorrentNotification],
    ),
    "get_user_notifications": (
        lambda c: c.notifications.alerts(),
        "get_user_notifications.txt",
        dict[str, Alert],
    ),
    "clear_user_notification": (
        lambda c: c.notifications.clear("Inbox"),
        "clear_user_notification_post_only.txt",
        type(None),
    ),
}

# --- strategies -----------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**18, max_value=10**40),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "0",
            "1,204",
            "false",
            "true",
            "hidden",
            "2021-01-18 12:00:00",
            "0000-00-00 00:00:00",
            "&amp;",
            "&#26085;",
            "1.0e+17",
            "-1",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += paths(item, (*prefix, index))
    return out


def mutate(doc: Any, path: tuple[Any, ...], op: str, new: Any) -> Any:
    if not path:
        return new if op != "delete" else {}
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "add" and isinstance(parent, dict):
        parent[f"extra_{last}"] = new
    elif op == "wrap":
        parent[last] = [parent[last]]
    else:
        parent[last] = new
    return doc


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    doc = json.loads(base)
    for _ in range(draw(st.integers(1, 3))):
        candidates = paths(doc)
        path = draw(st.sampled_from(candidates))
        op = draw(st.sampled_from(["replace", "delete", "add", "null", "wrap"]))
        value = None if op == "null" else draw(json_values)
        doc = mutate(doc, path, "replace" if op == "null" else op, value)
    return json.dumps(doc).encode()


def bodies(base: bytes) -> st.SearchStrategy[tuple[int, bytes]]:
    html = b"\n<!doctype html><html><body>Fatal error</body></html>"
    shapes = st.one_of(
        mutated(base) if base else st.just(b""),
        json_values.map(lambda v: json.dumps(v).encode()),
        json_values.map(
            lambda v: json.dumps({"status": "success", "response": v}).encode()
        ),
        st.binary(max_size=64),
        st.just(base + html),
        st.integers(1, max(1, len(base))).map(lambda n: base[:n]),
        st.integers(50, 3000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(50, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    )
    statuses = st.sampled_from([200, 200, 200, 500, 404, 403, 302, 429, 503])
    return st.tuples(statuses, shapes)


# --- the check ------------------------------------------------------------------


def assert_typed(value: Any, tp: Any, where: str = "$") -> None:
    """Assert that `value` really is of the declared type, recursively."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        assert_typed(value, typing.get_args(tp)[0], where)
    elif origin in (types.UnionType, typing.Union):
        errors = []
        for arm in typing.get_args(tp):
            try:
                assert_typed(value, arm, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: {value!r} fits no arm of {tp}: {errors}")
    elif tp is type(None):
        assert value is None, where
    elif tp in (int, float):
        assert type(value) is tp, f"{where}: {value!r} is not {tp.__name__}"
    elif tp in (bool, str, dt.datetime):
        assert isinstance(value, tp), f"{where}: {value!r} is not {tp.__name__}"
    elif origin is tuple:
        assert isinstance(value, tuple), where
        for n, item in enumerate(value):
            assert_typed(item, typing.get_args(tp)[0], f"{where}[{n}]")
    elif origin is dict:
        assert isinstance(value, dict), where
        for key, item in value.items():
            assert isinstance(key, str), where
            assert_typed(item, typing.get_args(tp)[1], f"{where}.{key}")
    elif origin is Page:
        assert isinstance(value, Page), where
        assert type(value.current_page) is int
        assert type(value.pages) is int
        assert_typed(value.items, tuple[typing.get_args(tp)[0], ...], f"{where}.items")
    elif origin in (Sequence, Mapping):
        raise AssertionError(f"unexpected abstract type {tp}")
    else:
        assert isinstance(value, tp), f"{where}: {value!r} is not {tp}"
        hints = typing.get_type_hints(tp, include_extras=True)
        for field in attrs.fields(tp):
            assert_typed(
                getattr(value, field.name), hints[field.name], f"{where}.{field.name}"
            )


_AUTH_TEXTS = {
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


def leading_json(body: bytes) -> tuple[bool, Any]:
    """The first JSON value of a body, as the server's glued answers need."""
    text = body.decode("utf-8", errors="replace").lstrip("\ufeff")
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        pass
    stripped = text.lstrip(" \t\r\n")
    if not stripped or stripped[0] not in "{[":
        return False, None
    try:
        value, _ = json.JSONDecoder().raw_decode(stripped)
    except (ValueError, RecursionError):
        return False, None
    return True, value


def expected_outcome(name: str, status: int, body: bytes) -> type[BaseException] | None:
    """The exact error class README's error table promises for an answer.

    ``None`` means a success or, when the body does not fit the model, a
    ``ResponseError``. Written from the table, not from the session's code.
    """
    if status == 302:
        return AuthenticationError  # the fuzzer's redirects go to login.php
    if status == 429:
        return RateLimitError  # one attempt: the rate-limit retry budget is spent
    is_json, doc = leading_json(body)
    if isinstance(doc, dict) and "errors" in doc and "status" not in doc:
        return LegacyApiUnavailableError
    if status in (401, 403):
        return AuthenticationError
    if not is_json:
        blank = not body.strip(b" \t\r\n")
        if blank and name == "clear_user_notification" and status == 200:
            return None
        return ResponseError
    if not isinstance(doc, dict) or doc.get("status") not in ("success", "failure"):
        return ResponseError
    if doc["status"] == "failure":
        error = doc.get("error")
        text = error.strip().lower() if isinstance(error, str) else ""
        if "rate limit exceeded" in text:
            return RateLimitError
        if text in _AUTH_TEXTS:
            return AuthenticationError
        if text in ("no such user", "not found") or text.startswith("no such "):
            return NotFoundError
        if name == "viewconv" and error is None:
            return NotFoundError  # "does not exist or is not yours"
        return ApiError
    if "response" not in doc:
        return ResponseError
    return None


async def run_one(
    name: str, status: int, body: bytes, *, must_succeed: bool = False
) -> None:
    """Run one action on a canned answer and check its outcome's class and type.

    A fuzzed success envelope may hold a value that does not fit the model
    (``ResponseError`` is right then); ``must_succeed`` forbids that, for answers
    recorded from the real server.
    """
    call, _, expected = ACTIONS[name]

    async def send(*_: object) -> tuple[int, str, str, bytes]:
        return status, "login.php" if status == 302 else "", "", body

    client = BioTorrentsClient(
        TOKEN,
        cookies=COOKIES,
        base_url="https://bio.example",
        rate_limit=None,
        retry=RetryPolicy.none(),
    )
    client._session._send = send  # type: ignore[method-assign]
    outcome = expected_outcome(name, status, body)
    error: BioTorrentsError | None = None
    try:
        result = await call(client)
    except BioTorrentsError as exc:
        error = exc
    finally:
        await client.aclose()
    if error is None:
        assert outcome is None, f"{status} {body[:80]!r} should fail with {outcome}"
        assert_typed(result, expected)
        return
    assert not must_succeed, f"a recorded success failed: {error!r}"
    text = f"{error} {error!r} {getattr(error, 'body_excerpt', '')}"
    assert not [s for s in SECRETS if s in text]
    # Without an expected error, a success envelope whose value does not fit
    # the model.
    wanted = outcome or ResponseError
    assert type(error) is wanted, f"{status} {body[:80]!r}: {error!r}"


def fuzz(examples: int) -> Callable[..., Any]:
    @pytest.mark.parametrize("name", sorted(ACTIONS))
    def test(name: str) -> None:
        base = load_exchange(ACTIONS[name][1]).body

        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(bodies(base))
        def one(case: tuple[int, bytes]) -> None:
            asyncio.run(run_one(name, *case))

        one()

    return test


test_fuzz_every_action = fuzz(200)
test_fuzz_every_action_long = pytest.mark.slow(fuzz(3000))

REDACTOR = Redactor((TOKEN, COOKIES["session"]))


def check_answer(name: str, status: int, body: bytes) -> None:
    """Feed one answer to the pure ``interpret`` and check what it says.

    One attempt's verdict, before the session's retry loop and the endpoint: a
    "rate limit exceeded" is a rate-limited ``ApiError`` to retry (the loop
    raises ``RateLimitError`` when retries run out), a bare viewconv failure is
    still an ``ApiError`` (the endpoint names it ``NotFoundError``), and a
    success is the envelope's ``response`` value, whatever its shape.
    """
    outcome = interpret(
        name,
        status,
        "login.php" if status == 302 else "",
        "",
        body,
        empty_ok=name == "clear_user_notification",
        redact=REDACTOR,
    )
    expected = expected_outcome(name, status, body)
    error = outcome.error
    if expected is None:
        assert error is None, f"{status} {body[:80]!r}: {error!r}"
        is_json, doc = leading_json(body)
        assert outcome.value == (doc["response"] if is_json else None)
        return
    assert error is not None, f"{status} {body[:80]!r} should fail with {expected}"
    text = f"{error} {error!r} {getattr(error, 'body_excerpt', '')}"
    assert not [s for s in SECRETS if s in text]
    if expected is RateLimitError:
        assert type(error) is ApiError
        assert outcome.rate_limited
        assert outcome.retry
    elif expected is NotFoundError and name == "viewconv" and error.message is None:
        assert type(error) is ApiError
    else:
        assert type(error) is expected, f"{status} {body[:80]!r}: {error!r}"
        assert not outcome.rate_limited


def fuzz_answers(examples: int) -> Callable[..., Any]:
    @pytest.mark.parametrize("name", sorted(ACTIONS))
    def test(name: str) -> None:
        base = load_exchange(ACTIONS[name][1]).body

        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(bodies(base))
        def one(case: tuple[int, bytes]) -> None:
            check_answer(name, *case)

        one()

    return test


test_fuzz_the_pure_answers = fuzz_answers(500)
test_fuzz_the_pure_answers_long = pytest.mark.slow(fuzz_answers(10_000))


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_recorded_success_is_fully_typed(name: str) -> None:
    base = load_exchange(ACTIONS[name][1])
    assert expected_outcome(name, base.status, base.body) is None
    asyncio.run(run_one(name, base.status, base.body, must_succeed=True))

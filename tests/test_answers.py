"""The pure answer module: bytes in, a value or a documented error out, no I/O.

Each case is a server quirk (api-reference §18, docs/server-behaviour.md) fed to
``interpret`` as the bytes the server sends; the session only sends, waits and
retries on what it returns. Numbers like ``"1,204"`` are the converter's business
(tests/test_converter.py), not this module's.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
from pathlib import Path

import pytest
from support import COOKIES, TOKEN, load_exchange, load_exchanges

import biotorrents_async._answers as answers_module
from biotorrents_async import (
    ApiError,
    AuthenticationError,
    LegacyApiUnavailableError,
    NotFoundError,
    ResponseError,
)
from biotorrents_async._answers import (
    NOTHING,
    Outcome,
    body_too_large,
    interpret,
    leading_json,
    retry_after_seconds,
)
from biotorrents_async._redact import Redactor, redact_value

REDACT = Redactor((TOKEN, COOKIES["session"]))
SUCCESS = b'{"status":"success","response":{"id":2},"info":{"version":1}}'
HTML = b"<!doctype html><html><head><title>Error</title></head><body>oops</body></html>"


def answer(
    body: bytes,
    status: int = 200,
    *,
    location: str = "",
    retry_after: str = "",
    empty_ok: bool = False,
    action: str = "user",
) -> Outcome:
    return interpret(
        action,
        status,
        location,
        retry_after,
        body,
        empty_ok=empty_ok,
        redact=REDACT,
        now=dt.datetime(2026, 12, 2, 12, 0, 0, tzinfo=dt.UTC),
    )


def test_the_module_touches_neither_aiohttp_nor_the_event_loop() -> None:
    tree = ast.parse(Path(answers_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert not imported & {"aiohttp", "asyncio", "socket", "ssl", "multidict"}


# --- successes ------------------------------------------------------------------


def test_a_success_envelope_gives_its_response() -> None:
    outcome = answer(SUCCESS)
    assert outcome == Outcome(value={"id": 2})


def test_a_recorded_success_sent_as_text_plain_is_a_success() -> None:
    # §18.5: `user` answers with Content-Type text/plain; only the body counts.
    recorded = load_exchange("user_id1.txt")
    assert "text/plain" in recorded.headers.get("Content-Type", "")
    outcome = answer(recorded.body, recorded.status)
    assert outcome.error is None
    assert outcome.value == json.loads(recorded.body)["response"]


def test_an_empty_payload_array_is_a_success() -> None:
    # §18.12: json_die('success', []) where an object is normal.
    assert answer(b'{"status":"success","response":[]}') == Outcome(value=[])


def test_an_empty_body_is_a_success_only_where_the_action_prints_nothing() -> None:
    recorded = load_exchange("clear_user_notification_post_only.txt")
    assert answer(recorded.body, empty_ok=True) == Outcome(value=None)
    for status in (500, 404):
        assert answer(b"", status, empty_ok=True).error is not None


def test_r2_token_failure_glued_before_the_real_answer_is_skipped() -> None:
    # §3.4: R2 prefixes answers with a token-check failure whose response is an int.
    glued = (
        b'{"status":"failure","response":400,"error":"no authorization header '
        b'present","info":{}}' + SUCCESS
    )
    assert answer(glued) == Outcome(value={"id": 2})


def test_a_byte_order_mark_before_glued_json_is_skipped() -> None:
    assert answer(b"\xef\xbb\xbf" + SUCCESS + HTML) == Outcome(value={"id": 2})


# --- failures the server means ---------------------------------------------------


def test_html_after_a_failure_envelope_is_the_failure() -> None:
    # §3.2: inbox/viewconv print {"status":"failure"} and then an HTML error page.
    recorded = load_exchange("fail_viewconv_not_participant.txt")
    outcome = answer(recorded.body, recorded.status, action="inbox")
    assert type(outcome.error) is ApiError
    assert outcome.error.message is None
    assert not outcome.retry


def test_rate_limit_exceeded_with_http_200_is_retried_after_a_window() -> None:
    rate_limited = [
        e for e in load_exchanges("rate_limit_rapid_bearer.txt") if b"failure" in e.body
    ]
    assert rate_limited
    for recorded in rate_limited:
        outcome = answer(recorded.body, recorded.status)
        assert type(outcome.error) is ApiError
        assert outcome.rate_limited
        assert outcome.retry
        assert outcome.retry_after is None  # the server sends none: wait a window


@pytest.mark.parametrize(
    "message", ["Rate limit exceeded", "  RATE LIMIT EXCEEDED, slow down  "]
)
def test_rate_limit_text_is_recognised_in_any_case(message: str) -> None:
    body = json.dumps({"status": "failure", "error": message}).encode()
    assert answer(body).rate_limited


def test_http_429_is_rate_limited_whatever_the_body() -> None:
    for body in (b"", HTML, SUCCESS):
        outcome = answer(body, 429, retry_after="7")
        assert outcome.rate_limited
        assert outcome.retry
        assert outcome.retry_after == 7.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fail_user_nonexistent.txt", NotFoundError),
        ("fail_bearer_garbage.txt", AuthenticationError),
        ("fail_user_bad_id.txt", ApiError),
    ],
)
def test_recorded_failure_messages_map_to_their_errors(
    name: str, expected: type[Exception]
) -> None:
    recorded = load_exchange(name)
    outcome = answer(recorded.body, recorded.status)
    assert type(outcome.error) is expected
    assert not outcome.retry  # a verdict: sending again cannot help


def test_a_failure_envelope_on_a_5xx_is_retried() -> None:
    outcome = answer(b'{"status":"failure","error":"database gone"}', 503)
    assert type(outcome.error) is ApiError
    assert outcome.retry


# --- authentication ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["fail_unauthenticated_index.txt", "fail_cookie_bad_session.txt"]
)
def test_302_to_login_php_is_an_authentication_error(name: str) -> None:
    recorded = load_exchange(name)
    outcome = answer(
        recorded.body, recorded.status, location=recorded.headers["Location"]
    )
    assert type(outcome.error) is AuthenticationError
    assert not outcome.retry


def test_an_absolute_redirect_to_login_php_is_an_authentication_error() -> None:
    outcome = answer(HTML, 302, location="https://bio.example/login.php?x=1")
    assert type(outcome.error) is AuthenticationError


def test_another_redirect_names_the_target_without_its_query() -> None:
    outcome = answer(b"", 301, location="https://user:pw@new.example/api.php?auth=X")
    assert type(outcome.error) is ResponseError
    assert "https://new.example/api.php" in str(outcome.error)
    assert "auth=X" not in str(outcome.error)
    assert "pw" not in str(outcome.error)


def test_a_malformed_location_is_a_response_error() -> None:
    outcome = answer(b"", 302, location="http://[::1")
    assert type(outcome.error) is ResponseError


def test_the_login_page_with_http_200_is_an_authentication_error() -> None:
    page = b'<html><head><title>Log in</title></head><input type="password"></html>'
    assert type(answer(page).error) is AuthenticationError


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_authentication_errors(status: int) -> None:
    for body in (HTML, b"", b'{"status":"failure","error":"x"}'):
        assert type(answer(body, status).error) is AuthenticationError


# --- bodies that are not the API's ---------------------------------------------------


def test_jsonapi_errors_mean_the_legacy_api_is_gone() -> None:
    # §3.4 / §18.20: servers on the current code answer every action= with this.
    body = b'{"errors":"Not found","jsonapi":{"version":"1.1"},"meta":{"count":1}}'
    for status in (401, 404):
        outcome = answer(body, status)
        assert type(outcome.error) is LegacyApiUnavailableError
        assert outcome.error.status == status
        assert not outcome.retry


@pytest.mark.parametrize(
    ("status", "retried"), [(500, True), (502, True), (200, True), (404, False)]
)
def test_an_html_error_page_is_a_response_error(status: int, retried: bool) -> None:
    # 5xx pages and a 200 page can pass; a 4xx page will not.
    outcome = answer(HTML, status)
    assert type(outcome.error) is ResponseError
    assert outcome.error.status == status
    assert outcome.retry is retried
    assert "oops" in outcome.error.body_excerpt


def test_the_literal_array_notice_is_a_response_error() -> None:
    # §18.4: PHP's "Array" printed instead of JSON.
    outcome = answer(b"Array\n(\n    [0] => 1\n)\n")
    assert type(outcome.error) is ResponseError
    assert "not JSON" in str(outcome.error)


def test_an_empty_body_is_a_response_error_retried() -> None:
    for body in (b"", b" \r\n\t"):
        outcome = answer(body)
        assert type(outcome.error) is ResponseError
        assert "empty body" in str(outcome.error)
        assert outcome.retry  # a truncated answer may pass next time


def test_truncated_json_is_a_response_error_retried() -> None:
    for cut in (1, 10, len(SUCCESS) // 2, len(SUCCESS) - 1):
        outcome = answer(SUCCESS[:cut])
        assert type(outcome.error) is ResponseError, SUCCESS[:cut]
        assert outcome.retry


@pytest.mark.parametrize(
    "body",
    [b"[1, 2]", b'"text"', b"42", b"null", b'{"status":"weird"}', b'{"a":1}'],
)
def test_json_that_is_not_an_envelope_is_a_response_error(body: bytes) -> None:
    outcome = answer(body)
    assert type(outcome.error) is ResponseError
    assert "not an API envelope" in str(outcome.error)


def test_success_without_a_response_is_a_response_error() -> None:
    outcome = answer(b'{"status":"success","info":{}}')
    assert type(outcome.error) is ResponseError
    assert not outcome.retry


def test_invalid_utf8_is_decoded_with_replacements() -> None:
    body = b'{"status":"success","response":"caf\xe9"}'
    assert answer(body).value == "caf\ufffd"


def test_deeply_nested_json_is_a_response_error_not_a_recursion_error() -> None:
    outcome = answer(b"[" * 100_000 + b"]" * 100_000)
    assert type(outcome.error) is ResponseError


def test_a_body_over_the_cap_is_final() -> None:
    outcome = body_too_large("index", 200, 1000)
    assert type(outcome.error) is ResponseError
    assert "larger than 1000 bytes" in str(outcome.error)
    assert not outcome.retry


# --- secrets -------------------------------------------------------------------------


def test_messages_and_excerpts_carry_no_secret() -> None:
    echo = json.dumps(
        {"status": "failure", "error": f"bad token {TOKEN} for {COOKIES['session']}"}
    ).encode()
    page = f"<p>{TOKEN}</p><a href='x?authkey=abcdef0123456789'>".encode()
    for outcome in (answer(echo), answer(page, 500)):
        error = outcome.error
        assert error is not None
        text = f"{error} {error!r} {getattr(error, 'body_excerpt', '')}"
        assert TOKEN not in text
        assert COOKIES["session"] not in text
        assert "abcdef0123456789" not in text
        assert "<redacted>" in text


def test_redact_value_replaces_key_like_values_and_credentials() -> None:
    raw = {"authkey": "k" * 32, "passkey": "", "notes": [f"x {TOKEN} y"], "id": 2}
    assert redact_value(raw, REDACT) == {
        "authkey": "<redacted>",
        "passkey": "",
        "notes": ["x <redacted> y"],
        "id": 2,
    }


# --- the helpers ---------------------------------------------------------------------


def test_leading_json_says_nothing_for_text() -> None:
    assert leading_json("<html>") is NOTHING
    assert leading_json("") is NOTHING
    assert leading_json('  {"a": 1}{"b": 2}') == {"a": 1}


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("", None),
        ("  ", None),
        ("30", 30.0),
        ("9" * 400, 86400.0),
        ("Wed, 02 Dec 2026 12:01:00 GMT", 60.0),
        ("Wed, 02 Dec 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("soon", None),
    ],
)
def test_retry_after_is_seconds_or_a_date_capped_at_a_day(
    header: str, seconds: float | None
) -> None:
    now = dt.datetime(2026, 12, 2, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after_seconds(header, now=now) == seconds

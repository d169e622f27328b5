"""``client.call()``: any action=, through the same machinery as the typed calls."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from support import BASE, TOKEN, Router, fake_server_process

from biotorrents_async import (
    ApiError,
    ArgumentError,
    AuthenticationError,
    BioTorrentsClient,
    RateLimit,
    ResponseError,
    RetryPolicy,
)
from biotorrents_async.cli import main
from biotorrents_async.testing import FakeBioTorrents

FAST_RETRY = RetryPolicy(attempts=4, backoff_initial=0.001, backoff_max=0.002)


async def no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


def retrying_client() -> BioTorrentsClient:
    return BioTorrentsClient(
        TOKEN, base_url=BASE, rate_limit=None, retry=FAST_RETRY, sleep=no_sleep
    )


BAD_CALLS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"action": "top 10"}, ValueError),
    ({"action": ""}, ValueError),
    ({"action": "top10&type=users"}, ValueError),
    ({"action": "1abc"}, ValueError),
    ({"action": 10}, ArgumentError),
    ({"action": "top10", "params": {"limit": True}}, ArgumentError),
    ({"action": "top10", "params": {"limit": 1.5}}, ArgumentError),
    ({"action": "top10", "params": {"limit": None}}, ArgumentError),
    ({"action": "top10", "params": {"bad key": "1"}}, ValueError),
    ({"action": "top10", "params": {"action": "index"}}, ValueError),
    ({"action": "top10", "params": ["limit", "10"]}, ArgumentError),
    ({"action": "top10", "method": "PUT"}, ValueError),
    ({"action": "top10", "data": {"a": "1"}}, ValueError),
    ({"action": "top10", "ttl": -1}, ValueError),
    ({"action": "top10", "ttl": "60"}, ValueError),
    ({"action": "index", "ttl": 60}, ValueError),
    ({"action": "x", "method": "POST", "ttl": 60}, ValueError),
    ({"action": "top10", "fresh": 1}, ArgumentError),
]


@pytest.mark.parametrize(("kwargs", "error"), BAD_CALLS)
async def test_bad_arguments_raise_before_any_request(
    api: Router,
    client: BioTorrentsClient,
    kwargs: dict[str, Any],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        await client.call(**kwargs)
    assert api.calls == []


async def test_returns_the_raw_response_with_params_as_strings(
    api: Router, client: BioTorrentsClient
) -> None:
    api.json('{"status":"success","response":[{"tag":"day","results":[]}]}')
    result = await client.call("top10", {"type": "torrents", "limit": 10})
    assert result == [{"tag": "day", "results": []}]
    (sent,) = api.calls
    assert (sent.method, sent.query) == (
        "GET",
        {"action": "top10", "type": "torrents", "limit": "10"},
    )
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_a_get_is_retried_but_a_post_never(api: Router) -> None:
    async with retrying_client() as client:
        api.json("<html>busy</html>", status=503)
        api.json('{"status":"success","response":{"ok":1}}')
        assert await client.call("top10") == {"ok": 1}
        assert len(api.calls) == 2

        api.json("<html>busy</html>", status=503)
        api.json('{"status":"success","response":{"ok":1}}')
        with pytest.raises(ResponseError):
            await client.call("do_something", method="POST", data={"id": 3})
        assert len(api.calls) == 3  # one attempt only
        assert api.calls[-1].method == "POST"
        assert api.calls[-1].data == {"id": "3"}
        assert client.stats["retries"] == 1


async def test_an_empty_answer_to_a_post_is_none(
    api: Router, client: BioTorrentsClient
) -> None:
    api.json("")
    assert await client.call("clear_user_notification", method="POST", data={}) is None


async def test_an_auth_failure_is_not_retried_and_stops_the_client(
    api: Router,
) -> None:
    async with retrying_client() as client:
        api.json('{"status":"failure","error":"invalid token"}')
        with pytest.raises(AuthenticationError):
            await client.call("top10")
        assert len(api.calls) == 1
        with pytest.raises(AuthenticationError, match="not sent"):
            await client.call("top10")
        assert len(api.calls) == 1


async def test_failures_map_to_errors_without_secrets(
    api: Router, client: BioTorrentsClient
) -> None:
    api.json(f'{{"status":"failure","error":"bad token {TOKEN}"}}')
    with pytest.raises(ApiError) as failed:
        await client.call("top10")
    assert failed.value.action == "top10"
    assert TOKEN not in str(failed.value)
    api.json(f"<html>error for {TOKEN}</html>", status=500)
    with pytest.raises(ResponseError) as broken:
        await client.call("top10")
    assert TOKEN not in broken.value.body_excerpt
    assert TOKEN not in str(broken.value)


# --- against the fake server ---------------------------------------------------------


async def test_an_untyped_action_against_the_fake(
    biotorrents_server: FakeBioTorrents, biotorrents_client: BioTorrentsClient
) -> None:
    sections = await biotorrents_client.call(
        "top10", {"type": "torrents", "limit": 10, "details": "snatched"}
    )
    (section,) = sections
    assert section["tag"] == "snatched"
    counts = [r["snatched"] for r in section["results"]]
    assert len(counts) == 10
    assert counts == sorted(counts, reverse=True)
    everything = await biotorrents_client.call("top10")
    assert [s["tag"] for s in everything] == ["overall", "snatched", "data", "seeded"]
    assert biotorrents_server.requests[-1].action == "top10"


async def test_an_unknown_action_is_an_api_error(
    biotorrents_client: BioTorrentsClient,
) -> None:
    with pytest.raises(ApiError, match="bad parameters"):
        await biotorrents_client.call("no_such_action")


async def test_identical_concurrent_reads_share_one_request() -> None:
    async with FakeBioTorrents(rate_limit=None, latency=(0.05, 0.05)) as fake:
        async with BioTorrentsClient(
            fake.token, base_url=fake.url, rate_limit=None
        ) as client:
            a, b = await asyncio.gather(
                client.call("top10", {"limit": 10}),
                client.call("top10", {"limit": "10"}),
            )
        assert a == b
        assert [r.action for r in fake.requests] == ["top10"]
        assert client.stats["coalesced"] == 1


async def test_calls_are_paced_like_typed_calls() -> None:
    rule = RateLimit(2, 0.3)
    async with FakeBioTorrents(rate_limit=rule) as fake:
        async with BioTorrentsClient(
            fake.token, base_url=fake.url, rate_limit=rule
        ) as client:
            for limit in (10, 100, 250):
                await client.call("top10", {"limit": limit})
        assert client.stats["throttle_waits"] == 1
        assert [r.outcome for r in fake.requests] == ["ok"] * 3


# --- the command line ----------------------------------------------------------------


def test_cli_call_prints_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with fake_server_process() as (url, _):
        monkeypatch.setenv("BIOTORRENTS_BASE_URL", url)
        monkeypatch.setenv("BIOTORRENTS_TOKEN", "fake-token-kestrel-0002")
        code = main(
            ["call", "top10", "details=seeded", "limit=10", "--rate-limit", "none"]
        )
        out, err = capsys.readouterr()
        assert (code, err) == (0, "")
        (section,) = json.loads(out)
        assert section["tag"] == "seeded"
        assert len(section["results"]) == 10

        monkeypatch.setenv(
            "BIOTORRENTS_COOKIES", "session=fake-session-kestrel; userid=2"
        )
        assert main(["call", "index", "--rate-limit", "none"]) == 0
        out, _ = capsys.readouterr()
        me = json.loads(out)
        assert me["username"] == "kestrel"
        # The raw answer carries them; the command never prints secrets.
        assert me["authkey"] == me["passkey"] == "<redacted>"

        assert main(["call", "no_such_action", "--rate-limit", "none"]) == 1
        _, err = capsys.readouterr()
        assert err.startswith("error: ApiError: no_such_action: bad parameters")

        # A bad action name is a command-line mistake, like a bad pair: exit 2.
        with pytest.raises(SystemExit) as bad_name:
            main(["call", "top 10", "--rate-limit", "none"])
        assert bad_name.value.code == 2
        _, err = capsys.readouterr()
        assert "expected an action name" in err

    with pytest.raises(SystemExit) as usage:
        main(["call", "top10", "not-a-pair"])
    assert usage.value.code == 2

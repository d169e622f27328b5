"""OpenTelemetry traces and metrics, with the real SDK and its in-memory exporters.

The SDK's providers are global and can be set once per process: one session
fixture sets a tracer provider (in-memory span exporter) and a meter provider
(an in-memory reader and the Prometheus reader). Metrics are cumulative, so
each test compares counts before and after; spans are cleared per test.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import SECRETS

from biotorrents_async import (
    AuthenticationError,
    BioTorrentsClient,
    MemoryCache,
    NotFoundError,
    RateLimit,
    ResponseError,
    RetryPolicy,
)
from biotorrents_async import _telemetry as telemetry
from biotorrents_async.testing import FakeBioTorrents, Fault

try:
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover - the test extra installs them
    HAVE_SDK = False
else:
    HAVE_SDK = True

needs_sdk = pytest.mark.skipif(
    not HAVE_SDK,
    reason="needs opentelemetry-sdk, opentelemetry-exporter-prometheus and "
    'prometheus-client (pip install ".[test]")',
)

RULE = RateLimit(2, 0.1)
FAST = RetryPolicy(attempts=4, backoff_initial=0.01, backoff_max=0.05)
EXAMPLES = Path(__file__).parent.parent / "examples"


class Telemetry:
    """The process's SDK providers and their in-memory outputs."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        trace.set_tracer_provider(provider)
        self.tracer = trace.get_tracer("tests")
        metrics.set_meter_provider(
            MeterProvider(metric_readers=[self.reader, PrometheusMetricReader()])
        )

    def finished(self, prefix: str = "biotorrents ") -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name.startswith(prefix)]

    def points(self, name: str) -> Counter[frozenset[tuple[str, Any]]]:
        """Counter sums, histogram counts or gauge values, by attribute set."""
        found: Counter[frozenset[tuple[str, Any]]] = Counter()
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        key = frozenset((point.attributes or {}).items())
                        value = getattr(point, "value", None)
                        found[key] += point.count if value is None else value
        return found

    def sums(self, name: str) -> dict[str, float]:
        """Histogram sums by action."""
        found: dict[str, float] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            action = str((point.attributes or {}).get(telemetry.ACTION))
                            found[action] = found.get(action, 0.0) + point.sum
        return found


_STATE: dict[str, Telemetry] = {}


@pytest.fixture
def otel() -> Telemetry:
    if not HAVE_SDK:  # pragma: no cover
        pytest.skip("needs opentelemetry-sdk")
    if "t" not in _STATE:
        _STATE["t"] = Telemetry()
    state = _STATE["t"]
    state.spans.clear()
    return state


def delta(
    before: Counter[frozenset[tuple[str, Any]]],
    after: Counter[frozenset[tuple[str, Any]]],
) -> dict[frozenset[tuple[str, Any]], float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def labels(**kwargs: Any) -> frozenset[tuple[str, Any]]:
    return frozenset((k.replace("_", ".", 1), v) for k, v in kwargs.items())


def key(action: str, outcome: str = "ok") -> frozenset[tuple[str, Any]]:
    return frozenset({(telemetry.ACTION, action), (telemetry.OUTCOME, outcome)})


@pytest.fixture
async def fake() -> AsyncIterator[FakeBioTorrents]:
    async with FakeBioTorrents(rate_limit=RULE) as server:
        yield server


def client_for(fake: FakeBioTorrents, **kwargs: Any) -> BioTorrentsClient:
    options: dict[str, Any] = {
        "cookies": fake.cookies,
        "base_url": fake.url,
        "rate_limit": RULE,
        "retry": FAST,
    }
    options.update(kwargs)
    return BioTorrentsClient(fake.token, **options)


async def every_action(client: BioTorrentsClient) -> None:
    await client.index()
    await client.users.get(2)
    _ = [u async for u in client.users.iter_search("jim")]
    await client.users.community_stats(2)
    await client.users.recents(2, limit=2)
    await client.users.posts(2)
    ids = [c.conv_id async for c in client.inbox.iter_conversations()]
    await client.inbox.conversation(ids[0])
    await client.bookmarks.torrents()
    await client.bookmarks.artists()
    await client.notifications.torrents()
    await client.notifications.alerts()
    await client.notifications.clear("StaffPM")


ACTIONS = {
    "index",
    "user",
    "usersearch",
    "community_stats",
    "user_recents",
    "userhistory",
    "inbox",
    "bookmarks",
    "notifications",
    "get_user_notifications",
    "clear_user_notification",
}


def secrets_of(fake: FakeBioTorrents) -> list[str]:
    users = fake.data.users.values()
    return [
        *SECRETS,
        fake.token,
        fake.cookies["session"],
        *(u.passkey for u in users),
        *(u.authkey for u in users),
    ]


def exported_text(otel: Telemetry) -> str:
    """Every span name, attribute, event and status, and every metric label."""
    parts = []
    for span in otel.spans.get_finished_spans():
        parts += [span.name, repr(dict(span.attributes or {}))]
        parts.append(span.status.description or "")
        for event in span.events:
            parts += [event.name, repr(dict(event.attributes or {}))]
    data = otel.reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                parts.append(metric.name)
                for point in metric.data.data_points:
                    parts.append(repr(dict(point.attributes or {})))
    return "\n".join(parts)


@needs_sdk
async def test_every_action_has_its_span_and_metrics(
    otel: Telemetry, fake: FakeBioTorrents
) -> None:
    calls = otel.points("biotorrents.calls")
    http = otel.points("http.client.request.duration")
    async with client_for(fake) as client:
        await every_action(client)
    spans = otel.finished()
    assert {s.name for s in spans} == {f"biotorrents {a}" for a in ACTIONS}
    port = int(fake.url.rsplit(":", 1)[1])
    for span in spans:
        attributes = dict(span.attributes or {})
        assert span.kind == trace.SpanKind.CLIENT
        assert attributes[telemetry.ACTION] == span.name.split(" ", 1)[1]
        assert attributes[telemetry.OUTCOME] == "ok"
        assert attributes["biotorrents.attempts"] == 1
        assert attributes["http.response.status_code"] == 200
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == port
        assert attributes["biotorrents.coalesced"] is False
        assert isinstance(attributes["biotorrents.pacer.wait"], float)
        assert span.status.status_code == trace.StatusCode.UNSET
    counted = delta(calls, otel.points("biotorrents.calls"))
    assert {dict(k)[telemetry.ACTION] for k in counted} == ACTIONS
    assert all(dict(k)[telemetry.OUTCOME] == "ok" for k in counted)
    assert sum(counted.values()) == len(spans)
    attempts = delta(http, otel.points("http.client.request.duration"))
    assert sum(attempts.values()) == len(spans)
    assert all(dict(k)["http.response.status_code"] == 200 for k in attempts)


@needs_sdk
async def test_faults_and_throttling_show_as_events_and_counters(
    otel: Telemetry, fake: FakeBioTorrents
) -> None:
    retries = otel.points("biotorrents.retries")
    rejected = otel.points("biotorrents.rate_limit.rejections")
    http = otel.points("http.client.request.duration")
    calls = otel.points("biotorrents.calls")
    fake.faults.schedule(Fault.HTTP_502, Fault.RATE_LIMIT, Fault.DROP)
    async with client_for(fake) as client:
        await client.index()
        with pytest.raises(NotFoundError):
            await client.users.get(999_999)
    index, missing = otel.finished()
    attributes = dict(index.attributes or {})
    assert attributes["biotorrents.attempts"] == 4
    assert attributes[telemetry.OUTCOME] == "ok"
    events = [(e.name, dict(e.attributes or {})) for e in index.events]
    assert [name for name, _ in events] == [
        "biotorrents.retry",
        "biotorrents.rate_limited",
        "biotorrents.retry",
        "biotorrents.retry",
    ]
    assert [a.get("error.type") for _, a in events] == [
        "ResponseError",
        None,
        "ApiError",
        "TransportError",
    ]
    assert events[1][1]["biotorrents.pause"] > 0
    assert dict(missing.attributes or {})[telemetry.OUTCOME] == "NotFoundError"
    assert dict(missing.attributes or {})["error.type"] == "NotFoundError"
    assert missing.status.status_code == trace.StatusCode.ERROR
    assert delta(retries, otel.points("biotorrents.retries")) == {
        frozenset({(telemetry.ACTION, "index")}): 3
    }
    assert delta(rejected, otel.points("biotorrents.rate_limit.rejections")) == {
        frozenset({(telemetry.ACTION, "index")}): 1
    }
    assert delta(calls, otel.points("biotorrents.calls")) == {
        key("index"): 1,
        key("user", "NotFoundError"): 1,
    }
    errors = Counter(
        dict(k).get("error.type")
        for k, v in delta(http, otel.points("http.client.request.duration")).items()
        for _ in range(int(v))
    )
    assert errors["502"] == 1
    assert errors["ServerDisconnectedError"] == 1
    assert errors[None] == 3  # the rate-limit answer (HTTP 200), index, user


@needs_sdk
async def test_waiting_for_a_place_is_measured(
    otel: Telemetry, fake: FakeBioTorrents
) -> None:
    before = otel.sums("biotorrents.pacer.wait")
    async with client_for(fake) as client:
        # Six different reads: two places per 0.1 s, so the last ones wait.
        await asyncio.gather(*(client.users.get(n) for n in range(2, 8)))
    waits = [
        dict(s.attributes or {})["biotorrents.pacer.wait"] for s in otel.finished()
    ]
    assert len(waits) == 6
    assert max(waits) >= 0.15  # the fifth and sixth wait two windows
    after = otel.sums("biotorrents.pacer.wait")
    assert after["user"] - before.get("user", 0.0) == pytest.approx(sum(waits))


@needs_sdk
async def test_coalesced_and_cached_calls_are_marked(
    otel: Telemetry, fake: FakeBioTorrents
) -> None:
    coalesced = otel.points("biotorrents.coalesced")
    lookups = otel.points("biotorrents.cache.lookups")
    async with client_for(fake) as client:
        await asyncio.gather(client.index(), client.index())
    shared = [dict(s.attributes or {}) for s in otel.finished()]
    assert sorted(a["biotorrents.coalesced"] for a in shared) == [False, True]
    assert sorted(a["biotorrents.attempts"] for a in shared) == [0, 1]
    assert delta(coalesced, otel.points("biotorrents.coalesced")) == {
        frozenset({(telemetry.ACTION, "index")}): 1
    }
    otel.spans.clear()
    async with client_for(fake, cache=MemoryCache()) as client:
        await client.users.get(2)
        await client.users.get(2)
    first, second = (dict(s.attributes or {}) for s in otel.finished())
    assert (first["biotorrents.cache.hit"], first["biotorrents.attempts"]) == (False, 1)
    assert (second["biotorrents.cache.hit"], second["biotorrents.attempts"]) == (
        True,
        0,
    )
    assert "http.response.status_code" not in second
    assert delta(lookups, otel.points("biotorrents.cache.lookups")) == {
        frozenset({(telemetry.ACTION, "user"), ("biotorrents.cache.result", r)}): 1
        for r in ("hit", "miss")
    }


@needs_sdk
async def test_call_spans_nest_under_the_callers_span(
    otel: Telemetry, fake: FakeBioTorrents
) -> None:
    async with client_for(fake) as client:
        with otel.tracer.start_as_current_span("handle command") as parent:
            await client.index()
            await client.users.get(2)
        await client.users.get(3)  # outside: a root span of its own
    inside = parent.get_span_context()
    index, user, alone = otel.finished()
    for span in (index, user):
        assert span.parent is not None
        assert span.parent.span_id == inside.span_id
        assert span.context.trace_id == inside.trace_id
    assert alone.parent is None
    assert alone.context.trace_id != inside.trace_id


@needs_sdk
async def test_watch_polls_are_root_spans_with_their_calls_inside(
    otel: Telemetry, fake: FakeBioTorrents
) -> None:
    items = otel.points("biotorrents.watch.items")
    lag = otel.points("biotorrents.watch.delivery_lag")
    polls = otel.points("biotorrents.watch.polls")
    async with client_for(fake, watch_interval=0.05) as client:
        with otel.tracer.start_as_current_span("bot startup") as startup:
            stream = client.inbox.watch(name="mail")
            await stream.__aenter__()
        try:
            await stream.ready()
            fake.data.add_conversation("Sequencing run done", sender=3, recipient=2)
            async with asyncio.timeout(10):
                item = await anext(stream)
            assert item.subject == "Sequencing run done"
            stream_labels = {
                ("biotorrents.stream.kind", "inbox"),
                ("biotorrents.stream.name", "mail"),
            }
            gauges = otel.points("biotorrents.watch.active")
            assert gauges[frozenset(stream_labels)] == 1
            last = otel.points("biotorrents.watch.last_success")
            assert last[frozenset(stream_labels)] > 1.7e9  # a unix time
        finally:
            await stream.aclose()
    user_trace = startup.get_span_context().trace_id
    watch = otel.finished("biotorrents watch ")
    assert watch
    assert {s.name for s in watch} <= {
        "biotorrents watch index",
        "biotorrents watch inbox",
    }
    for span in watch:
        assert span.context.trace_id != user_trace
        assert dict(span.attributes or {})["biotorrents.watch.check"] in (
            "index",
            "inbox",
        )
    roots = {s.context.span_id for s in watch if s.parent is None}
    assert roots
    polled = {s.context.span_id: s for s in watch}
    calls = [s for s in otel.finished() if not s.name.startswith("biotorrents watch")]
    assert {s.name for s in calls} == {"biotorrents index", "biotorrents inbox"}
    for call in calls:
        # Every call the hub made is inside a poll, never in the user's trace.
        assert call.parent is not None
        assert call.parent.span_id in polled
        assert call.context.trace_id != user_trace
    ok = frozenset(stream_labels | {(telemetry.OUTCOME, "ok")})
    assert delta(polls, otel.points("biotorrents.watch.polls"))[ok] >= 2
    assert delta(items, otel.points("biotorrents.watch.items")) == {
        frozenset(stream_labels): 1
    }
    assert delta(lag, otel.points("biotorrents.watch.delivery_lag")) == {
        frozenset(stream_labels): 1
    }


@needs_sdk
async def test_a_future_date_is_a_lag_of_zero_and_counted(otel: Telemetry) -> None:
    import datetime as dt

    from biotorrents_async import ConversationSummary

    clipped = otel.points("biotorrents.watch.delivery_lag.clipped")

    class Stream:
        kind, name = "inbox", "ahead"

    ahead = dt.datetime.now() + dt.timedelta(hours=1)
    item = ConversationSummary(
        conv_id=1,
        subject="x",
        unread=True,
        sticky=False,
        forwarded_id=0,
        forwarded_name=None,
        sender_id=3,
        username="u",
        donor=False,
        warned=False,
        enabled=True,
        date=ahead,
    )
    telemetry.stream_delivered(Stream(), item)  # type: ignore[arg-type]
    found = delta(clipped, otel.points("biotorrents.watch.delivery_lag.clipped"))
    assert found == {
        frozenset(
            {("biotorrents.stream.kind", "inbox"), ("biotorrents.stream.name", "ahead")}
        ): 1
    }


@needs_sdk
async def test_no_secret_reaches_telemetry(
    otel: Telemetry, fake: FakeBioTorrents
) -> None:
    fake.faults.schedule(Fault.HTML_ERROR, Fault.TRUNCATE, Fault.DROP, Fault.HTTP_503)
    async with client_for(fake) as client:
        with pytest.raises(ResponseError):  # four faults, four attempts
            await client.index()
        await every_action(client)
        # Secrets in the query string of a generic call: never recorded.
        me = await client.index()
        await client.call("index", {"authkey": me.authkey, "passkey": me.passkey})
        with pytest.raises(NotFoundError):
            await client.users.get(999_999)
    revoked = fake.add_token(3)
    fake.revoke_token(revoked)
    async with BioTorrentsClient(
        revoked, base_url=fake.url, rate_limit=RULE, retry=FAST
    ) as other:
        with pytest.raises(AuthenticationError):
            await other.index()
    text = exported_text(otel)
    assert "biotorrents index" in text  # the scan saw the spans
    assert "ResponseError" in text  # and the failures
    leaked = [s for s in [*secrets_of(fake), revoked] if s in text]
    assert leaked == []
    assert "authkey" not in text
    assert "?" not in text  # no URL, no query string


@needs_sdk
async def test_retry_logs_carry_action_and_attempt(
    otel: Telemetry,
    fake: FakeBioTorrents,
    no_secret_in_any_log_line: list[logging.LogRecord],
) -> None:
    fake.faults.schedule(Fault.HTTP_502, Fault.DROP)
    async with client_for(fake) as client:
        await client.index()
    retries = [r for r in no_secret_in_any_log_line if "retrying" in r.getMessage()]
    assert [
        (getattr(r, "biotorrents.action"), getattr(r, "biotorrents.attempt"))
        for r in retries
    ] == [("index", 1), ("index", 2)]
    # Messages are as they were; the fields are extra.
    assert "attempt 1/4" in retries[0].getMessage()


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location(
        "inbox_bot_example", EXAMPLES / "inbox_bot.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_sdk
async def test_prometheus_page_and_health_over_loopback(
    otel: Telemetry, fake: FakeBioTorrents
) -> None:
    example = _load_example()
    async with client_for(fake, watch_interval=0.05) as client:
        fake.faults.schedule(Fault.RATE_LIMIT)
        await client.index()
        async with client.inbox.watch(name="mail") as stream:
            await stream.ready()
            async with (
                example.serve_metrics([stream], 0) as port,
                aiohttp.ClientSession() as http,
            ):
                async with http.get(f"http://127.0.0.1:{port}/metrics") as page:
                    assert page.status == 200
                    assert page.content_type == "text/plain"
                    text = await page.text()
                async with http.get(f"http://127.0.0.1:{port}/health") as answer:
                    assert answer.status == 200
                    report = json.loads(await answer.text())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in families.values()
    }
    calls = samples["biotorrents_calls"]
    assert any(
        n == "biotorrents_calls_total"
        and lab.get("biotorrents_action") == "index"
        and lab.get("biotorrents_outcome") == "ok"
        and v >= 1
        for n, lab, v in calls
    )
    assert any(v >= 1 for _, _, v in samples["biotorrents_rate_limit_rejections"])
    assert "http_client_request_duration_seconds" in families
    assert "biotorrents_pacer_wait_seconds" in families
    active = samples["biotorrents_watch_active"]
    assert (
        "biotorrents_watch_active",
        {"biotorrents_stream_kind": "inbox", "biotorrents_stream_name": "mail"},
        1.0,
    ) in [
        (n, {k: v for k, v in lab.items() if k.startswith("bio")}, v)
        for n, lab, v in active
    ]
    assert "biotorrents_watch_last_success_seconds" in families
    leaked = [s for s in secrets_of(fake) if s in text]
    assert leaked == []
    assert report["healthy"] is True
    (mail,) = report["streams"]
    assert (mail["kind"], mail["name"], mail["role"], mail["ready"]) == (
        "inbox",
        "mail",
        "active",
        True,
    )
    assert mail["consecutive_failures"] == 0


def test_health_says_unwell_when_a_stream_fails() -> None:
    import datetime as dt

    from biotorrents_async import StreamHealth

    example = _load_example()

    class Stream:
        def __init__(self, role: str, ready: bool, failures: int) -> None:
            self.health = StreamHealth(
                kind="inbox",
                name="mail",
                role=role,
                ready=ready,
                last_success=dt.datetime.now(dt.UTC),
                consecutive_failures=failures,
                last_error=None,
                holder=None,
            )

    assert example.health([Stream("active", True, 0)])[0] is True
    assert example.health([Stream("standby", False, 0)])[0] is True
    assert example.health([Stream("active", True, 3)])[0] is False
    assert example.health([Stream("ended", True, 0)])[0] is False
    assert example.health([Stream("starting", False, 0)])[0] is False


_WITHOUT_OTEL = """
import asyncio, sys
sys.modules["opentelemetry"] = None  # as if not installed: every import fails
from biotorrents_async import BioTorrentsClient, RateLimit, RetryPolicy
from biotorrents_async import _telemetry
from biotorrents_async.testing import FakeBioTorrents

assert _telemetry.AVAILABLE is False
assert not any(m.startswith("opentelemetry.") for m in sys.modules)

async def main():
    async with FakeBioTorrents(rate_limit=None) as fake:
        async with BioTorrentsClient(
            fake.token, cookies=fake.cookies, base_url=fake.url, rate_limit=None,
            retry=RetryPolicy.none(),
        ) as client:
            assert type(client._session._telemetry).__name__ == "NoTelemetry"
            me = await client.index()
            async with client.inbox.watch(interval=0.05) as stream:
                await stream.ready()
            print("ok", me.username)

asyncio.run(main())
"""

_API_ONLY = """
import asyncio
from biotorrents_async import BioTorrentsClient, RetryPolicy
from biotorrents_async import _telemetry
from biotorrents_async.testing import FakeBioTorrents

assert _telemetry.AVAILABLE is True

async def main():
    async with FakeBioTorrents(rate_limit=None) as fake:
        async with BioTorrentsClient(
            fake.token, base_url=fake.url, rate_limit=None, retry=RetryPolicy.none()
        ) as client:
            me = await client.index()
            # No SDK: the API's proxy providers; nothing is recorded.
            assert _telemetry._is_configured() is False
            assert client._session._telemetry.call("index", "GET") is None
            print("ok", me.id)

asyncio.run(main())
"""


def test_without_opentelemetry_the_package_works() -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", _WITHOUT_OTEL],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok kestrel"


@pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry") is None,
    reason="needs opentelemetry-api",
)
def test_with_the_api_but_no_sdk_nothing_is_recorded() -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", _API_ONLY],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok 2"


@needs_sdk
async def test_places_held_are_observed(otel: Telemetry, fake: FakeBioTorrents) -> None:
    rule = RateLimit(2, 30)  # a place stays held for the whole test
    async with client_for(fake, rate_limit=rule) as client:
        before = otel.points("biotorrents.pacer.places_held")[frozenset()]
        await client.index()
        assert client._session.pacer.held_places() == 1  # type: ignore[attr-defined]
        after = otel.points("biotorrents.pacer.places_held")[frozenset()]
        assert after - before == 1

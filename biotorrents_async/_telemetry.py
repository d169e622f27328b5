"""OpenTelemetry traces and metrics, when ``opentelemetry-api`` is installed.

Every hook the session, the hub and the streams call lives here, so that the
rest of the package stays free of telemetry (and the hooks are easy to move).
Without ``opentelemetry-api`` every hook is a no-op object decided once at
import. With the API but no SDK configured (the API's proxy providers), the
hooks look at the providers first and do nothing either; once the application
sets a tracer or meter provider, they record.

What is recorded (docs/monitoring.md has the full list):

- one ``CLIENT`` span per API call, ``biotorrents <action>``, under the
  caller's current span; retries and rate-limit pauses are its events;
- one span per watch poll, ``biotorrents watch <check>``, a root span of its
  own (background work is not part of what the user was doing);
- metrics: ``http.client.request.duration`` per HTTP attempt (the semantic
  convention) and ``biotorrents.*`` for calls, retries, rejections, pacing,
  coalescing, the cache and the watch streams.

Secrets never reach telemetry: no URL or query string is recorded (only the
host and port), no header, and every free-text value (an error's message, an
action name) goes through the session's ``redact`` first.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import importlib
import importlib.metadata
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._pacing import Pacer, Slot
    from ._stream import WatchStream

__all__ = [
    "AVAILABLE",
    "INSTRUMENTATION_NAME",
    "NOOP",
    "current_call",
    "log_fields",
    "poll",
    "stream_delivered",
    "stream_opened",
    "stream_polled",
    "telemetry_for",
]

INSTRUMENTATION_NAME = "biotorrents_async"

# Imported by name (not ``import opentelemetry``) so that mypy sees the same
# untyped module objects whether or not the API is installed.
try:
    _trace: Any = importlib.import_module("opentelemetry.trace")
    _metrics: Any = importlib.import_module("opentelemetry.metrics")
    _context: Any = importlib.import_module("opentelemetry.context")
except ImportError:
    _trace = _metrics = _context = None

#: Whether ``opentelemetry-api`` could be imported (decided once).
AVAILABLE = _trace is not None

try:
    _VERSION = importlib.metadata.version("biotorrents-async")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
    _VERSION = "0.0.0"
_UNSET_PROVIDERS = frozenset(
    {"ProxyTracerProvider", "NoOpTracerProvider", "_ProxyMeterProvider"}
)
_NOOP_METER_PROVIDERS = frozenset({"_ProxyMeterProvider", "NoOpMeterProvider"})
_configured = False
_GLOBALS: tuple[Any, Any] | None = None
if AVAILABLE:
    try:
        _metrics_internal = importlib.import_module("opentelemetry.metrics._internal")
        if hasattr(_trace, "_TRACER_PROVIDER") and hasattr(
            _metrics_internal, "_METER_PROVIDER"
        ):
            _GLOBALS = (_trace, _metrics_internal)
    except ImportError:  # pragma: no cover - a future API without the module
        pass

# Bucket advice (seconds). The HTTP one is the semantic convention's; pacing
# waits are counted in windows of the server's rule (6 s); delivery lags reach
# from a poll interval to a day.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10)
_WAIT_BUCKETS = (0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 4, 6, 9, 12, 18, 30, 60)
_LAG_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400)

ACTION = "biotorrents.action"
OUTCOME = "biotorrents.outcome"
ATTEMPT = "biotorrents.attempt"
_PRIORITIES = {0: "interactive", 1: "background"}


def _providers_set() -> bool:
    """The public check: what the API's getters return (they read the environment)."""
    tracer_provider = type(_trace.get_tracer_provider()).__name__
    meter_provider = type(_metrics.get_meter_provider()).__name__
    return (
        tracer_provider not in _UNSET_PROVIDERS
        or meter_provider not in _NOOP_METER_PROVIDERS
    )


def _is_configured() -> bool:
    """Whether the application set a tracer or meter provider (cached once true).

    Called by every hook: while nothing is set, the API's globals are read
    directly (the public getters look at the environment each time, several
    microseconds a call); an API without them gets the public check.
    """
    global _configured
    if _configured:
        return True
    if _GLOBALS is None:
        _configured = _providers_set()
    else:
        # A provider, once set, cannot be unset: remember the answer.
        trace_module, metrics_module = _GLOBALS
        _configured = (
            trace_module._TRACER_PROVIDER is not None
            or metrics_module._METER_PROVIDER is not None
        )
    return _configured


def log_fields(action: str, attempt: int) -> dict[str, Any]:
    """Structured fields for a log record (``extra=``), for JSON formatters.

    Dotted names: they cannot clash with ``LogRecord``'s own attributes.
    """
    return {ACTION: action, ATTEMPT: attempt}


# --- instruments ---------------------------------------------------------------


class _Instruments:
    """Every instrument, made once on the API's (proxy) meter."""

    def __init__(self) -> None:
        meter = _metrics.get_meter(INSTRUMENTATION_NAME, _VERSION)
        self.tracer = _trace.get_tracer(INSTRUMENTATION_NAME, _VERSION)
        self.http_duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests (one per attempt).",
            explicit_bucket_boundaries_advisory=_HTTP_BUCKETS,
        )
        self.calls = meter.create_counter(
            "biotorrents.calls",
            unit="{call}",
            description="API calls by action and outcome (ok or the error class).",
        )
        self.retries = meter.create_counter(
            "biotorrents.retries", unit="{retry}", description="Attempts sent again."
        )
        self.rejections = meter.create_counter(
            "biotorrents.rate_limit.rejections",
            unit="{rejection}",
            description="Answers that said the server's rate limit was exceeded.",
        )
        self.pacer_wait = meter.create_histogram(
            "biotorrents.pacer.wait",
            unit="s",
            description="Time an attempt waited for a place of the allowance.",
            explicit_bucket_boundaries_advisory=_WAIT_BUCKETS,
        )
        self.coalesced = meter.create_counter(
            "biotorrents.coalesced",
            unit="{call}",
            description="Calls answered by an identical read already under way.",
        )
        self.cache = meter.create_counter(
            "biotorrents.cache.lookups",
            unit="{lookup}",
            description="Read-cache lookups by result (hit or miss).",
        )
        meter.create_observable_gauge(
            "biotorrents.pacer.places_held",
            callbacks=[_observe_places],
            unit="{place}",
            description="Places of the allowance held (in flight or in their window).",
        )
        self.items = meter.create_counter(
            "biotorrents.watch.items",
            unit="{item}",
            description="Items a watch stream handed to its consumer.",
        )
        self.lag = meter.create_histogram(
            "biotorrents.watch.delivery_lag",
            unit="s",
            description="From the item's date on the server to its delivery.",
            explicit_bucket_boundaries_advisory=_LAG_BUCKETS,
        )
        self.clipped = meter.create_counter(
            "biotorrents.watch.delivery_lag.clipped",
            unit="{item}",
            description="Items dated in the future (server clock ahead): lag 0.",
        )
        self.polls = meter.create_counter(
            "biotorrents.watch.polls",
            unit="{poll}",
            description="Polls for a watch stream, by outcome.",
        )
        meter.create_observable_gauge(
            "biotorrents.watch.last_success",
            callbacks=[_observe_last_success],
            unit="s",
            description="Unix time of the stream's last successful poll.",
        )
        meter.create_observable_gauge(
            "biotorrents.watch.active",
            callbacks=[_observe_active],
            unit="1",
            description="1 while the stream is active, 0 otherwise (standby...).",
        )


_pacers: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_streams: weakref.WeakSet[WatchStream[Any]] = weakref.WeakSet()


def _observe_places(_options: Any) -> Iterable[Any]:
    held = 0
    for pacer in list(_pacers.values()):
        count = getattr(pacer, "held_places", None)
        if callable(count):
            held += count()
    return [_metrics.Observation(held)]


def _stream_labels(stream: WatchStream[Any]) -> dict[str, str]:
    labels: dict[str, str] | None = getattr(stream, "_telemetry_labels", None)
    if labels is None:
        labels = {"biotorrents.stream.kind": stream.kind}
        labels["biotorrents.stream.name"] = stream.name
        stream._telemetry_labels = labels  # type: ignore[attr-defined]
    return labels


def _observe_last_success(_options: Any) -> Iterable[Any]:
    found = []
    for stream in list(_streams):
        last = stream._last_success
        if last is not None:
            found.append(_metrics.Observation(last.timestamp(), _stream_labels(stream)))
    return found


def _observe_active(_options: Any) -> Iterable[Any]:
    return [
        _metrics.Observation(int(s._role == "active"), _stream_labels(s))
        for s in list(_streams)
    ]


# Made at import: the API's proxy meter and tracer bind to the providers the
# application sets later.
_instruments: Any = _Instruments() if AVAILABLE else None


# --- the session's hooks --------------------------------------------------------


class _NoopContext:
    """A context manager that does nothing (telemetry off)."""

    __slots__ = ()

    def __enter__(self) -> _NoopContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


#: Stands in for a record while telemetry is off.
NOOP = _NoopContext()


class NoTelemetry:
    """The session's hooks when ``opentelemetry-api`` is not installed."""

    __slots__ = ()

    def call(self, action: str, method: str) -> _Call | None:
        """See ``Telemetry.call``."""
        return None

    def cache(self, action: str, hit: bool) -> None:
        """See ``Telemetry.cache``."""

    def coalesced(self, action: str) -> None:
        """See ``Telemetry.coalesced``."""

    def retry(self, action: str, attempt: int, delay: float, error: Exception) -> None:
        """See ``Telemetry.retry``."""

    def rate_limited(self, action: str, attempt: int, pause: float) -> None:
        """See ``Telemetry.rate_limited``."""


class _Call:
    """One API call's record: its span and what the hooks learnt."""

    __slots__ = (
        "_ctx_token",
        "action",
        "attempts",
        "cache_hit",
        "coalesced",
        "method",
        "recording",
        "span",
        "status",
        "telemetry",
        "token",
        "waited",
    )

    def __init__(self, telemetry: Telemetry, action: str, method: str) -> None:
        self.telemetry = telemetry
        self.action = action
        self.method = method
        self.attempts = 0
        self.waited = 0.0
        self.coalesced = False
        self.cache_hit: bool | None = None
        self.status: int | None = None
        self.span: Any = None
        self.recording = False
        self.token: Any = None
        self._ctx_token: Any = None

    def __enter__(self) -> _Call:
        tel = self.telemetry
        span = _instruments.tracer.start_span(
            f"biotorrents {self.action}", kind=_trace.SpanKind.CLIENT
        )
        self.span = span
        self.recording = span.is_recording()
        if self.recording:
            span.set_attributes(
                {
                    ACTION: self.action,
                    "http.request.method": self.method,
                    **tel.server,
                }
            )
        self.token = _context.attach(_trace.set_span_in_context(span))
        self._ctx_token = _current.set(self)
        return self

    def http(self, method: str) -> _HTTP:
        """One HTTP attempt; set ``.status`` once the answer's status is known."""
        labels = self.telemetry.labels(method)
        return _HTTP(labels, self)

    def paced(self, slot: Slot, priority: int) -> Slot:
        """The slot, measuring its wait (``biotorrents.pacer.wait``)."""
        return _PacedSlot(slot, self, priority)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        _current.reset(self._ctx_token)
        _context.detach(self.token)
        outcome = "ok" if exc_type is None else exc_type.__name__
        span = self.span
        if self.recording:
            attributes: dict[str, Any] = {
                OUTCOME: outcome,
                "biotorrents.attempts": self.attempts,
                "biotorrents.pacer.wait": self.waited,
                "biotorrents.coalesced": self.coalesced,
            }
            if self.cache_hit is not None:
                attributes["biotorrents.cache.hit"] = self.cache_hit
            if self.status is not None:
                attributes["http.response.status_code"] = self.status
            if exc_type is not None:
                attributes["error.type"] = outcome
                # Every error message of the package is redacted already; once
                # more, in case a future one is not.
                span.set_status(
                    _trace.Status(
                        _trace.StatusCode.ERROR, self.telemetry.redact(str(exc))
                    )
                )
            span.set_attributes(attributes)
        span.end()
        labels = {ACTION: self.action, OUTCOME: outcome}
        # One measurement per call (the span has the duration): each costs
        # the SDK more than all of this module's own work.
        _instruments.calls.add(1, labels)


_current: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "biotorrents_async_telemetry_call", default=None
)
#: The API call being recorded in this context, or ``None`` (telemetry off): the
#: session asks once per attempt, and does nothing more while it is ``None``.
current_call = _current.get


class _HTTP:
    """One HTTP attempt: ``http.client.request.duration``."""

    __slots__ = ("call", "labels", "started", "status")

    def __init__(self, labels: dict[str, Any], call: _Call) -> None:
        self.labels = labels
        self.call = call
        self.status: int | None = None
        self.started = 0.0

    def __enter__(self) -> _HTTP:
        self.started = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        elapsed = time.perf_counter() - self.started
        labels = dict(self.labels)
        status = self.status
        if status is not None:
            labels["http.response.status_code"] = status
            if status >= 400:
                labels["error.type"] = str(status)
        if exc_type is not None and not (status and status >= 400):
            labels["error.type"] = exc_type.__name__
        call = self.call
        call.attempts += 1
        if status is not None:
            call.status = status
        labels[ACTION] = call.action
        _instruments.http_duration.record(elapsed, labels)


class _PacedSlot:
    """A pacer slot that measures how long it waited for its place."""

    __slots__ = ("_call", "_priority", "_slot")

    def __init__(self, slot: Slot, call: _Call, priority: int) -> None:
        self._slot = slot
        self._call = call
        self._priority = priority

    async def __aenter__(self) -> None:
        started = time.perf_counter()
        await self._slot.__aenter__()
        waited = time.perf_counter() - started
        labels = {
            ACTION: self._call.action,
            "biotorrents.priority": _PRIORITIES.get(self._priority, "other"),
        }
        _instruments.pacer_wait.record(waited, labels)
        self._call.waited += waited

    async def __aexit__(self, *exc_info: object) -> None:
        await self._slot.__aexit__(*exc_info)

    def prioritize(self, priority: int) -> None:
        self._slot.prioritize(priority)

    def unused(self) -> None:
        self._slot.unused()


class Telemetry(NoTelemetry):
    """The session's hooks with ``opentelemetry-api`` installed.

    Args:
        server: ``server.address`` and ``server.port`` of the API.
        redact: The session's redaction of credentials and key-like values.
    """

    __slots__ = ("_labels", "redact", "server")

    def __init__(self, server: dict[str, Any], redact: Callable[[str], str]) -> None:
        self.server = server
        self.redact = redact
        self._labels: dict[str, dict[str, Any]] = {}

    def call(self, action: str, method: str) -> _Call | None:
        """One API call's record (its span, ``biotorrents.calls``, its attempts).

        Returns:
            A context manager around the call, or ``None`` while no provider is
            set: then the session skips every hook of the call.
        """
        if not _is_configured():
            return None
        return _Call(self, self.redact(action), method)

    def labels(self, method: str) -> dict[str, Any]:
        """The fixed labels of an HTTP attempt with ``method``."""
        labels = self._labels.get(method)
        if labels is None:
            labels = self._labels[method] = {
                "http.request.method": method,
                **self.server,
            }
        return labels

    def cache(self, action: str, hit: bool) -> None:
        """The read cache answered (``hit``) or not."""
        if not _is_configured():
            return
        call = _current.get()
        if call is not None:
            call.cache_hit = hit
        _instruments.cache.add(
            1,
            {ACTION: self.redact(action), "biotorrents.cache.result": _HIT[hit]},
        )

    def coalesced(self, action: str) -> None:
        """The call shared an identical read's answer."""
        if not _is_configured():
            return
        call = _current.get()
        if call is not None:
            call.coalesced = True
        _instruments.coalesced.add(1, {ACTION: self.redact(action)})

    def retry(self, action: str, attempt: int, delay: float, error: Exception) -> None:
        """An attempt failed and is sent again after ``delay`` seconds."""
        if not _is_configured():
            return
        _instruments.retries.add(1, {ACTION: self.redact(action)})
        call = _current.get()
        if call is not None and call.recording:
            call.span.add_event(
                "biotorrents.retry",
                {
                    ATTEMPT: attempt,
                    "biotorrents.retry.delay": delay,
                    "error.type": type(error).__name__,
                },
            )

    def rate_limited(self, action: str, attempt: int, pause: float) -> None:
        """The server said "rate limit exceeded"; every caller pauses ``pause`` s."""
        if not _is_configured():
            return
        _instruments.rejections.add(1, {ACTION: self.redact(action)})
        call = _current.get()
        if call is not None and call.recording:
            call.span.add_event(
                "biotorrents.rate_limited",
                {ATTEMPT: attempt, "biotorrents.pause": pause},
            )


_HIT = {True: "hit", False: "miss"}


def telemetry_for(
    *, url: Any, redact: Callable[[str], str], pacer: Callable[[], Pacer]
) -> NoTelemetry:
    """The hooks for one session (no-ops without ``opentelemetry-api``).

    Args:
        url: The API's ``yarl.URL``; only its host and port are recorded.
        redact: The session's redaction.
        pacer: Returns the session's pacer (its places are observed).
    """
    if not AVAILABLE:
        return NoTelemetry()
    held = pacer()
    # A pacer of the user's may not take weak references: then not observed.
    with contextlib.suppress(TypeError):
        _pacers[id(held)] = held
    server: dict[str, Any] = {"server.address": url.host or ""}
    if url.port is not None:
        server["server.port"] = url.port
    return Telemetry(server, redact)


# --- the watch code's hooks -----------------------------------------------------


_in_poll: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "biotorrents_async_telemetry_poll", default=False
)


class _Poll:
    """A watch poll's span: a root span (background work), nested polls inside."""

    __slots__ = ("check", "poll_token", "span", "token")

    def __init__(self, check: str) -> None:
        self.check = check

    def __enter__(self) -> _Poll:
        # The hub's task was created from the caller's context (whatever span the
        # user had open when the first stream started): do not nest under it.
        parent = None if _in_poll.get() else _context.Context()
        span = self.span = _instruments.tracer.start_span(
            f"biotorrents watch {self.check}",
            context=parent,
            kind=_trace.SpanKind.INTERNAL,
        )
        if span.is_recording():
            span.set_attribute("biotorrents.watch.check", self.check)
        self.token = _context.attach(_trace.set_span_in_context(span))
        self.poll_token = _in_poll.set(True)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        _in_poll.reset(self.poll_token)
        _context.detach(self.token)
        span = self.span
        if span.is_recording():
            outcome = "ok" if exc_type is None else exc_type.__name__
            span.set_attribute(OUTCOME, outcome)
            if exc_type is not None:
                span.set_attribute("error.type", outcome)
                # Errors of the package are redacted when made.
                span.set_status(_trace.Status(_trace.StatusCode.ERROR))
        span.end()


def poll(check: str) -> contextlib.AbstractContextManager[Any]:
    """A context manager around one watch check (``WatchHub._attempt``)."""
    if not AVAILABLE or not _is_configured():
        return NOOP
    return _Poll(check)


def stream_opened(stream: WatchStream[Any]) -> None:
    """Observe a new stream's health (``last_success``, ``active``)."""
    if AVAILABLE:
        _streams.add(stream)


def stream_polled(stream: WatchStream[Any], error: BaseException | None) -> None:
    """A poll for ``stream`` ended: ``biotorrents.watch.polls`` by outcome."""
    if not AVAILABLE or not _is_configured():
        return
    labels = dict(_stream_labels(stream))
    labels[OUTCOME] = "ok" if error is None else type(error).__name__
    _instruments.polls.add(1, labels)


def _item_date(item: Any) -> _dt.datetime | None:
    date = getattr(item, "date", None)
    if date is None:
        date = getattr(item, "notification_time", None)
    return date if isinstance(date, _dt.datetime) else None


def stream_delivered(stream: WatchStream[Any], item: Any) -> None:
    """``item`` goes to the consumer: count it and record its delivery lag.

    The server's dates are its local time, without a zone; they are compared
    with this machine's local time, so a clock (or zone) offset between the
    two shifts every lag by that offset. A lag below 0 (the server's clock
    ahead) is recorded as 0 and counted in
    ``biotorrents.watch.delivery_lag.clipped``.
    """
    if not AVAILABLE or not _is_configured():
        return
    labels = _stream_labels(stream)
    inst = _instruments
    inst.items.add(1, labels)
    date = _item_date(item)
    if date is None:
        return  # alerts carry no date
    if date.tzinfo is None:
        lag = (_dt.datetime.now() - date).total_seconds()
    else:
        lag = (_dt.datetime.now(_dt.UTC) - date).total_seconds()
    if lag < 0:
        inst.clipped.add(1, labels)
        lag = 0.0
    inst.lag.record(lag, labels)

"""The user-facing knobs of the session: ``RateLimit``, ``RetryPolicy``."""

from __future__ import annotations

import attrs

__all__ = ["RateLimit", "RetryPolicy"]


def _positive_int(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _positive_float(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a number > 0, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


def _optional_non_negative(
    obj: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None:
        _non_negative(obj, attribute, value)  # type: ignore[arg-type]


@attrs.frozen
class RateLimit:
    """The server's rule: at most ``requests`` calls in a fixed window of ``per`` s.

    The window opens when the first counted call *arrives* and lets ``requests``
    calls through. The client paces itself so that the rule is never broken,
    however many tasks share it: it treats every request as holding a place from
    the moment it is sent until ``window`` seconds after its answer arrived, and
    never has more than ``requests`` of those at once.

    Why that is safe, and why the margin is small: a request reaches the server
    somewhere between its sending and its answer, so a window opened by it (or by
    an earlier one) has opened by the time the answer is in. BioTorrents keeps its
    counter in memcached with a ``per``-second expiry, and memcached drops an item
    at the first tick of its whole-second clock at or after ``per`` seconds, so
    the window closes between ``per - 1`` and ``per`` seconds after it opened
    (measured on the real server code: 5.1 to 6.0 s for the 6-second rule) — or a
    few milliseconds later when a tick runs late on a loaded server. Holding each
    place until ``per + margin`` after the answer therefore outlasts every window
    the request could have been counted in.

    Attributes:
        requests: Calls allowed per window.
        per: The window length the server states, in seconds.
        margin: Extra seconds added to every window, for a late expiry tick.
            ``None`` (the default) means ``per / 60``: 0.1 s for the real
            6-second rule, scaled down with it for test servers that use short
            windows.
    """

    requests: int = attrs.field(validator=_positive_int)
    per: float = attrs.field(validator=_positive_float)
    margin: float | None = attrs.field(
        default=None, kw_only=True, validator=_optional_non_negative
    )

    @classmethod
    def default(cls) -> RateLimit:
        """Return BioTorrents' rule: 2 requests per fixed 6-second window."""
        return cls(requests=2, per=6.0)

    @property
    def window(self) -> float:
        """Seconds a request holds its place after its answer: ``per`` + margin."""
        return self.per + (self.per / 60 if self.margin is None else self.margin)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how patiently a request is retried.

    Retried: connection errors, timeouts, HTTP 5xx, truncated or undecodable
    bodies, and "rate limit exceeded" (after a pause of one whole window). Never
    retried: authentication failures and ``{"status": "failure"}`` answers.

    The wait before retry ``n`` (1-based) is ``base * (1 + jitter * r)`` with
    ``base = min(backoff_max, backoff_initial * backoff_multiplier ** (n - 1))`` and
    ``r`` uniform in ``[0, 1)``, capped again at ``backoff_max``.

    Attributes:
        attempts: Tries in total, the first included (``1`` = no retries).
        backoff_initial: Seconds before the first retry.
        backoff_multiplier: Growth of the wait per retry.
        backoff_max: Cap on any single wait.
        jitter: Random extra, as a fraction of the wait.
    """

    attempts: int = attrs.field(default=4, validator=_positive_int)
    backoff_initial: float = attrs.field(default=0.5, validator=_non_negative)
    backoff_multiplier: float = attrs.field(default=2.0, validator=_positive_float)
    backoff_max: float = attrs.field(default=30.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.5, validator=_non_negative)

    @classmethod
    def none(cls) -> RetryPolicy:
        """Return a policy of exactly one attempt."""
        return cls(attempts=1)

    def backoff(self, retry: int, random_value: float) -> float:
        """Return the wait before retry number ``retry`` (1-based).

        Args:
            retry: Which retry this is: 1 for the second attempt.
            random_value: A number in ``[0, 1)`` that scales the jitter.
        """
        base = min(
            self.backoff_max,
            self.backoff_initial * self.backoff_multiplier ** (retry - 1),
        )
        return min(self.backoff_max, base * (1 + self.jitter * random_value))

    def budget(self) -> float:
        """Return the most time all backoff waits of one call can add up to."""
        return sum(self.backoff(n, 1.0) for n in range(1, self.attempts))

"""Failures the fake injects in front of requests, by schedule or by chance."""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Iterable
from enum import StrEnum

__all__ = ["Fault", "FaultPlan"]


class Fault(StrEnum):
    """Failures the fake can inject in front of a request."""

    HTTP_502 = "502"
    HTTP_503 = "503"
    DROP = "drop"  # the connection closes without an answer
    # The server counts the request and does its work (marks things read), then
    # the connection closes before the answer.
    DROP_AFTER = "drop-after"
    DELAY = "delay"  # the answer comes after FaultPlan.delay seconds
    TRUNCATE = "truncate"  # the body is cut in half
    HTML_ERROR = "html"  # a PHP error page (HTTP 500) instead of JSON
    RATE_LIMIT = "rate-limit"  # "rate limit exceeded", whatever the counter says


class FaultPlan:
    """Which requests fail, by schedule or by seeded probability."""

    def __init__(self) -> None:
        self._schedule: deque[Fault | None] = deque()
        self._by_action: dict[str, deque[Fault | None]] = {}
        self._rate = 0.0
        self._kinds: tuple[Fault, ...] = tuple(Fault)
        self._rng = random.Random(0)
        self.delay = 1.0
        self.injected: Counter[Fault] = Counter()

    def schedule(self, *faults: Fault | None, action: str | None = None) -> None:
        """Fail the next requests in this order (``None`` = no fault for that one).

        Args:
            *faults: One per request, in order.
            action: Only requests for this action (``"notifications"``, say)
                take these faults; others go by the general schedule.
        """
        if action is None:
            self._schedule.extend(faults)
        else:
            self._by_action.setdefault(action, deque()).extend(faults)

    def randomly(
        self, rate: float, kinds: Iterable[Fault] = tuple(Fault), *, seed: int = 0
    ) -> None:
        """Fail each request with probability ``rate``, picking from ``kinds``."""
        self._rate = rate
        self._kinds = tuple(kinds)
        self._rng = random.Random(seed)

    def clear(self) -> None:
        """Stop injecting faults."""
        self._schedule.clear()
        self._by_action.clear()
        self._rate = 0.0

    def next(self, action: str | None = None) -> Fault | None:
        """Return the fault for the request now arriving, if any."""
        mine = self._by_action.get(action or "")
        if mine:
            fault = mine.popleft()
        else:
            fault = self._schedule.popleft() if self._schedule else None
        if fault is None and self._rate and self._rng.random() < self._rate:
            fault = self._rng.choice(self._kinds)
        if fault is not None:
            self.injected[fault] += 1
        return fault

"""pytest fixtures for testing code that uses biotorrents_async (a ``pytest11`` plugin).

Installed with the package, so no import is needed:

- ``biotorrents_rate_limit``: the rule both the fake and the client use
  (``RateLimit(2, 0.2)``: the real rule, thirty times faster). Override it in your
  ``conftest.py`` to change it.
- ``biotorrents_server``: a running :class:`FakeBioTorrents` on 127.0.0.1.
- ``biotorrents_client``: a :class:`BioTorrentsClient` connected to it with the demo
  user's token and cookies (full-user mode), fast retries, the same rule.

The async fixtures need pytest-asyncio (any mode).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .._client import BioTorrentsClient
from .._policy import RateLimit, RetryPolicy
from ._server import FakeBioTorrents

try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - only without pytest-asyncio
    _async_fixture = pytest.fixture  # type: ignore[assignment]


@pytest.fixture
def biotorrents_rate_limit() -> RateLimit:
    """The fixed-window rule of the fake server and of the client."""
    return RateLimit(2, 0.2)


@_async_fixture
async def biotorrents_server(
    biotorrents_rate_limit: RateLimit,
) -> AsyncIterator[FakeBioTorrents]:
    """A running fake BioTorrents.de server with the seeded data set."""
    async with FakeBioTorrents(rate_limit=biotorrents_rate_limit) as server:
        yield server


@_async_fixture
async def biotorrents_client(
    biotorrents_server: FakeBioTorrents, biotorrents_rate_limit: RateLimit
) -> AsyncIterator[BioTorrentsClient]:
    """A client logged in to ``biotorrents_server`` as the demo user ``kestrel``."""
    async with BioTorrentsClient(
        biotorrents_server.token,
        cookies=biotorrents_server.cookies,
        base_url=biotorrents_server.url,
        rate_limit=biotorrents_rate_limit,
        retry=RetryPolicy(backoff_initial=0.01, backoff_max=0.1),
    ) as client:
        yield client

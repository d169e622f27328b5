"""pytest fixtures for testing code that uses biotorrents_async (a ``pytest11`` plugin).

Installed with the package, so no import is needed:

- ``biotorrents_rate_limit``: the rule both the fake and the client use
  (``RateLimit(2, 0.2)``: the real rule, thirty times faster). Override it in your
  ``conftest.py`` to change it.
- ``biotorrents_server``: a running ``FakeBioTorrents`` on 127.0.0.1.
- ``biotorrents_client``: a ``BioTorrentsClient`` connected to it with the demo
  user's token and cookies (full-user mode), fast retries, the same rule.

The async fixtures need pytest-asyncio, in any mode: an ``async def`` test that
takes ``biotorrents_client`` or ``biotorrents_server`` is marked
``@pytest.mark.asyncio`` by this plugin, so it runs even in pytest-asyncio's
default strict mode, with no configuration.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

import pytest

from .._client import BioTorrentsClient
from .._policy import RateLimit, RetryPolicy
from ._server import FakeBioTorrents

try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - only without pytest-asyncio
    _async_fixture = pytest.fixture  # type: ignore[assignment]
    _HAS_ASYNCIO = False
else:
    _HAS_ASYNCIO = True

_ASYNC_FIXTURES = frozenset({"biotorrents_client", "biotorrents_server"})


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> None:
    """Mark async tests that use this plugin's fixtures as asyncio tests.

    In pytest-asyncio's strict mode (its default) an unmarked ``async def`` test
    is not run; a test that asks for a running fake server clearly is one.
    """
    if not _HAS_ASYNCIO or not inspect.iscoroutinefunction(obj):
        return
    if not isinstance(collector, pytest.Module | pytest.Class):
        return
    if not collector.funcnamefilter(name):
        return
    try:
        wanted = set(inspect.signature(obj).parameters)
    except (TypeError, ValueError):  # pragma: no cover - exotic callables
        return
    marks = getattr(obj, "pytestmark", [])
    if wanted & _ASYNC_FIXTURES and not any(m.name == "asyncio" for m in marks):
        pytest.mark.asyncio(obj)


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

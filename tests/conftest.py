"""Shared fixtures: recorded server answers, an aioresponses router, a fast client."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aioresponses.core as aioresponses_core
import pytest
from aioresponses import CallbackResult, aioresponses
from support import BASE, COOKIES, SECRETS, TOKEN, Router, redis_server
from yarl import URL

from biotorrents_async import BioTorrentsClient, RetryPolicy

# aioresponses 0.7.9 builds ClientResponse without the `stream_writer` argument that
# aiohttp >= 3.14 requires (pnuckowski/aioresponses#289, fix in open PR #288). Give
# it a default, only while aiohttp's signature asks for it, so the shim disappears
# by itself once a fixed aioresponses ships.
if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:

    class _Writer:
        output_size = 0

    class _CompatResponse(aiohttp.ClientResponse):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", _Writer())
            super().__init__(*args, **kwargs)

    aioresponses_core.ClientResponse = _CompatResponse  # type: ignore[misc]


@pytest.fixture
def api() -> Iterator[Router]:
    router = Router()
    with aioresponses() as mocked:
        for method in ("GET", "POST"):
            mocked.add(
                re.compile(re.escape(BASE) + r"/.*"),
                method,
                callback=_with_method(router, method),
                repeat=True,
            )
        yield router


def _with_method(router: Router, method: str) -> Callable[..., CallbackResult]:
    def callback(url: URL, **kwargs: Any) -> CallbackResult:
        return router(url, method=method, **kwargs)

    return callback


@pytest.fixture
async def client() -> AsyncIterator[BioTorrentsClient]:
    async with BioTorrentsClient(
        TOKEN, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as c:
        yield c


@pytest.fixture
async def cookie_client() -> AsyncIterator[BioTorrentsClient]:
    """A full-user client: token and cookies."""
    async with BioTorrentsClient(
        TOKEN, cookies=COOKIES, base_url=BASE, rate_limit=None, retry=RetryPolicy.none()
    ) as c:
        yield c


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI remembers held places between commands: never in the real home."""
    monkeypatch.setenv("BIOTORRENTS_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture(autouse=True)
def no_secret_in_any_log_line() -> Iterator[list[logging.LogRecord]]:
    """Suite-wide: every record of the library's logger, at DEBUG, is secret-free."""
    logger = logging.getLogger("biotorrents_async")
    handler = _Records()
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    for record in handler.records:
        text = record.getMessage() + (record.exc_text or "")
        leaked = [s for s in SECRETS if s in text]
        assert not leaked, f"secret in log line: {record.getMessage()!r}"


@pytest.fixture(autouse=True)
async def no_unhandled_loop_errors() -> AsyncIterator[None]:
    """Fail a test whose event loop reported an error (e.g. a destroyed task)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield
    await asyncio.sleep(0)
    gc.collect()
    loop.set_exception_handler(None)
    assert not errors, f"event loop errors: {errors}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis server on loopback: `.ci/run`'s, or one started here.

    `.ci/run` starts redis-server on a free port and sets BIOTORRENTS_TEST_REDIS_URL
    (and BIOTORRENTS_REQUIRE_REDIS=1, so that a missing server fails the run
    instead of skipping these tests).
    """
    url = os.environ.get("BIOTORRENTS_TEST_REDIS_URL")
    if url:
        yield url
        return
    if shutil.which("redis-server") is None:
        if os.environ.get("BIOTORRENTS_REQUIRE_REDIS"):
            pytest.fail("redis-server is required here but not installed")
        pytest.skip("redis-server is not installed (.ci/run installs and starts it)")
    with redis_server() as url:
        yield url

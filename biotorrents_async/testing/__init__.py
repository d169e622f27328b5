"""A faithful fake of BioTorrents.de for your tests, demos and other languages.

``FakeBioTorrents`` is a real aiohttp.web server on 127.0.0.1 that answers
``/api.php`` and ``/ajax.php`` like the real site (docs/server-behaviour.md):
its quirks, its failure shapes and its fixed-window rate limiter. Seeded with
open-science data; add your own through ``FakeBioTorrents.data``.

With pytest, the plugin shipped with this package gives you fixtures without an
import: ``biotorrents_server`` (a running fake, fast rate rule) and
``biotorrents_client`` (a client connected to it):

    async def test_my_bot(biotorrents_client):
        me = await biotorrents_client.index()
        assert me.username == "kestrel"
"""

from __future__ import annotations

from ._data import (
    FakeArtist,
    FakeConversation,
    FakeData,
    FakeGroup,
    FakeMessage,
    FakeNotification,
    FakePost,
    FakeThread,
    FakeTorrent,
    FakeUser,
)
from ._faults import Fault, FaultPlan
from ._server import DEMO_COOKIES, DEMO_TOKEN, FakeBioTorrents, RecordedRequest

__all__ = [
    "DEMO_COOKIES",
    "DEMO_TOKEN",
    "FakeArtist",
    "FakeBioTorrents",
    "FakeConversation",
    "FakeData",
    "FakeGroup",
    "FakeMessage",
    "FakeNotification",
    "FakePost",
    "FakeThread",
    "FakeTorrent",
    "FakeUser",
    "Fault",
    "FaultPlan",
    "RecordedRequest",
]

"""biotorrents_async: the asyncio client for the BioTorrents.de JSON API.

Quick start:

    import asyncio
    from biotorrents_async import BioTorrentsClient

    async def main() -> None:
        async with BioTorrentsClient.from_env() as client:
            me = await client.index()
            async for conv in client.inbox.iter_conversations(limit=10):
                print(conv.subject)

    asyncio.run(main())
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from ._cache import MemoryCache, ReadCache, RedisCache
from ._client import BioTorrentsClient
from ._converter import to_dict
from ._pacing import LocalPacer, Pacer
from ._policy import RateLimit, RetryPolicy
from ._redis import RedisPacer
from ._stores import (
    CursorStore,
    FileStore,
    Lease,
    LeasedStore,
    MemoryStore,
    RedisStore,
)
from ._stream import StreamHealth, WatchStream, item_key, merge_streams
from .exceptions import (
    ApiError,
    ArgumentError,
    AuthenticationError,
    BioTorrentsError,
    CookiesRequiredError,
    CursorFileError,
    LeaseLostError,
    LegacyApiUnavailableError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    SharedStoreError,
    StoreError,
    StreamFailedError,
    TransportError,
)
from .models import (
    Alert,
    AlertKind,
    BookmarkedArtist,
    BookmarkedGroup,
    BookmarkedTorrent,
    Box,
    CommunityStats,
    Conversation,
    ConversationSummary,
    ForumPost,
    Index,
    IndexNotifications,
    IndexUserStats,
    Message,
    Page,
    RecentArtist,
    RecentGroup,
    SearchType,
    TorrentNotification,
    User,
    UserCommunity,
    UserPersonal,
    UserRanks,
    UserRecents,
    UserSearchResult,
    UserStats,
)

try:
    __version__ = version("biotorrents-async")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

logging.getLogger("biotorrents_async").addHandler(logging.NullHandler())

__all__ = [
    "__version__",
    # client and knobs
    "BioTorrentsClient",
    "RateLimit",
    "RetryPolicy",
    "Pacer",
    "LocalPacer",
    "RedisPacer",
    # read cache
    "ReadCache",
    "MemoryCache",
    "RedisCache",
    # watch streams
    "WatchStream",
    "merge_streams",
    "item_key",
    "StreamHealth",
    "CursorStore",
    "LeasedStore",
    "Lease",
    "MemoryStore",
    "FileStore",
    "RedisStore",
    # errors
    "BioTorrentsError",
    "AuthenticationError",
    "CookiesRequiredError",
    "RateLimitError",
    "ApiError",
    "NotFoundError",
    "TransportError",
    "ResponseError",
    "LegacyApiUnavailableError",
    "StoreError",
    "CursorFileError",
    "SharedStoreError",
    "LeaseLostError",
    "StreamFailedError",
    "ArgumentError",
    # models
    "to_dict",
    "Page",
    "AlertKind",
    "Box",
    "SearchType",
    "Index",
    "IndexNotifications",
    "IndexUserStats",
    "User",
    "UserStats",
    "UserRanks",
    "UserPersonal",
    "UserCommunity",
    "UserSearchResult",
    "CommunityStats",
    "UserRecents",
    "RecentGroup",
    "RecentArtist",
    "ForumPost",
    "ConversationSummary",
    "Conversation",
    "Message",
    "BookmarkedGroup",
    "BookmarkedTorrent",
    "BookmarkedArtist",
    "TorrentNotification",
    "Alert",
]

"""``to_dict``: every model (and a Page) as JSON-ready data, and back."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, get_args, get_origin

import attrs
import cattrs
import pytest
from cattrs.gen import make_dict_structure_fn
from support import response_of

import biotorrents_async
from biotorrents_async import (
    Alert,
    AlertKind,
    BookmarkedArtist,
    BookmarkedGroup,
    CommunityStats,
    Conversation,
    ConversationSummary,
    ForumPost,
    Index,
    Page,
    TorrentNotification,
    User,
    UserRecents,
    UserSearchResult,
    to_dict,
)
from biotorrents_async._converter import make_converter, structure, structure_page

STRICT = make_converter(strict=True)


def _objects() -> dict[str, Any]:
    """One parsed instance of every model the client returns, from real answers."""
    made: dict[str, Any] = {
        "index": structure(STRICT, response_of("index.txt"), Index, "t"),
        "user": structure(STRICT, response_of("user_id2_self.txt"), User, "t"),
        "stats": structure(
            STRICT, response_of("community_stats.txt"), CommunityStats, "t"
        ),
        "recents": structure(STRICT, response_of("user_recents.txt"), UserRecents, "t"),
        "conversation": structure(
            STRICT, response_of("inbox_viewconv.txt"), Conversation, "t"
        ),
        "alerts": structure(
            STRICT,
            response_of("get_user_notifications_quotes.txt"),
            dict[str, Alert],
            "t",
        ),
    }
    pages = {
        "search": ("usersearch.txt", UserSearchResult, "results", "currentPage"),
        "posts": ("userhistory_posts.txt", ForumPost, "threads", "currentPage"),
        "inbox": ("inbox.txt", ConversationSummary, "messages", "currentPage"),
        "hits": (
            "notifications_poweruser.txt",
            TorrentNotification,
            "results",
            "currentPages",
        ),
    }
    for name, (fixture, item_type, items_key, page_key) in pages.items():
        made[name] = structure_page(
            STRICT,
            response_of(fixture),
            item_type,
            items_key=items_key,
            page_key=page_key,
            action="t",
        )
    made["bookmarks"] = structure(
        STRICT,
        response_of("bookmarks_torrents.txt")["bookmarks"],
        tuple[BookmarkedGroup, ...],
        "t",
    )
    made["artists"] = structure(
        STRICT,
        response_of("bookmarks_artists.txt")["artists"],
        tuple[BookmarkedArtist, ...],
        "t",
    )
    return made


OBJECTS = _objects()


def _model_types(value: Any) -> set[type]:
    """Every attrs class inside ``value`` (nested models, page items, ...)."""
    found: set[type] = set()
    if attrs.has(type(value)):
        found.add(type(value))
        for field in attrs.fields(type(value)):
            found |= _model_types(getattr(value, field.name))
    elif isinstance(value, dict):
        for item in value.values():
            found |= _model_types(item)
    elif isinstance(value, tuple | list):
        for item in value:
            found |= _model_types(item)
    return found


def test_the_samples_cover_every_public_model() -> None:
    public = {
        getattr(biotorrents_async, name)
        for name in biotorrents_async.__all__
        if attrs.has(getattr(biotorrents_async, name))
        and getattr(biotorrents_async, name).__module__ == "biotorrents_async.models"
    }
    covered = set().union(*(_model_types(v) for v in OBJECTS.values()))
    assert public <= covered, public - covered


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_every_model_dumps_to_json(name: str) -> None:
    data = to_dict(OBJECTS[name])
    text = json.dumps(data)  # a TypeError here: something was not JSON-ready
    # Plain JSON types only: loading it back gives the same data.
    assert json.loads(text) == data


def _reader() -> cattrs.Converter:
    """Read to_dict's shape back: attribute names, ISO dates, lists for tuples."""
    conv = cattrs.Converter()
    conv.register_structure_hook(dt.datetime, lambda v, _: dt.datetime.fromisoformat(v))

    def sequence_as_tuple(tp: Any) -> Any:
        item_type = get_args(tp)[0]
        return lambda value, _: tuple(conv.structure(v, item_type) for v in value)

    # Page.items is a Sequence; the client fills it with a tuple.
    conv.register_structure_hook_factory(
        lambda tp: get_origin(tp) is Sequence, sequence_as_tuple
    )

    def secrets_as_none(cls: Any) -> Any:
        # to_dict leaves the secret (repr=False) fields out: read them as None.
        inner = make_dict_structure_fn(cls, conv)
        secret = [f.name for f in attrs.fields(cls) if not f.repr]
        return lambda value, tp: inner(dict.fromkeys(secret) | value, tp)

    conv.register_structure_hook_factory(
        lambda tp: attrs.has(tp) and not get_args(tp), secrets_as_none
    )
    return conv


ROUND_TRIPS = {
    "user": User,
    "stats": CommunityStats,
    "recents": UserRecents,
    "conversation": Conversation,
    "alerts": dict[str, Alert],
    "search": Page[UserSearchResult],
    "posts": Page[ForumPost],
    "inbox": Page[ConversationSummary],
    "hits": Page[TorrentNotification],
    "bookmarks": tuple[BookmarkedGroup, ...],
    "artists": tuple[BookmarkedArtist, ...],
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_round_trip_gives_an_equal_model(name: str) -> None:
    original = OBJECTS[name]
    again = _reader().structure(
        json.loads(json.dumps(to_dict(original))), ROUND_TRIPS[name]
    )
    assert again == original


def test_index_round_trips_without_its_secret_keys() -> None:
    index = OBJECTS["index"]
    assert index.passkey
    assert index.authkey
    data = to_dict(index)
    # The keys are secrets (kept out of repr too): never in the JSON.
    assert "passkey" not in data
    assert "authkey" not in data
    assert index.passkey not in json.dumps(data)
    again = _reader().structure(data, Index)
    assert again == attrs.evolve(index, authkey=None, passkey=None)


def test_the_shape_attribute_names_iso_dates_and_page_keys() -> None:
    page = OBJECTS["inbox"]
    data = to_dict(page)
    assert set(data) == {"items", "current_page", "pages", "attempts"}
    first = data["items"][0]
    assert first["conv_id"] == page.items[0].conv_id  # not the server's "convId"
    assert "convId" not in first
    assert first["date"] == page.items[0].date.isoformat()
    assert dt.datetime.fromisoformat(first["date"]) == page.items[0].date
    assert "T" in first["date"]
    user = to_dict(OBJECTS["user"])
    assert user["personal"]["class_name"] == OBJECTS["user"].personal.class_name
    alerts = to_dict(OBJECTS["alerts"])
    assert alerts["Quotes"]["kind"] == "Quotes"


def test_enums_become_their_values() -> None:
    data = to_dict({"kind": AlertKind.STAFF_PM, "when": dt.datetime(2021, 1, 2, 3, 4)})
    assert data == {"kind": "StaffPM", "when": "2021-01-02T03:04:00"}
    assert type(data["kind"]) is str

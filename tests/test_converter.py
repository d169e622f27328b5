"""The converter against every recorded answer and every quirk the server has."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from support import FIXTURES, response_of

from biotorrents_async import (
    Alert,
    BookmarkedArtist,
    BookmarkedGroup,
    CommunityStats,
    Conversation,
    ConversationSummary,
    ForumPost,
    Index,
    ResponseError,
    TorrentNotification,
    User,
    UserRecents,
    UserSearchResult,
)
from biotorrents_async._converter import make_converter, structure, structure_page

STRICT = make_converter(strict=True)
LENIENT = make_converter()

# Every recorded success, with the model it must parse into without losing a key.
OBJECTS = {
    "index.txt": Index,
    "bearer_index.txt": Index,
    "admin_index_with_debug.txt": Index,
    "cookie_index_poweruser.txt": Index,
    "index_counters.txt": Index,
    "user_id1.txt": User,
    "user_id2_self.txt": User,
    "admin_user_id2.txt": User,
    "bearer_user_id1.txt": User,
    "community_stats.txt": CommunityStats,
    "bearer_community_stats.txt": CommunityStats,
    "fail_community_stats_nonexistent.txt": CommunityStats,
    "user_recents.txt": UserRecents,
    "user_recents_other.txt": UserRecents,
    "fail_user_recents_nonexistent.txt": UserRecents,
    "inbox_viewconv.txt": Conversation,
    "get_user_notifications.txt": dict[str, Alert],
    "bearer_get_user_notifications.txt": dict[str, Alert],
    "get_user_notifications_after_clear.txt": dict[str, Alert],
    "cleartest_1_before.txt": dict[str, Alert],
    "cleartest_2_after_get.txt": dict[str, Alert],
    "cleartest_3_after_post.txt": dict[str, Alert],
    "get_user_notifications_quotes.txt": dict[str, Alert],
    "get_user_notifications_quotes_two.txt": dict[str, Alert],
    "get_user_notifications_two_news.txt": dict[str, Alert],
}
PAGES = {
    "usersearch.txt": (UserSearchResult, "results", "currentPage"),
    "usersearch_no_results.txt": (UserSearchResult, "results", "currentPage"),
    "page_past_last_usersearch.txt": (UserSearchResult, "results", "currentPage"),
    "userhistory_posts.txt": (ForumPost, "threads", "currentPage"),
    "admin_userhistory_posts_id1.txt": (ForumPost, "threads", "currentPage"),
    "bearer_userhistory_posts.txt": (ForumPost, "threads", "currentPage"),
    "page_past_last_userhistory.txt": (ForumPost, "threads", "currentPage"),
    "fail_userhistory_nonexistent.txt": (ForumPost, "threads", "currentPage"),
    "inbox.txt": (ConversationSummary, "messages", "currentPage"),
    "inbox_sentbox.txt": (ConversationSummary, "messages", "currentPage"),
    "admin_inbox.txt": (ConversationSummary, "messages", "currentPage"),
    "bearer_inbox.txt": (ConversationSummary, "messages", "currentPage"),
    "page_past_last_inbox.txt": (ConversationSummary, "messages", "currentPage"),
    "notifications_poweruser.txt": (TorrentNotification, "results", "currentPages"),
    "notifications_two_filters.txt": (TorrentNotification, "results", "currentPages"),
    "notifications_poweruser_page99.txt": (
        TorrentNotification,
        "results",
        "currentPages",
    ),
}
LISTS = {
    "bookmarks_torrents.txt": (BookmarkedGroup, "bookmarks"),
    "admin_bookmarks_torrents.txt": (BookmarkedGroup, "bookmarks"),
    "bearer_bookmarks_torrents.txt": (BookmarkedGroup, "bookmarks"),
    "bookmarks_artists.txt": (BookmarkedArtist, "artists"),
}


def test_every_recorded_success_is_covered() -> None:
    successes = set()
    for path in FIXTURES.glob("*.txt"):
        text = path.read_text(errors="replace")
        if '{"status":"success"' in text and "### request" not in text:
            successes.add(path.name)
    assert successes == set(OBJECTS) | set(PAGES) | set(LISTS)


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_objects_parse_strictly(name: str) -> None:
    result = structure(STRICT, response_of(name), OBJECTS[name], "test")
    assert result is not None


@pytest.mark.parametrize("name", sorted(PAGES))
def test_pages_parse_strictly(name: str) -> None:
    item_type, items_key, page_key = PAGES[name]
    raw = response_of(name)
    page = structure_page(
        STRICT, raw, item_type, items_key=items_key, page_key=page_key, action="t"
    )
    assert len(page) == len(raw[items_key])
    assert page.current_page == raw[page_key]
    assert page.pages == raw["pages"]
    extra = set(raw) - {items_key, page_key, "pages", "numNew"}
    assert not extra, f"page keys the client drops: {extra}"


@pytest.mark.parametrize("name", sorted(LISTS))
def test_lists_parse_strictly(name: str) -> None:
    item_type, key = LISTS[name]
    raw = response_of(name)
    items = structure(STRICT, raw[key], tuple[item_type, ...], "t")
    assert len(items) == len(raw[key])


def test_strict_converter_rejects_unknown_keys_lenient_ignores_them() -> None:
    raw = response_of("usersearch.txt")["results"][0] | {"brandNew": 1}
    with pytest.raises(ResponseError, match="brandNew"):
        structure(STRICT, raw, UserSearchResult, "usersearch")
    assert structure(LENIENT, raw, UserSearchResult, "usersearch").user_id == 1


def test_index_cookie_and_token_only() -> None:
    full = structure(LENIENT, response_of("index.txt"), Index, "index")
    assert full.username == "labuser"
    assert full.id == 2
    assert full.userstats.ratio == -1
    assert full.userstats.required_ratio == 0
    assert full.userstats.class_name == "User"
    assert full.notifications.messages == 3
    assert full.passkey == "REDACTED5xxxxxxxxxxxxxxxxxxxxxxx"
    skeletal = structure(LENIENT, response_of("bearer_index.txt"), Index, "index")
    assert skeletal.username is None
    assert skeletal.authkey is None
    assert skeletal.passkey is None
    assert skeletal.userstats.class_name is None


def test_index_repr_hides_keys() -> None:
    index = structure(LENIENT, response_of("index.txt"), Index, "index")
    assert "REDACTED5" not in repr(index)
    assert "REDACTED0" not in repr(index)


def test_user_profile_fields() -> None:
    user = structure(LENIENT, response_of("user_id1.txt"), User, "user")
    assert user.username == "labadmin"
    assert user.avatar is None
    assert user.stats.joined_date == dt.datetime(2026, 11, 27, 2, 46, 50)
    assert user.personal.class_name == "Sysop"
    assert user.personal.passkey is None
    assert user.ranks.bounty == 100
    assert user.community.artists_added == 2


def test_community_stats_strings_commas_and_hidden() -> None:
    raw = {
        "leeching": 0,
        "seeding": "1,204",
        "snatched": "1,377",
        "usnatched": False,
        "downloaded": False,
        "udownloaded": "12",
        "seedingperc": 56.99999999999999,
    }
    stats = structure(STRICT, raw, CommunityStats, "community_stats")
    assert stats.leeching == 0
    assert stats.seeding == 1204
    assert stats.snatched == 1377
    assert stats.usnatched is None
    assert stats.downloaded is None
    assert stats.udownloaded == 12
    assert stats.seedingperc == pytest.approx(57)
    hidden = structure(
        STRICT, response_of("fail_community_stats_nonexistent.txt"), CommunityStats, "c"
    )
    assert hidden.seedingperc is None
    assert hidden.seeding == 0


def test_html_unescape_on_text_but_not_on_html_or_raw_fields() -> None:
    post = {
        "postId": 1,
        "topicId": 2,
        "threadTitle": "Mirror for GISAID? &quot;hCoV&quot; subsets &amp; more",
        "lastPostId": 3,
        "lastRead": 0,
        "locked": False,
        "sticky": False,
        "addedTime": "2021-01-09 14:02:11",
        "body": "<p>a &amp; b</p>",
        "bbbody": "Gr&uuml;&szlig;e &#10003; &lt;b&gt;",
        "editedUserId": 0,
        "editedTime": "",
        "editedUsername": "",
    }
    parsed = structure(STRICT, post, ForumPost, "userhistory")
    assert parsed.thread_title == 'Mirror for GISAID? "hCoV" subsets & more'
    assert parsed.body == "<p>a &amp; b</p>"
    assert parsed.bb_body == "Grüße ✓ <b>"
    assert parsed.edited_time is None
    assert parsed.edited_username is None
    conv = structure(
        STRICT,
        {
            "convId": 9,
            "subject": "Jim&eacute;nez &amp; co",
            "sticky": False,
            "messages": [
                {
                    "messageId": 1,
                    "senderId": 0,
                    "senderName": None,
                    "sentDate": "2021-01-15 21:13:52",
                    "avatar": None,
                    "bbBody": "raw &amp; stays raw",
                    "body": "x",
                }
            ],
        },
        Conversation,
        "inbox",
    )
    assert conv.subject == "Jiménez & co"
    assert conv.messages[0].bb_body == "raw &amp; stays raw"
    assert conv.messages[0].sender_name is None


def test_empty_array_where_object_expected() -> None:
    assert structure(STRICT, [], dict[str, Alert], "get_user_notifications") == {}
    with pytest.raises(ResponseError):
        structure(STRICT, [], Index, "index")


def test_user_recents_both_key_sets_and_null_artists() -> None:
    r1 = structure(STRICT, response_of("user_recents.txt"), UserRecents, "user_recents")
    assert r1.snatches is not None
    assert r1.snatches[0].name == "Human chr21 reads"
    assert [g.name for g in r1.uploads or ()] == ["SARS-CoV-2 isolates"]
    assert [a.name for a in r1.snatches[0].artists] == ["Jane Q. Sequencer"]
    assert r1.uploads is not None
    assert [a.id for a in r1.uploads[0].artists] == [1, 2]
    r1a = {
        "snatches": [
            {
                "id": 112,
                "title": "Arabidopsis &amp; roots",
                "picture": "https://i.example/a.png",
                "artists": [None],
                "ID": 0,
            }
        ],
        "uploads": "hidden",
    }
    parsed = structure(STRICT, r1a, UserRecents, "user_recents")
    assert parsed.snatches is not None
    group = parsed.snatches[0]
    assert (group.id, group.name, group.artists) == (112, "Arabidopsis & roots", ())
    assert group.wiki_image == "https://i.example/a.png"
    assert parsed.uploads is None


def test_user_recents_artist_names_are_not_unescaped() -> None:
    raw = {
        "snatches": [
            {
                "ID": 1,
                "Name": "n",
                "WikiImage": "w",
                "artists": [[{"id": 301, "name": "Ana &amp; Jiménez"}]],
            }
        ],
        "uploads": [],
    }
    parsed = structure(STRICT, raw, UserRecents, "user_recents")
    assert parsed.snatches is not None
    assert parsed.snatches[0].artists[0].name == "Ana &amp; Jiménez"


@pytest.mark.parametrize(
    ("value", "ok"),
    [("false", False), ("true", False), (True, False), (1.5, False), ("1,204", True)],
)
def test_int_fields_never_coerce_silently(value: object, ok: bool) -> None:
    raw = {"artistId": value, "artistName": "x"}
    if ok:
        assert structure(STRICT, raw, BookmarkedArtist, "b").artist_id == 1204
    else:
        with pytest.raises(ResponseError):
            structure(STRICT, raw, BookmarkedArtist, "b")


@pytest.mark.parametrize("value", ["false", "true", 2, None, "yes"])
def test_bool_fields_reject_non_booleans(value: object) -> None:
    raw = response_of("usersearch.txt")["results"][0] | {"donor": value}
    with pytest.raises(ResponseError):
        structure(STRICT, raw, UserSearchResult, "usersearch")


def test_str_fields_reject_null_and_numbers() -> None:
    raw = response_of("usersearch.txt")["results"][0] | {"username": None}
    with pytest.raises(ResponseError, match="username"):
        structure(STRICT, raw, UserSearchResult, "usersearch")


def test_float_sizes_and_exponent_form() -> None:
    group = json.loads(
        '{"id":1,"name":"n","year":2020,"accession":"","tagList":"a_b c",'
        '"vanityHouse":false,"picture":"","torrents":[{"id":2,"groupId":1,'
        '"platform":"Illumina","fileCount":1,"freeTorrent":false,"size":1.0e+17,'
        '"leechers":0,"seeders":0,"snatched":0,"time":"2020-11-02 17:45:10",'
        '"hasFile":2}]}'
    )
    parsed = structure(STRICT, group, BookmarkedGroup, "bookmarks")
    assert parsed.torrents[0].size == 10**17
    assert parsed.accession is None
    assert parsed.picture is None


def test_wrong_shapes_become_response_errors() -> None:
    for bad in (None, "x", 5, [1], {"status": "?"}):
        with pytest.raises(ResponseError):
            structure(LENIENT, bad, User, "user")
    with pytest.raises(ResponseError):
        structure_page(
            LENIENT,
            {"currentPage": 1, "pages": 1, "results": {"a": 1}},
            UserSearchResult,
            items_key="results",
            page_key="currentPage",
            action="usersearch",
        )


# --- quirks whose mutants once survived ----------------------------------------------


def test_mysql_zero_date_is_none() -> None:
    raw = response_of("userhistory_posts.txt")["threads"][0]
    raw["editedTime"] = "0000-00-00 00:00:00"
    raw["addedTime"] = "2021-01-09 14:02:11"
    post = LENIENT.structure(raw, ForumPost)
    assert post.edited_time is None
    assert post.added_time == dt.datetime(2021, 1, 9, 14, 2, 11)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "inf"])
def test_floats_must_be_finite(value: object) -> None:
    raw = response_of("index.txt")
    raw["userstats"]["ratio"] = value
    with pytest.raises(ResponseError, match="ratio"):
        structure(LENIENT, raw, Index, "index")


@pytest.mark.parametrize("value", [{"0": {"messageId": 1}}, "abc"])
def test_tuple_fields_need_a_list(value: object) -> None:
    raw = response_of("inbox_viewconv.txt")
    raw["messages"] = value
    with pytest.raises(ResponseError, match=r"\$\.messages"):
        structure(LENIENT, raw, Conversation, "inbox")


def test_profile_text_is_html_and_left_as_sent() -> None:
    raw = response_of("user_id1.txt")
    raw["profileText"] = "<p>Tom &amp; Jerry &lt;3</p>"
    user = LENIENT.structure(raw, User)
    assert user.profile_text == "<p>Tom &amp; Jerry &lt;3</p>"


@pytest.mark.parametrize("value", ["1,2,3", "12,34", "1,2345", ",123"])
def test_badly_grouped_thousands_are_not_numbers(value: str) -> None:
    raw = response_of("community_stats.txt")
    raw["seeding"] = value
    with pytest.raises(ResponseError, match="seeding"):
        structure(LENIENT, raw, CommunityStats, "community_stats")


# --- the inline model hooks against cattrs' own ---------------------------------------

# cattrs' generated hooks with the same field hooks: what the inline hooks must equal.
ORACLE = make_converter(detailed=True)
STRICT_ORACLE = make_converter(strict=True, detailed=True)
# A value of every kind the server sends somewhere (and a few it should not).
ODD_VALUES = [
    0,
    1,
    -1,
    2**70,
    1.0,
    1.5,
    -0.0,
    float("nan"),
    float("inf"),
    True,
    False,
    None,
    "",
    "0",
    "1",
    "12",
    "1,204",
    "1,204.5",
    " 7 ",
    "abc",
    "a &amp; b",
    "&lt;i&gt;",
    "2021-01-16 08:41:09",
    "0000-00-00 00:00:00",
    "hidden",
    [],
    [1],
    {},
    {"a": 1},
]


def _recorded() -> list[tuple[str, object, object]]:
    """(name, target type, raw value) of every recorded success."""
    cases: list[tuple[str, object, object]] = [
        (name, cl, response_of(name)) for name, cl in OBJECTS.items()
    ]
    for name, (item_type, items_key, _) in PAGES.items():
        cases.append((name, tuple[item_type, ...], response_of(name)[items_key]))  # type: ignore[valid-type]
    for name, (item_type, key) in LISTS.items():
        cases.append((name, tuple[item_type, ...], response_of(name)[key]))  # type: ignore[valid-type]
    return cases


def _leaves(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Paths to every value inside ``value`` (the first two items of a list)."""
    if isinstance(value, dict):
        inner = [p for k, v in value.items() for p in _leaves(v, (*path, k))]
    elif isinstance(value, list):
        inner = [p for i, v in enumerate(value[:2]) for p in _leaves(v, (*path, i))]
    else:
        inner = []
    return [*inner, path]


def _at(value: object, path: tuple[object, ...]) -> object:
    for step in path:
        value = value[step]  # type: ignore[index]
    return value


def _replaced(value: object, path: tuple[object, ...], new: object) -> object:
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    _at(copy, path[:-1])[path[-1]] = new  # type: ignore[index]
    return copy


def _outcome(conv: object, raw: object, cl: object) -> object:
    try:
        return ("ok", structure(conv, raw, cl, "t"))  # type: ignore[arg-type]
    except ResponseError:
        return ("error",)


CASE_IDS = {"ids": lambda c: f"{c[0]}-{getattr(c[1], '__name__', 'items')}"}


@pytest.mark.parametrize("case", _recorded(), **CASE_IDS)
def test_inline_hooks_accept_and_refuse_what_cattrs_does(
    case: tuple[str, object, object],
) -> None:
    _, cl, raw = case
    assert _outcome(LENIENT, raw, cl)[0] == "ok"
    for path in _leaves(raw):
        for new in ODD_VALUES:
            changed = _replaced(raw, path, new)
            assert _outcome(LENIENT, changed, cl) == _outcome(ORACLE, changed, cl), (
                path,
                new,
            )


@pytest.mark.parametrize("case", _recorded(), **CASE_IDS)
def test_inline_hooks_refuse_unknown_keys_when_strict(
    case: tuple[str, object, object],
) -> None:
    _, cl, raw = case
    objects = [path for path in _leaves(raw) if isinstance(_at(raw, path), dict)]
    for path in objects:
        extended = _replaced(raw, (*path, "brandNewKey"), 1)
        assert _outcome(STRICT, extended, cl) == _outcome(STRICT_ORACLE, extended, cl)
        assert _outcome(LENIENT, extended, cl) == _outcome(ORACLE, extended, cl)

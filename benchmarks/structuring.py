"""Structuring cost: the cattrs converter vs hand-written dict-to-object functions.

The hand-written functions do the same work (HTML unescaping, dates, ``""`` → None,
numbers) and build the same frozen models, so the ratio is the price of the
generic converter. Target: ratio <= 1.5.

    python benchmarks/structuring.py [--number 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import timeit
from pathlib import Path
from typing import Any

from biotorrents_async import (
    ConversationSummary,
    User,
    UserCommunity,
    UserPersonal,
    UserRanks,
    UserStats,
)
from biotorrents_async._converter import make_converter, structure_page

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "real-server"


def _text(v: str) -> str:
    return html.unescape(v) if "&" in v else v


def _opt(v: str | None) -> str | None:
    return None if not v else _text(v)


def _date(v: str) -> dt.datetime | None:
    return dt.datetime.fromisoformat(v) if v else None


def hand_inbox(raw: dict[str, Any]) -> tuple[ConversationSummary, ...]:
    return tuple(
        ConversationSummary(
            conv_id=int(m["convId"]),
            subject=_text(m["subject"]),
            unread=bool(m["unread"]),
            sticky=bool(m["sticky"]),
            forwarded_id=int(m["forwardedId"]),
            forwarded_name=_opt(m["forwardedName"]),
            sender_id=int(m["senderId"]),
            username=_opt(m["username"]),
            avatar=_opt(m.get("avatar")),
            donor=bool(m["donor"]),
            warned=bool(m["warned"]),
            enabled=bool(m["enabled"]),
            date=_date(m["date"]),
        )
        for m in raw["messages"]
    )


def hand_user(raw: dict[str, Any]) -> User:
    s, r, p, c = raw["stats"], raw["ranks"], raw["personal"], raw["community"]
    return User(
        username=_text(raw["username"]),
        avatar=_opt(raw["avatar"]),
        is_friend=bool(raw["isFriend"]),
        profile_text=raw["profileText"],
        stats=UserStats(
            joined_date=_date(s["joinedDate"]),
            last_access=_date(s["lastAccess"]),
            uploaded=int(s["uploaded"]),
            downloaded=int(s["downloaded"]),
            ratio=float(s["ratio"]),
            required_ratio=float(s["requiredRatio"]),
        ),
        ranks=UserRanks(**{k: int(v) for k, v in r.items()}),
        personal=UserPersonal(
            class_name=_opt(p["class"]),
            paranoia=int(p["paranoia"]),
            paranoia_text=_text(p["paranoiaText"]),
            donor=bool(p["donor"]),
            warned=bool(p["warned"]),
            enabled=bool(p["enabled"]),
            passkey=_opt(p["passkey"]),
        ),
        community=UserCommunity(
            posts=c["posts"],
            torrent_comments=c["torrentComments"],
            artist_comments=c["artistComments"],
            collage_comments=c["collageComments"],
            request_comments=c["requestComments"],
            collages_started=c["collagesStarted"],
            collages_contrib=c["collagesContrib"],
            requests_filled=c["requestsFilled"],
            bounty_earned=c["bountyEarned"],
            requests_voted=c["requestsVoted"],
            bounty_spent=c["bountySpent"],
            uploaded=c["uploaded"],
            groups=c["groups"],
            seeding=c["seeding"],
            leeching=c["leeching"],
            snatched=c["snatched"],
            invited=c["invited"],
            artists_added=c["artistsAdded"],
        ),
    )


def inbox_page() -> dict[str, Any]:
    """A full page of 25 conversations, escaped like the server sends them."""
    one = json.loads(_body("inbox.txt"))["response"]["messages"][0]
    items = []
    for n in range(25):
        item = dict(one, convId=n, subject=f"Re: Bruker raw files &amp; converters {n}")
        items.append(item)
    return {"currentPage": 1, "pages": 3, "messages": items}


def _body(name: str) -> str:
    text = (FIXTURES / name).read_bytes().decode()
    return text.split("\r\n\r\n", 1)[1].strip()


def main(number: int, rounds: int) -> dict[str, float]:
    conv = make_converter()
    page = inbox_page()
    user = json.loads(_body("user_id1.txt"))["response"]
    assert hand_user(user) == conv.structure(user, User)
    ours_page = structure_page(
        conv,
        page,
        ConversationSummary,
        items_key="messages",
        page_key="currentPage",
        action="inbox",
    )
    assert hand_inbox(page) == tuple(ours_page.items)

    def best(fn: Any) -> float:
        return min(timeit.repeat(fn, number=number, repeat=rounds)) / number

    results = {
        "inbox_hand_us": best(lambda: hand_inbox(page)) * 1e6,
        "inbox_cattrs_us": best(
            lambda: structure_page(
                conv,
                page,
                ConversationSummary,
                items_key="messages",
                page_key="currentPage",
                action="inbox",
            )
        )
        * 1e6,
        "user_hand_us": best(lambda: hand_user(user)) * 1e6,
        "user_cattrs_us": best(lambda: conv.structure(user, User)) * 1e6,
    }
    results["inbox_ratio"] = results["inbox_cattrs_us"] / results["inbox_hand_us"]
    results["user_ratio"] = results["user_cattrs_us"] / results["user_hand_us"]
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    r = main(args.number, args.rounds)
    for what in ("inbox", "user"):
        ratio = r[f"{what}_ratio"]
        verdict = "met" if ratio <= 1.5 else "NOT met"
        print(
            f"{what:5} page/profile: hand-written {r[f'{what}_hand_us']:7.1f} us, "
            f"converter {r[f'{what}_cattrs_us']:7.1f} us, ratio {ratio:.2f}x "
            f"(target <= 1.5x: {verdict})"
        )
    Path(__file__).with_suffix(".last.json").write_text(json.dumps(r))

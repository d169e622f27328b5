"""New items for a running fake, so that a bot watching it has something to see."""

from __future__ import annotations

from ._data import FakeData

__all__ = ["add_live_item"]

_SUBJECTS = ["New data set request", "Seeding question", "Mirror offer"]


def add_live_item(data: FakeData, count: int, user_id: int = 2) -> str:
    """Add the ``count``-th live item for ``user_id``; return what it was.

    In turn: a conversation from another user, a reply, a torrent-filter hit
    and an alert-making item, which is a forum quote of ``user_id`` and a news
    post by turns. The reply goes to the conversation of ``user_id`` created
    just before the newest one (by id), from its other participant: after the
    first round, the live conversation of the round before. Quotes collapse
    as on the site: the first unread one shows ``New quote``, the second
    changes it to ``New quotes``, later ones show nothing new until
    ``Quotes`` is cleared; each news post replaces the ``News`` alert.

    Returns:
        ``"conversation"``, ``"reply"``, ``"torrent"``, ``"quote"`` or ``"news"``.
    """
    other = next((u for u in data.users if u not in (0, 1, user_id)), 1)
    kind = ("conversation", "reply", "torrent", "alert")[count % 4]
    mine = [c for c in data.conversations.values() if user_id in c.participants]
    if kind == "reply" and len(mine) > 1:
        # Not the conversation added just before: dates have whole seconds, and
        # a reply in the same second as the last message moves nothing.
        older = sorted(mine, key=lambda c: c.id)[-2]
        sender = next(p for p in older.participants if p != user_id)
        data.add_reply(older, sender=sender, body=f"Live reply {count}")
    elif kind == "torrent":
        group = data.add_group(f"Live data set {count}", tags=["live"])
        data.add_notification(user_id, data.add_torrent(group, uploader=other))
    elif kind == "alert":
        if (count // 4) % 2 == 0:
            data.add_quote(user_id, by=other, body=f"Live quote {count}")
            kind = "quote"
        else:
            data.add_news(f"Live news {count}")
            kind = "news"
    else:
        kind = "conversation"
        subject = f"{_SUBJECTS[count % len(_SUBJECTS)]} ({count})"
        data.add_conversation(subject, sender=other, recipient=user_id)
    return kind

"""New items for a running fake, so that a bot watching it has something to see."""

from __future__ import annotations

from ._data import FakeData

__all__ = ["add_live_item"]

_SUBJECTS = ["New data set request", "Seeding question", "Mirror offer"]
_ALERTS = [
    ("Quotes", "New quote", "userhistory.php?action=quote_notifications"),
    ("Subscriptions", "New subscription", "userhistory.php?action=subscriptions"),
]


def add_live_item(data: FakeData, count: int, user_id: int = 2) -> str:
    """Add the ``count``-th live item for ``user_id``; return what it was.

    In turn: a conversation from another user, a reply to it, a torrent-filter
    hit and a pop-up alert.
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
        alert_kind, message, url = _ALERTS[(count // 4) % len(_ALERTS)]
        data.users[user_id].alerts.pop(alert_kind, None)
        data.add_alert(user_id, alert_kind, f"{message} ({count})", url)
    else:
        kind = "conversation"
        subject = f"{_SUBJECTS[count % len(_SUBJECTS)]} ({count})"
        data.add_conversation(subject, sender=other, recipient=user_id)
    return kind

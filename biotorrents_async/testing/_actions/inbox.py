"""``action=inbox``: the conversation list and ``type=viewconv``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from .._data import FakeConversation, FakeData
from .._envelope import (
    INTEGER,
    Call,
    Reply,
    Viewer,
    error_page_reply,
    page_count,
    page_number,
    sql_like,
    success,
)
from .._php import display_str, error_page, json_body, php_date, render

__all__ = ["inbox", "unread_messages"]

_Row = tuple[FakeConversation, int, dt.datetime]


def unread_messages(data: FakeData, user_id: int) -> int:
    """Conversations with a received message that ``user_id`` has not read."""
    return sum(
        1
        for conv in data.conversations.values()
        if user_id in conv.unread_for and _received(conv, user_id)
    )


def _received(conv: FakeConversation, user_id: int) -> bool:
    return any(m.sender_id != user_id for m in conv.messages)


async def inbox(data: FakeData, viewer: Viewer, call: Call) -> Reply:
    """List the inbox or sentbox, or show one conversation (``type=viewconv``)."""
    kind = call.query.get("type", "inbox")
    if kind == "viewconv":
        return _viewconv(data, viewer, call)
    if kind not in ("inbox", "sentbox"):
        return _html_failure(viewer)
    page = page_number(call.query.get("page"))
    if page is None:
        return error_page_reply(viewer, 500, "Internal Server Error")
    me = viewer.id
    rows = []
    for conv in data.conversations.values():
        if me not in conv.participants:
            continue
        mine = [m for m in conv.messages if m.sender_id == me]
        theirs = [m for m in conv.messages if m.sender_id != me]
        shown = theirs if kind == "inbox" else mine
        if not shown:
            continue
        other_id = next((p for p in conv.participants if p != me), 0)
        rows.append((conv, other_id, max(m.sent for m in shown)))
    rows = _search(data, rows, call.query)
    unread_first = call.query.get("sort") == "unread"
    rows.sort(
        key=lambda r: (
            r[0].sticky,
            unread_first and me in r[0].unread_for,
            r[2],
            r[0].id,
        ),
        reverse=True,
    )
    chunk = rows[(page - 1) * 25 : page * 25]
    messages = []
    for conv, other_id, date in chunk:
        other = data.users.get(other_id)
        messages.append(
            {
                "convId": conv.id,
                "subject": display_str(conv.subject),
                "unread": me in conv.unread_for,
                "sticky": conv.sticky,
                "forwardedId": conv.forwarded_id,
                "forwardedName": _name(data, conv.forwarded_id),
                "senderId": other_id if other else 0,
                "username": display_str(other.username) if other else "",
                "avatar": display_str(other.avatar) if other else "",
                "donor": other.donor if other else False,
                "warned": False,  # a datetime compared loosely with 1
                "enabled": other.enabled if other else True,
                "date": php_date(date),
            }
        )
    return success(
        {"currentPage": page, "pages": page_count(len(rows), 25), "messages": messages},
        info=False,
    )


def _html_failure(viewer: Viewer, status: int = 200) -> Reply:
    """``{"status":"failure"}`` then the error page (inbox, viewconv)."""
    page = error_page(400, "Bad Request", authkey=viewer.user.authkey)
    body = json_body({"status": "failure"}) + b"\n" + page.encode()
    return Reply(status, body, outcome="failure")


def _name(data: FakeData, user_id: int) -> str:
    user = data.users.get(user_id) if user_id else None
    return display_str(user.username) if user else ""


def _search(data: FakeData, rows: list[_Row], query: Mapping[str, str]) -> list[_Row]:
    term = query.get("search", "")
    how = query.get("searchtype")
    if not term or how not in ("user", "subject", "message"):
        return rows  # search without a valid searchtype is ignored
    if how == "message":
        return []  # bodies are stored encrypted: nothing ever matches
    if how == "user":
        return [
            r
            for r in rows
            if (u := data.users.get(r[1]))
            and sql_like(term, u.username, anywhere=False)
        ]
    words = term.lower().split()
    return [r for r in rows if all(w in r[0].subject.lower() for w in words)]


def _viewconv(data: FakeData, viewer: Viewer, call: Call) -> Reply:
    raw = call.query.get("id", "")
    conv = (
        data.conversations.get(int(raw))
        if INTEGER.fullmatch(raw) and int(raw) > 0
        else None
    )
    if conv is None or viewer.id not in conv.participants:
        return _html_failure(viewer)
    conv.unread_for.discard(viewer.id)  # state change on GET
    subject = display_str(conv.subject)
    if conv.forwarded_id:
        subject += f" (Forwarded to {_name(data, conv.forwarded_id)})"
    messages = []
    for n, msg in enumerate(conv.messages):
        sender = data.users.get(msg.sender_id)
        if msg.sender_id == 0:
            name: str | None = "System"
            avatar: str | None = ""
        elif sender is None:
            name = avatar = None
        else:
            name, avatar = display_str(sender.username), display_str(sender.avatar)
        messages.append(
            {
                "messageId": conv.id * 100 + n,
                "senderId": msg.sender_id,
                "senderName": name,
                "sentDate": php_date(msg.sent),
                "avatar": avatar,
                "bbBody": msg.body,  # decrypted source: raw, not escaped
                "body": render(msg.body),
            }
        )
    return success(
        {
            "convId": conv.id,
            "subject": subject,
            "sticky": conv.sticky,
            "messages": messages,
        },
        info=False,
    )

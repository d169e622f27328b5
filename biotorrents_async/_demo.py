"""``biotorrents demo``: a tour of every endpoint against an in-process fake server."""

from __future__ import annotations

import time
from typing import TextIO

from ._client import BioTorrentsClient
from ._output import describe_rule, print_record, print_table
from ._policy import RateLimit, RetryPolicy
from .testing import FakeBioTorrents, Fault


def _heading(text: str, out: TextIO) -> None:
    print(f"\n== {text} ==", file=out)


async def run_demo(rule: RateLimit | None, out: TextIO) -> None:
    """Start the fake, tour it with the real client, print a summary."""
    started = time.monotonic()
    async with FakeBioTorrents(rate_limit=rule) as fake:
        print(
            f"Fake BioTorrents.de running at {fake.url} "
            f"(rate limit: {describe_rule(rule)})",
            file=out,
        )
        # Faults the client must ride out: a proxy 502, a truncated body, a
        # connection dropped after the server did its work and one dropped
        # before, and a server-side "rate limit exceeded" that the client's
        # pacing alone would never cause. Each costs one retry, in a place of
        # its own.
        fake.faults.schedule(
            None,
            None,
            Fault.HTTP_502,
            None,
            Fault.TRUNCATE,
            None,
            Fault.DROP_AFTER,
            Fault.DROP,
            None,
            Fault.RATE_LIMIT,
        )
        async with BioTorrentsClient(
            fake.token,
            cookies=fake.cookies,
            base_url=fake.url,
            rate_limit=rule,
            retry=RetryPolicy(attempts=4, backoff_initial=0.05, backoff_max=0.5),
        ) as client:
            await _tour(client, out)
            stats = client.stats
    elapsed = time.monotonic() - started
    rejected = sum(1 for r in fake.requests if r.outcome == "rate-limited")
    injected = ", ".join(f"{n} x {k}" for k, n in fake.faults.injected.items())
    _heading("Summary", out)
    print(f"requests sent by the client:   {stats['requests']}", file=out)
    print(f"requests the server received:  {len(fake.requests)}", file=out)
    print(f"faults injected:               {injected or 'none'}", file=out)
    print(
        f"retries after faults:          "
        f"{stats['retries'] - stats['rate_limit_pauses']}",
        file=out,
    )
    print(
        f"server rate-limit answers:     {rejected} "
        f"(all injected; each paused the client for one window)",
        file=out,
    )
    print(f"waits for the client's pacing: {stats['throttle_waits']}", file=out)
    print(f"elapsed:                       {elapsed:.1f}s", file=out)


async def _tour(client: BioTorrentsClient, out: TextIO) -> None:
    _heading("index: who am I", out)
    me = await client.index()
    print(
        f"{me.username} (id {me.id}), {me.userstats.class_name}, "
        f"ratio {me.userstats.ratio}, {me.notifications.messages} unread",
        file=out,
    )

    _heading(f"users.get({me.id})", out)
    user = await client.users.get(me.id)
    print(
        f"{user.username}: joined {user.stats.joined_date:%Y-%m-%d}, "
        f"{user.community.posts} posts, avatar {user.avatar}",
        file=out,
    )

    _heading("users.iter_search('lab'): every page", out)
    found = [u async for u in client.users.iter_search("lab")]
    print_table(found[:6], out)
    print(f"... {len(found)} users in all", file=out)

    _heading(f"users.community_stats({me.id})", out)
    print_record(await client.users.community_stats(me.id), out)

    _heading(f"users.recents({me.id}, limit=3)", out)
    recents = await client.users.recents(me.id, limit=3)
    for group in recents.snatches or ():
        names = ", ".join(a.name for a in group.artists)
        print(f"snatched {group.name} — {names}", file=out)

    _heading(f"users.posts({me.id})", out)
    posts = await client.users.posts(me.id)
    print_table(list(posts.items[:5]), out)
    print(f"page {posts.current_page} of {posts.pages}", file=out)

    _heading("inbox.iter_conversations(): every page", out)
    convs = [c async for c in client.inbox.iter_conversations()]
    print_table(convs[:8], out)
    print(
        f"... {len(convs)} conversations, {sum(c.unread for c in convs)} unread",
        file=out,
    )

    _heading(f"inbox.conversation({convs[0].conv_id})", out)
    conv = await client.inbox.conversation(convs[0].conv_id)
    print(f"{conv.subject}", file=out)
    for msg in conv.messages:
        print(f"  {msg.sender_name}: {msg.bb_body}", file=out)

    _heading("bookmarks.torrents() and .artists()", out)
    print_table(list(await client.bookmarks.torrents()), out)
    print_table(list(await client.bookmarks.artists()), out)

    _heading("notifications.torrents()", out)
    hits = await client.notifications.torrents()
    print_table(list(hits.items[:5]), out)
    print(f"page {hits.current_page} of {hits.pages}", file=out)

    _heading("notifications.alerts(), clear('Inbox'), alerts()", out)
    alerts = await client.notifications.alerts()
    print_table(list(alerts.values()), out, keys=list(alerts))
    await client.notifications.clear("Inbox")
    after = await client.notifications.alerts()
    print(f"after clearing Inbox: {', '.join(after) or 'nothing pending'}", file=out)

"""The README's example: a bot author's test, using the pytest plugin's fixtures."""

from biotorrents_async import BioTorrentsClient


async def test_my_bot_sees_unread_mail(biotorrents_client: BioTorrentsClient) -> None:
    unread = [
        c async for c in biotorrents_client.inbox.iter_conversations() if c.unread
    ]
    assert unread

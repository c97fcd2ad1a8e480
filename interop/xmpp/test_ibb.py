"""XEP-0047 In-Band Bytestreams through Postern: slixmpp's plugin on both ends, 256 KiB each
way, IQ-carried (every block acknowledged end to end) and message-carried. Postern only
routes these stanzas; the test proves nothing on the path (stanza size cap, rate limits,
the archive, carbons) breaks or reorders a real transfer."""

from __future__ import annotations

import asyncio
import os

import pytest

from clients import Client, TIMEOUT


@pytest.mark.parametrize("use_messages", [False, True], ids=["iq", "message"])
async def test_ibb_carries_256_kib_intact(server, use_messages):
    sender = await Client(server, "alice", resource="send", extra_plugins=("xep_0047",)).login()
    receiver = await Client(server, "bob", resource="recv", extra_plugins=("xep_0047",)).login()
    try:
        # The receiving user said yes (a client would ask them).
        receiver.plugin["xep_0047"].auto_accept = True
        started: asyncio.Queue = asyncio.Queue()
        receiver.add_event_handler("ibb_stream_start", started.put_nowait)
        data = os.urandom(256 * 1024)
        stream = await sender.plugin["xep_0047"].open_stream(
            receiver.boundjid, block_size=4096, use_messages=use_messages, timeout=TIMEOUT
        )
        incoming = await asyncio.wait_for(started.get(), TIMEOUT)
        assert incoming.peer_jid == sender.boundjid
        gathered = asyncio.ensure_future(incoming.gather(timeout=60))
        await asyncio.wait_for(stream.sendall(data, timeout=TIMEOUT), 60)
        await asyncio.wait_for(stream.close(timeout=TIMEOUT), TIMEOUT)
        received = await asyncio.wait_for(gathered, 60)
        assert received == data, (len(received), len(data))
        # Message-carried blocks are data, not chat: nothing with a body reached the receiver.
        while not receiver.messages.empty():
            assert not receiver.messages.get_nowait()["body"]
    finally:
        await sender.logout()
        await receiver.logout()

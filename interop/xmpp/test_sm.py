"""XEP-0198 Stream Management with slixmpp's own plugin (xep_0198): alice's connection is cut
without a stream close, slixmpp resumes the session on a new connection, and every message in
either direction arrives exactly once: what bob sent while alice was away is redelivered from
the server's queue, and what alice sent just before the cut is resent by slixmpp only if the
server's `h` says it was not handled."""

from __future__ import annotations

import asyncio

from clients import TIMEOUT, Client, expect, expect_none


async def test_a_cut_session_is_resumed_and_nothing_is_lost_or_doubled(server):
    alice = Client(server, "alice", resource="phone", extra_plugins=("xep_0198",))
    enabled: asyncio.Queue = asyncio.Queue()
    resumed: asyncio.Queue = asyncio.Queue()
    alice.add_event_handler("sm_enabled", enabled.put_nowait)
    alice.add_event_handler("session_resumed", resumed.put_nowait)
    await alice.login()
    bob = await Client(server, "bob", resource="desk").login()
    try:
        sm = await expect(enabled, what="<enabled/>")
        assert sm["resume"], sm
        bob.send_message(mto="alice@localhost/phone", mbody="before the cut", mtype="chat")
        await expect(alice.messages, lambda m: m["body"] == "before the cut")

        alice.send_message(mto="bob@localhost/desk", mbody="sent as the network died", mtype="chat")
        alice.abort()  # no </stream:stream>: the network is gone
        await alice.wait_disconnected()
        bob.send_message(mto="alice@localhost/phone", mbody="while away", mtype="chat")
        # bob's message is still accepted: alice's session is kept, not gone.
        await expect_none(bob.message_errors, within=1.0)

        alice.connect(server.host, alice.port)
        await asyncio.wait_for(resumed.get(), TIMEOUT)
        await expect(alice.messages, lambda m: m["body"] == "while away", what="redelivery")
        await expect(bob.messages, lambda m: m["body"] == "sent as the network died")
        # Exactly once, in both directions.
        await expect_none(
            alice.messages, lambda m: m["body"] in ("before the cut", "while away"), within=1.5
        )
        await expect_none(bob.messages, lambda m: m["body"] == "sent as the network died", within=0.5)
        # The resumed session is the same resource, still online.
        assert str(alice.boundjid) == "alice@localhost/phone"
        bob.send_message(mto="alice@localhost/phone", mbody="after", mtype="chat")
        await expect(alice.messages, lambda m: m["body"] == "after")
    finally:
        for c in (alice, bob):
            await c.logout()

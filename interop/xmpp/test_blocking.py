"""XEP-0191 Blocking Command with slixmpp's own plugin (xep_0191): alice blocks bob; bob's
messages get the error an absent user's would, alice's to bob are refused as blocked, the
list is what she set, and a second resource of hers that retrieved it hears the change."""

from __future__ import annotations

import asyncio

from clients import Client, expect


def error_of(m) -> str:
    return m["error"]["condition"]


async def test_block_and_unblock_a_contact(server):
    alice = await Client(server, "alice", resource="laptop").login()
    other = await Client(server, "alice", resource="phone").login()
    bob = await Client(server, "bob", resource="desk").login()
    pushes: asyncio.Queue = asyncio.Queue()
    other.add_event_handler("blocked", pushes.put_nowait)
    try:
        features = (await alice.plugin["xep_0030"].get_info(jid="localhost"))["disco_info"]["features"]
        assert "urn:xmpp:blocking" in features
        assert await other.plugin["xep_0191"].get_blocked_jids() == set()

        await alice.plugin["xep_0191"].block(["bob@localhost"])
        await expect(pushes, what="blocklist push to the other resource")
        assert {j.bare for j in await alice.plugin["xep_0191"].get_blocked_jids()} == {"bob@localhost"}

        bob.send_message(mto="alice@localhost", mbody="are you there?", mtype="chat")
        err = await expect(bob.message_errors, what="bob's bounce")
        assert error_of(err) == "service-unavailable"
        assert "blocking" not in str(err)

        alice.send_message(mto="bob@localhost/desk", mbody="you are blocked", mtype="chat")
        err = await expect(alice.message_errors, what="alice's refusal")
        assert error_of(err) == "not-acceptable"
        assert "urn:xmpp:blocking:errors" in str(err)

        await alice.plugin["xep_0191"].unblock(["bob@localhost"])
        bob.send_message(mto="alice@localhost/laptop", mbody="now?", mtype="chat")
        await expect(alice.messages, lambda m: m["body"] == "now?", what="bob after unblock")
    finally:
        for c in (alice, other, bob):
            await c.logout()

"""XEP-0280 Message Carbons with slixmpp's own plugin (xep_0280): two resources of alice enable
carbons; what bob sends to one and what one sends to bob shows up on the other. slixmpp only
accepts a carbon whose outer `from` is its own bare JID, so a forged copy would not count."""

from __future__ import annotations

import asyncio

from clients import Client, expect, expect_none


async def test_two_resources_with_carbons_see_both_sides(server):
    laptop = await Client(server, "alice", resource="laptop").login()
    phone = await Client(server, "alice", resource="phone").login()
    bob = await Client(server, "bob", resource="desk").login()
    received: asyncio.Queue = asyncio.Queue()
    sent: asyncio.Queue = asyncio.Queue()
    phone.add_event_handler("carbon_received", received.put_nowait)
    phone.add_event_handler("carbon_sent", sent.put_nowait)
    try:
        assert "urn:xmpp:carbons:2" in (await laptop.plugin["xep_0030"].get_info(jid="localhost"))[
            "disco_info"
        ]["features"]
        await laptop.plugin["xep_0280"].enable()
        await phone.plugin["xep_0280"].enable()

        bob.send_message(mto="alice@localhost/laptop", mbody="to the laptop", mtype="chat")
        await expect(laptop.messages, lambda m: m["body"] == "to the laptop", what="original")
        copy = await expect(received, lambda m: "to the laptop" in str(m), what="received carbon")
        assert copy["from"] == "alice@localhost"
        assert copy["carbon_received"]["from"] == "bob@localhost/desk"

        laptop.send_message(mto="bob@localhost/desk", mbody="from the laptop", mtype="chat")
        await expect(bob.messages, lambda m: m["body"] == "from the laptop", what="bob's copy")
        copy = await expect(sent, lambda m: "from the laptop" in str(m), what="sent carbon")
        assert copy["carbon_sent"]["to"] == "bob@localhost/desk"

        # After disabling, nothing more arrives on the phone.
        await phone.plugin["xep_0280"].disable()
        bob.send_message(mto="alice@localhost/laptop", mbody="not for the phone", mtype="chat")
        await expect(laptop.messages, lambda m: m["body"] == "not for the phone")
        await expect_none(received, lambda m: "not for the phone" in str(m), within=1.0)
    finally:
        for c in (laptop, phone, bob):
            await c.logout()

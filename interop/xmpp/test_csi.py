"""XEP-0352 Client State Indication with slixmpp's own plugin (xep_0352): the server offers
the stream feature (slixmpp only enables CSI when it sees it); while alice is inactive, bob's
presence updates wait — only the newest arrives, with his next message — and messages with a
body are never held."""

from __future__ import annotations

from clients import Client, expect


async def test_inactive_client_gets_messages_and_the_newest_presence(server):
    alice = await Client(server, "alice", resource="phone").login()
    bob = await Client(server, "bob", resource="desk").login()
    try:
        assert alice.plugin["xep_0352"].enabled, "the csi stream feature was not offered"
        alice.plugin["xep_0352"].send_inactive()
        await alice.plugin["xep_0199"].ping(jid="localhost", timeout=10)

        for status in ("one", "two", "three"):
            bob.send_presence(pto="alice@localhost/phone", pstatus=status)
        bob.send_message(mto="alice@localhost/phone", mbody="wake up", mtype="chat")
        await expect(alice.messages, lambda m: m["body"] == "wake up", what="the message")
        statuses = []
        while not alice.presences.empty():
            p = alice.presences.get_nowait()
            if p["from"].full == "bob@localhost/desk":
                statuses.append(p["status"])
        assert statuses == ["three"], statuses

        alice.plugin["xep_0352"].send_active()
        bob.send_presence(pto="alice@localhost/phone", pstatus="four")
        await expect(alice.presences, lambda p: p["status"] == "four", what="presence when active")
    finally:
        await alice.logout()
        await bob.logout()

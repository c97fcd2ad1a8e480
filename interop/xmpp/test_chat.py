"""Two slixmpp clients chat through Postern (RFC 6121 §8)."""

from __future__ import annotations

from clients import Client, expect, expect_none


def body_is(text):
    return lambda m: m["body"] == text


async def test_two_clients_chat(server):
    alice = await Client(server, "alice", resource="laptop").login()
    bob = await Client(server, "bob", resource="phone", direct_tls=True).login()
    try:
        alice.send_message(mto=bob.boundjid.full, mbody="hello bob", mtype="chat")
        m = await expect(bob.messages, body_is("hello bob"), what="alice's message")
        assert m["type"] == "chat"
        assert m["from"].full == "alice@localhost/laptop"
        assert m["to"].bare == "bob@localhost"

        # Bob answers the full JID the message came from.
        m.reply("hi alice, ünïcödé ✓ <&>").send()
        r = await expect(alice.messages, body_is("hi alice, ünïcödé ✓ <&>"), what="bob's reply")
        assert r["from"].full == "bob@localhost/phone"
        assert r["to"].full == "alice@localhost/laptop"
    finally:
        await alice.logout()
        await bob.logout()


async def test_message_to_bare_jid_goes_to_highest_priority(server):
    alice = await Client(server, "alice").login()
    bob_hi = await Client(server, "bob", resource="desk").login(presence=False)
    bob_lo = await Client(server, "bob", resource="pocket").login(presence=False)
    try:
        bob_hi.send_presence(ppriority=5)
        bob_lo.send_presence(ppriority=1)
        # Once bob's presences have reached the server, a bare-JID message reaches "desk" only.
        # Each presence is followed by a ping: the server handles a client's stanzas in order.
        await bob_hi.plugin["xep_0199"].ping(jid="localhost", timeout=10)
        await bob_lo.plugin["xep_0199"].ping(jid="localhost", timeout=10)
        alice.send_message(mto="bob@localhost", mbody="to the bare jid", mtype="chat")
        m = await expect(bob_hi.messages, body_is("to the bare jid"))
        assert m["from"] == alice.boundjid
        await expect_none(bob_lo.messages, body_is("to the bare jid"), within=1.0)
    finally:
        for c in (alice, bob_hi, bob_lo):
            await c.logout()


async def test_server_stamps_from(server):
    """A forged `from` is replaced by the sender's full JID."""
    alice = await Client(server, "alice", resource="real").login()
    bob = await Client(server, "bob").login()
    try:
        alice.send_message(
            mto=bob.boundjid.full, mbody="who am i", mtype="chat", mfrom="carol@localhost/forged"
        )
        m = await expect(bob.messages, body_is("who am i"))
        assert m["from"].full == "alice@localhost/real"
    finally:
        await alice.logout()
        await bob.logout()


async def test_message_to_unknown_account_bounces(server):
    alice = await Client(server, "alice").login()
    try:
        alice.send_message(mto="nobody@localhost", mbody="anyone?", mtype="chat", mfrom=None)
        err = await expect(alice.message_errors, what="message error")
        assert err["type"] == "error"
        assert err["from"].bare == "nobody@localhost"
        assert err["error"]["condition"] == "service-unavailable"
    finally:
        await alice.logout()


async def test_oversized_stanza_ends_the_stream_only(server):
    """A stanza over max_stanza_size (256 KiB) ends that stream with policy-violation; the
    server and other sessions go on."""
    alice = await Client(server, "alice").login()
    bob = await Client(server, "bob").login()
    try:
        alice.send_message(mto="bob@localhost", mbody="x" * (300 * 1024), mtype="chat")
        err = await expect(alice.stream_errors, what="stream error")
        assert err["condition"] == "policy-violation"
        await alice.wait_disconnected()
        await expect_none(bob.messages, within=0.5)
        carol = await Client(server, "carol").login()
        try:
            carol.send_message(mto=bob.boundjid.full, mbody="still up", mtype="chat")
            await expect(bob.messages, body_is("still up"))
        finally:
            await carol.logout()
    finally:
        await alice.logout()
        await bob.logout()

"""Resource conflict (RFC 6120 §7.7.2.2): a new session with the same resource replaces the old."""

from __future__ import annotations

from clients import Client, expect


async def test_same_resource_kicks_the_first(server):
    first = await Client(server, "alice", resource="phone").login()
    second = None
    try:
        second = await Client(server, "alice", resource="phone", direct_tls=True).login()
        assert second.boundjid.full == "alice@localhost/phone"

        err = await expect(first.stream_errors, what="stream error")
        assert err["condition"] == "conflict"
        await first.wait_disconnected()

        # The new session is the one that receives messages to that full JID.
        bob = await Client(server, "bob").login()
        try:
            bob.send_message(mto="alice@localhost/phone", mbody="which one?", mtype="chat")
            m = await expect(second.messages, lambda m: m["body"] == "which one?")
            assert m["from"] == bob.boundjid
        finally:
            await bob.logout()
    finally:
        await first.logout()
        if second is not None:
            await second.logout()


async def test_different_resources_coexist(server):
    a = await Client(server, "alice", resource="one").login()
    b = await Client(server, "alice", resource="two").login()
    try:
        a.send_message(mto="alice@localhost/two", mbody="note to self", mtype="chat")
        m = await expect(b.messages, lambda m: m["body"] == "note to self")
        assert m["from"].full == "alice@localhost/one"
        assert a.stream_errors.empty()
    finally:
        await a.logout()
        await b.logout()


async def test_empty_resource_is_generated(server):
    a = await Client(server, "alice").login(presence=False)
    b = await Client(server, "alice").login(presence=False)
    try:
        assert a.boundjid.resource and b.boundjid.resource
        assert a.boundjid.resource != b.boundjid.resource
    finally:
        await a.logout()
        await b.logout()

"""Roster and presence subscriptions (RFC 6121 §2-§4) between two slixmpp clients."""

from __future__ import annotations

import asyncio

from clients import Client, expect, expect_none


def push_for(jid, **want):
    """A roster push that carries `jid` with the wanted attributes."""

    def pred(iq):
        items = iq["roster"]["items"]
        if jid not in items:
            return False
        item = items[jid]
        # An absent subscription attribute means "none" (RFC 6121 §2.1.2.5).
        got = {k: (item[k] or "none") if k == "subscription" else item[k] for k in want}
        return got == want

    return pred


def presence_from(bare, ptype):
    return lambda p: p["from"].bare == bare and p["type"] == ptype


async def test_subscription_flow(server):
    alice = await Client(server, "alice", resource="a1").login()
    bob = await Client(server, "bob", resource="b1").login()
    try:
        assert await alice.fetch_roster() == {}
        assert await bob.fetch_roster() == {}

        # Alice adds bob with a name and group, then asks for his presence.
        await alice.update_roster("bob@localhost", name="Bob", groups=["Friends"], timeout=10)
        await expect(alice.roster_pushes, push_for("bob@localhost", subscription="none"))
        alice.send_presence(pto="bob@localhost", ptype="subscribe")
        await expect(
            alice.roster_pushes, push_for("bob@localhost", subscription="none", ask="subscribe")
        )

        # Bob receives the request from alice's bare JID.
        req = await expect(bob.presences, presence_from("alice@localhost", "subscribe"))
        assert req["from"].full == "alice@localhost", "subscription requests carry the bare JID"

        # Bob approves.
        bob.send_presence(pto="alice@localhost", ptype="subscribed")
        await expect(bob.roster_pushes, push_for("alice@localhost", subscription="from"))
        await expect(alice.roster_pushes, push_for("bob@localhost", subscription="to"))
        await expect(alice.presences, presence_from("bob@localhost", "subscribed"))

        # Alice now receives bob's current presence from his available resource.
        p = await expect(alice.presences, presence_from("bob@localhost", "available"))
        assert p["from"].full == "bob@localhost/b1"

        # Both rosters, fetched afresh from the server, agree.
        a = await alice.fetch_roster()
        assert a == {
            "bob@localhost": {"subscription": "to", "ask": "", "name": "Bob", "groups": ["Friends"]}
        }
        b = await bob.fetch_roster()
        assert set(b) == {"alice@localhost"}
        assert b["alice@localhost"]["subscription"] == "from"
        assert b["alice@localhost"]["ask"] == ""

        # Bob's later presence changes reach alice; alice's do not reach bob (he has no 'to').
        bob.send_presence(pshow="away", pstatus="lunch")
        p = await expect(
            alice.presences, lambda p: p["from"].full == "bob@localhost/b1" and p["show"] == "away"
        )
        assert p["status"] == "lunch"
        alice.send_presence(pshow="dnd")
        await expect_none(bob.presences, presence_from("alice@localhost", "dnd"), within=1.0)

        # Bob goes offline: alice sees him unavailable.
        await bob.logout()
        await expect(alice.presences, presence_from("bob@localhost", "unavailable"))
    finally:
        await alice.logout()
        await bob.logout()


async def test_mutual_subscription_and_probe_at_login(server):
    alice = await Client(server, "alice").login()
    bob = await Client(server, "bob").login()
    try:
        await alice.fetch_roster()
        await bob.fetch_roster()
        alice.send_presence(pto="bob@localhost", ptype="subscribe")
        await expect(bob.presences, presence_from("alice@localhost", "subscribe"))
        bob.send_presence(pto="alice@localhost", ptype="subscribed")
        bob.send_presence(pto="alice@localhost", ptype="subscribe")
        await expect(alice.presences, presence_from("bob@localhost", "subscribe"))
        alice.send_presence(pto="bob@localhost", ptype="subscribed")
        await expect(bob.roster_pushes, push_for("alice@localhost", subscription="both"))
        await expect(alice.roster_pushes, push_for("bob@localhost", subscription="both"))
        assert (await alice.fetch_roster())["bob@localhost"]["subscription"] == "both"
        assert (await bob.fetch_roster())["alice@localhost"]["subscription"] == "both"
        await alice.logout()

        # At alice's next login her server probes bob, and bob sees her initial presence.
        alice2 = await Client(server, "alice", resource="again").login(presence=False)
        alice = alice2
        alice2.send_presence()
        p = await expect(alice2.presences, presence_from("bob@localhost", "available"))
        assert p["from"] == bob.boundjid
        p = await expect(bob.presences, lambda p: p["from"].full == "alice@localhost/again")
        assert p["type"] == "available"
    finally:
        await alice.logout()
        await bob.logout()


async def test_roster_pushes_reach_every_resource_and_persist(server):
    a1 = await Client(server, "alice", resource="one").login()
    a2 = await Client(server, "alice", resource="two").login()
    try:
        # Pushes go to "interested" resources: those that fetched the roster (RFC 6121 §2.1.6).
        for c in (a1, a2):
            assert await c.fetch_roster() == {}
        await a1.update_roster("carol@localhost", name="Carol", groups=["Work", "Chess"], timeout=10)
        for c in (a1, a2):
            await expect(c.roster_pushes, push_for("carol@localhost", name="Carol"))
    finally:
        await a1.logout()
        await a2.logout()

    # The roster survives a server restart.
    assert server.stop() == 0
    server.start()
    a3 = await Client(server, "alice").login()
    try:
        await a3.fetch_roster()
        r = await a3.fetch_roster()
        assert r["carol@localhost"]["name"] == "Carol"
        assert r["carol@localhost"]["groups"] == ["Chess", "Work"]
        assert r["carol@localhost"]["subscription"] == "none"

        # Removing the item pushes `remove` and empties the roster.
        await asyncio.wait_for(a3.del_roster_item("carol@localhost"), 10)
        await expect(a3.roster_pushes, push_for("carol@localhost", subscription="remove"))
        assert await a3.fetch_roster() == {}
    finally:
        await a3.logout()


async def test_directed_presence_and_unavailable_on_disconnect(server):
    """Directed presence to a non-contact (RFC 6121 §4.6); it gets unavailable when we leave."""
    alice = await Client(server, "alice", resource="dp").login()
    carol = await Client(server, "carol").login()
    try:
        # Directed presence to a bare JID reaches its *available* resources: carol's initial
        # presence must have been handled first (a client's stanzas are handled in order).
        await carol.plugin["xep_0199"].ping(jid="localhost", timeout=10)
        alice.send_presence(pto="carol@localhost", pstatus="just for you")
        p = await expect(carol.presences, lambda p: p["from"].full == "alice@localhost/dp")
        assert p["type"] == "available" and p["status"] == "just for you"
        await alice.logout()
        await expect(
            carol.presences,
            lambda p: p["from"].full == "alice@localhost/dp" and p["type"] == "unavailable",
        )
    finally:
        await alice.logout()
        await carol.logout()


async def test_roster_versioning(server):
    """XEP-0237: a fetch with the current version returns nothing; changes bump the version."""
    alice = await Client(server, "alice").login()
    try:
        assert "rosterver" in alice.features

        async def fetch(ver):
            iq = alice.Iq(stype="get")
            iq.enable("roster")
            iq["roster"]["ver"] = ver
            return await iq.send(timeout=10)

        first = await fetch("")
        v1 = first["roster"]["ver"]
        assert v1, f"no version in {first}"
        same = await fetch(v1)
        assert same.xml.find("{jabber:iq:roster}query") is None or not same["roster"]["items"]

        await alice.update_roster("bob@localhost", name="B", timeout=10)
        push = await expect(alice.roster_pushes)
        v2 = push["roster"]["ver"]
        assert v2 and v2 != v1
        again = await fetch(v2)
        assert not again["roster"]["items"]
        # An old version gets the changes (as pushes or a full roster) and the new version.
        old = await fetch(v1)
        if old.xml.find("{jabber:iq:roster}query") is not None:
            assert "bob@localhost" in old["roster"]["items"]
            assert old["roster"]["ver"] == v2
        else:
            p = await expect(alice.roster_pushes)
            assert "bob@localhost" in p["roster"]["items"]
    finally:
        await alice.logout()

"""XEP-0313 Message Archive Management with slixmpp's own plugins (xep_0313 over xep_0059
paging, xep_0359 stanza ids): bob writes to alice, then alice fetches her history page by
page, forwards and backwards, filtered by peer and time, and the id slixmpp saw on each live
message is the id of its archive entry."""

from __future__ import annotations

import datetime

from clients import Client, expect, iq_error

PLUGINS = ("xep_0059", "xep_0297", "xep_0313", "xep_0359")


async def test_slixmpp_fetches_history_page_by_page(server):
    alice = await Client(server, "alice", resource="phone", extra_plugins=PLUGINS).login()
    bob = await Client(server, "bob", resource="desk", extra_plugins=PLUGINS).login()
    carol = await Client(server, "carol", resource="web", extra_plugins=PLUGINS).login()
    try:
        mam = alice.plugin["xep_0313"]
        # The account advertises MAM, stanza ids and full-text search.
        info = await alice.plugin["xep_0030"].get_info(jid=server.jid("alice"))
        features = info["disco_info"]["features"]
        for feature in ("urn:xmpp:mam:2", "urn:xmpp:mam:2#extended", "urn:xmpp:sid:0"):
            assert feature in features, features

        live_ids = {}
        for n in range(60):
            body = f"bob says {n:02d}"
            bob.send_message(mto=server.jid("alice"), mbody=body, mtype="chat")
            m = await expect(alice.messages, lambda m, b=body: m["body"] == b, what=body)
            live_ids[body] = m["stanza_id"]["id"]
            assert m["stanza_id"]["by"] == server.jid("alice"), m
        carol.send_message(mto=server.jid("alice"), mbody="carol's one", mtype="chat")
        await expect(alice.messages, lambda m: m["body"] == "carol's one")

        # Forwards, 25 at a time (three pages), oldest first.
        forwards = [
            (r["mam_result"]["id"], r["mam_result"]["forwarded"]["stanza"]["body"])
            async for r in mam.iterate(rsm={"max": 25})
        ]
        assert [b for _, b in forwards] == [f"bob says {n:02d}" for n in range(60)] + [
            "carol's one"
        ], forwards
        # The id on each live message is its archive id.
        assert {b: i for i, b in forwards if b in live_ids} == live_ids

        # Backwards from the newest.
        backwards = [
            r["mam_result"]["forwarded"]["stanza"]["body"]
            async for r in mam.iterate(rsm={"max": 25}, reverse=True)
        ]
        assert backwards == [b for _, b in reversed(forwards)], backwards

        # Filtered by peer, and by time: nothing from the future, everything from the past.
        with_carol = [
            r["mam_result"]["forwarded"]["stanza"]["body"]
            async for r in mam.iterate(with_jid=server.jid("carol"))
        ]
        assert with_carol == ["carol's one"], with_carol
        now = datetime.datetime.now(datetime.timezone.utc)
        future = [r async for r in mam.iterate(start=now + datetime.timedelta(hours=1))]
        assert future == []
        past = [r async for r in mam.iterate(end=now + datetime.timedelta(hours=1), rsm={"max": 100})]
        assert len(past) == 61

        # The form lists what may be asked; another user's archive is not alice's to read.
        form = await mam.get_fields()
        assert {"with", "start", "end", "before-id", "after-id", "ids"} <= {f["var"] for f in form["fields"]}, form
        condition = await iq_error(mam.get_fields(jid=server.jid("bob")))
        assert condition == "forbidden", condition
    finally:
        for c in (alice, bob, carol):
            await c.logout()

"""Offline storage (RFC 6121 §8.5.2.2 / XEP-0160) with XEP-0203 delay stamps."""

from __future__ import annotations

import datetime as dt

from clients import Client, expect, expect_none


async def test_offline_message_delivered_at_next_login(server):
    alice = await Client(server, "alice", resource="desk").login()
    try:
        before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        alice.send_message(mto="bob@localhost", mbody="while you were out", mtype="chat")
        alice.send_message(mto="bob@localhost/gone", mbody="second, to a full jid", mtype="normal")
        # Headlines are not stored (RFC 6121 §8.5.2.2.1 allows dropping them).
        alice.send_message(mto="bob@localhost", mbody="headline", mtype="headline")
        # A ping after the messages: once it is answered the server has stored them.
        await alice.plugin["xep_0199"].ping(jid="localhost", timeout=10)
        after = dt.datetime.now(dt.timezone.utc)

        # Logging in without presence delivers nothing yet.
        bob = await Client(server, "bob", resource="home").login(presence=False)
        try:
            await expect_none(bob.messages, within=1.0)
            bob.send_presence()
            got = []
            for _ in range(2):
                got.append(await expect(bob.messages, what="stored message"))
            assert [m["body"] for m in got] == ["while you were out", "second, to a full jid"]
            for m in got:
                assert m["from"].full == "alice@localhost/desk"
                delay = m["delay"]
                assert delay.xml is not None and delay["stamp"] is not None, f"no delay in {m}"
                stamp = delay["stamp"]
                assert stamp.tzinfo is not None
                assert before - dt.timedelta(seconds=2) <= stamp <= after + dt.timedelta(seconds=2)
                assert delay["from"].full == "localhost"
            await expect_none(bob.messages, within=1.0)
        finally:
            await bob.logout()

        # Delivered once only.
        bob = await Client(server, "bob").login()
        try:
            await expect_none(bob.messages, within=1.0)
        finally:
            await bob.logout()
    finally:
        await alice.logout()


async def test_offline_messages_survive_restart(server):
    alice = await Client(server, "alice").login()
    try:
        alice.send_message(mto="carol@localhost", mbody="kept on disk", mtype="chat")
        await alice.plugin["xep_0199"].ping(jid="localhost", timeout=10)
    finally:
        await alice.logout()
    assert server.stop() == 0
    server.start()
    carol = await Client(server, "carol").login()
    try:
        m = await expect(carol.messages, lambda m: m["body"] == "kept on disk")
        assert m["from"].bare == "alice@localhost"
        assert m["delay"]["stamp"] is not None
    finally:
        await carol.logout()

"""Service discovery (XEP-0030), ping (XEP-0199), version (XEP-0092), time (XEP-0202)."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from clients import Client, TIMEOUT, iq_error

IMPLEMENTED = {
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "urn:xmpp:ping",
    "jabber:iq:version",
    "urn:xmpp:time",
    "msgoffline",
    "urn:xmpp:carbons:2",
    "urn:xmpp:blocking",
}
# The archive is the account's: MAM is advertised there, not on the server.
ACCOUNT_IMPLEMENTED = {"urn:xmpp:mam:2", "urn:xmpp:mam:2#extended", "urn:xmpp:sid:0"}
NOT_IMPLEMENTED = {
    "urn:xmpp:sm:3",
    "http://jabber.org/protocol/muc",
    "urn:xmpp:http:upload:0",
    "jabber:iq:register",
    "vcard-temp",
}


async def test_server_disco_info(server):
    c = await Client(server, "alice").login(presence=False)
    try:
        iq = await c.plugin["xep_0030"].get_info(jid=server.domain, local=False, timeout=TIMEOUT)
        info = iq["disco_info"]
        features = set(info["features"])
        missing = IMPLEMENTED - features
        assert not missing, f"missing features {missing}; got {sorted(features)}"
        advertised_but_missing = NOT_IMPLEMENTED & features
        assert not advertised_but_missing, f"advertises unimplemented {advertised_but_missing}"
        assert not ACCOUNT_IMPLEMENTED & features, "the archive is the account's, not the server's"
        identities = {(cat, typ) for cat, typ, _lang, _name in info["identities"]}
        assert ("server", "im") in identities, identities
    finally:
        await c.logout()


async def test_server_disco_items(server):
    c = await Client(server, "alice").login(presence=False)
    try:
        iq = await c.plugin["xep_0030"].get_items(jid=server.domain, local=False, timeout=TIMEOUT)
        assert iq["type"] == "result"
        assert iq["from"].full == server.domain
    finally:
        await c.logout()


async def test_account_disco_info(server):
    """disco#info to a bare account JID is answered by the server on the account's behalf."""
    c = await Client(server, "alice").login(presence=False)
    try:
        iq = await c.plugin["xep_0030"].get_info(jid="bob@localhost", local=False, timeout=TIMEOUT)
        info = iq["disco_info"]
        identities = {(cat, typ) for cat, typ, _lang, _name in info["identities"]}
        assert ("account", "registered") in identities, identities
        assert not NOT_IMPLEMENTED & set(info["features"])
        missing = ACCOUNT_IMPLEMENTED - set(info["features"])
        assert not missing, f"missing account features {missing}"
    finally:
        await c.logout()


async def test_ping(server):
    c = await Client(server, "alice", direct_tls=True).login(presence=False)
    try:
        rtt = await c.plugin["xep_0199"].ping(jid=server.domain, timeout=TIMEOUT)
        assert 0 <= rtt < TIMEOUT
        # Pinging one's own bare JID is answered by the server too (XEP-0199 §4.2 shape).
        iq = c.Iq(stype="get", sto=server.domain)
        iq.enable("ping")
        result = await iq.send(timeout=TIMEOUT)
        assert result["type"] == "result"
        assert result["from"].full == server.domain
    finally:
        await c.logout()


async def test_version(server):
    c = await Client(server, "alice").login(presence=False)
    try:
        iq = await c.plugin["xep_0092"].get_version(server.domain, timeout=TIMEOUT)
        sv = iq["software_version"]
        assert sv["name"].lower().startswith("postern"), sv
        assert sv["version"], sv
    finally:
        await c.logout()


async def test_time(server):
    c = await Client(server, "alice").login(presence=False)
    try:
        iq = await c.plugin["xep_0202"].get_entity_time(server.domain, timeout=TIMEOUT)
        # slixmpp's own getter appends a second "Z" to <utc> (XEP-0202 puts one there), so
        # read the elements directly.
        el = iq["entity_time"].xml
        utc = el.findtext("{urn:xmpp:time}utc")
        tzo = el.findtext("{urn:xmpp:time}tzo")
        assert utc and utc.endswith("Z"), utc
        assert tzo and (tzo == "Z" or tzo[0] in "+-"), tzo
        t = dt.datetime.fromisoformat(utc)
        assert t.tzinfo is not None
        assert abs(t - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(seconds=10)
    finally:
        await c.logout()


async def test_unknown_iq_is_service_unavailable(server):
    c = await Client(server, "alice").login(presence=False)
    try:
        iq = c.Iq(stype="get", sto=server.domain)
        iq.append(ET.Element("{urn:example:not-a-feature}query"))
        assert await iq_error(iq.send(timeout=TIMEOUT)) == "service-unavailable"
    finally:
        await c.logout()


async def test_iq_to_full_jid_is_routed(server):
    """An IQ to another user's full JID reaches that client, which answers it (here: version)."""
    alice = await Client(server, "alice").login()
    bob = await Client(server, "bob", resource="desk").login()
    try:
        iq = await alice.plugin["xep_0092"].get_version(bob.boundjid.full, timeout=TIMEOUT)
        assert iq["from"].full == "bob@localhost/desk"
        assert iq["software_version"]["name"]  # slixmpp answers with its own name
        # The same to a resource that is not connected is an error from the server.
        cond = await iq_error(
            alice.plugin["xep_0092"].get_version("bob@localhost/absent", timeout=TIMEOUT)
        )
        assert cond in ("service-unavailable", "item-not-found", "recipient-unavailable"), cond
    finally:
        await alice.logout()
        await bob.logout()

"""Logging in with slixmpp: STARTTLS and direct TLS, every SASL mechanism it can use, failures.

slixmpp runs on Python's ssl module, which offers no `tls-exporter` and, on TLS 1.3, no
`tls-unique`: it cannot do SCRAM-*-PLUS with its own code and falls back to plain SCRAM
(its choice is asserted below). test_scram_plus_server_end_point does -PLUS with the
`tls-server-end-point` binding, which Python can compute from the peer certificate.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl

import pytest
from slixmpp.util import sasl
from slixmpp.util.sasl.mechanisms import SCRAM

from clients import Client, LoginFailed, expect, ssl_object

TRANSPORTS = [False, True]
TRANSPORT_IDS = ["starttls", "direct-tls"]
OFFERED = {
    "PLAIN",
    "SCRAM-SHA-1",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-512",
    "SCRAM-SHA-512-PLUS",
}


async def assert_session_works(c: Client, user: str = "alice") -> None:
    assert c.boundjid.bare == c.postern.jid(user)
    assert c.boundjid.resource, "no resource bound"
    # A round trip through the router proves the session is usable.
    rtt = await c.plugin["xep_0199"].ping(jid=c.postern.domain, timeout=10)
    assert rtt >= 0


@pytest.mark.parametrize("direct_tls", TRANSPORTS, ids=TRANSPORT_IDS)
async def test_login_default_choice(server, direct_tls):
    """Out of the box slixmpp verifies the certificate and picks the strongest SCRAM it can."""
    c = await Client(server, "alice", direct_tls=direct_tls).login(presence=False)
    try:
        tls = ssl_object(c)
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        offered = set(c.plugin["feature_mechanisms"].mech_list)
        assert offered == OFFERED, f"server offered {sorted(offered)}"
        # -PLUS needs tls-exporter on TLS 1.3, which Python's ssl does not provide.
        expected = "SCRAM-SHA-512-PLUS" if "tls-exporter" in ssl.CHANNEL_BINDING_TYPES else "SCRAM-SHA-512"
        assert c.sasl_mech == expected
        await assert_session_works(c)
    finally:
        await c.logout()


@pytest.mark.parametrize("direct_tls", TRANSPORTS, ids=TRANSPORT_IDS)
@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
async def test_login_each_mechanism(server, mech, direct_tls):
    c = await Client(server, "bob", mech=mech, direct_tls=direct_tls).login(presence=False)
    try:
        assert c.sasl_mech == mech
        await assert_session_works(c, "bob")
    finally:
        await c.logout()


async def test_direct_tls_alpn(server):
    """XEP-0368: the direct-TLS listener negotiates ALPN `xmpp-client` when asked."""
    c = await Client(server, "alice", direct_tls=True, alpn=["xmpp-client"]).login(presence=False)
    try:
        assert ssl_object(c).selected_alpn_protocol() == "xmpp-client"
        await assert_session_works(c)
    finally:
        await c.logout()


async def test_tls12_with_plain_scram(server):
    """A TLS 1.2-only client still logs in (here with SCRAM-SHA-256, no channel binding)."""
    c = Client(server, "alice", mech="SCRAM-SHA-256")
    c.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
    await c.login(presence=False)
    try:
        assert ssl_object(c).version() == "TLSv1.2"
        await assert_session_works(c)
    finally:
        await c.logout()


@pytest.mark.parametrize("direct_tls", TRANSPORTS, ids=TRANSPORT_IDS)
async def test_certificate_is_verified(server, direct_tls):
    """Without the server's certificate in its trust store the client refuses the server:
    the other tests really verify TLS."""
    c = Client(server, "alice", direct_tls=direct_tls, trust_server_cert=False)
    err = await c.login_fails(condition=None)
    assert "certificate" in str(err).lower() or "ssl" in str(err).lower(), err


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "PLAIN"])
async def test_wrong_password(server, mech):
    c = Client(server, "alice", password="not-the-password", mech=mech)
    login = asyncio.ensure_future(c.login_fails())
    failure = await expect(c.failed_auths, what="SASL failure")
    assert failure["condition"] == "not-authorized"
    err = await login
    assert isinstance(err, LoginFailed)
    assert c.sasl_mech is None


async def test_unknown_user_same_error(server):
    c = Client(server, "mallory", password="whatever", mech="SCRAM-SHA-256")
    login = asyncio.ensure_future(c.login_fails())
    failure = await expect(c.failed_auths, what="SASL failure")
    assert failure["condition"] == "not-authorized"
    await login


async def test_failures_do_not_lock_out_the_user(server):
    """Several wrong passwords, then the right one logs in (and without a long delay)."""
    for _ in range(4):
        c = Client(server, "alice", password="wrong", mech="SCRAM-SHA-256")
        await c.login_fails(timeout=15)
    c = await Client(server, "alice").login(presence=False, timeout=15)
    try:
        await assert_session_works(c)
    finally:
        await c.logout()


async def test_disabled_account_cannot_log_in(server):
    r = server.cli("account", "disable", server.jid("carol"))
    assert r.returncode == 0, r.stderr
    c = Client(server, "carol")
    login = asyncio.ensure_future(c.login_fails(condition=None))
    failure = await expect(c.failed_auths, what="SASL failure")
    assert failure["condition"] in ("not-authorized", "account-disabled")
    await login
    r = server.cli("account", "enable", server.jid("carol"))
    assert r.returncode == 0, r.stderr
    c = await Client(server, "carol").login(presence=False)
    await c.logout()


async def test_password_change_via_cli(server):
    r = server.cli("account", "passwd", server.jid("carol"), "--password-stdin", stdin="new-Pass-9\n")
    assert r.returncode == 0, r.stderr
    await Client(server, "carol").login_fails()  # the old password no longer works
    for mech in ("SCRAM-SHA-1", "SCRAM-SHA-512", "PLAIN"):
        c = await Client(server, "carol", password="new-Pass-9", mech=mech).login(presence=False)
        await c.logout()


# --- SCRAM-PLUS with tls-server-end-point ------------------------------------------------


def server_end_point(der: bytes) -> bytes:
    """RFC 5929 §4.1: hash of the certificate, SHA-256 for MD5/SHA-1/SHA-256 signatures."""
    return hashlib.sha256(der).digest()


class ScramServerEndPoint(SCRAM):
    """slixmpp's SCRAM with the gs2 header naming `tls-server-end-point` (slixmpp hard-codes
    tls-unique or tls-exporter); the binding data comes from the credentials callback."""

    def process_1(self, challenge):
        out = super().process_1(challenge)
        assert self.use_channel_binding and self.credentials["channel_binding"]
        bare = out.split(b",", 2)[2]
        self.gs2_header = b"p=tls-server-end-point,,"
        self.client_first_message = self.gs2_header + bare
        return self.client_first_message


@pytest.fixture
def server_end_point_mech(monkeypatch):
    for name in ("SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS"):
        monkeypatch.setitem(sasl.MECHANISMS, name, ScramServerEndPoint)


def with_binding(c: Client, tamper: bool = False) -> Client:
    mechs = c.plugin["feature_mechanisms"]
    default = mechs._default_credentials

    def creds(required, optional):
        result = default(required, optional)
        if "channel_binding" in required | optional:
            der = c.socket.getpeercert(binary_form=True)
            data = server_end_point(der)
            if tamper:
                data = bytes([data[0] ^ 1]) + data[1:]
            result["channel_binding"] = data
        return result

    mechs.sasl_callback = creds
    return c


@pytest.mark.parametrize("direct_tls", TRANSPORTS, ids=TRANSPORT_IDS)
@pytest.mark.parametrize("mech", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS"])
async def test_scram_plus_server_end_point(server, server_end_point_mech, mech, direct_tls):
    c = with_binding(Client(server, "alice", mech=mech, direct_tls=direct_tls))
    await c.login(presence=False)
    try:
        assert c.sasl_mech == mech
        await assert_session_works(c)
    finally:
        await c.logout()


async def test_scram_plus_wrong_binding_fails(server, server_end_point_mech):
    c = with_binding(Client(server, "alice", mech="SCRAM-SHA-256-PLUS"), tamper=True)
    login = asyncio.ensure_future(c.login_fails())
    failure = await expect(c.failed_auths, what="SASL failure")
    assert failure["condition"] == "not-authorized"
    await login



# --- virtual hosts -------------------------------------------------------------------------


@pytest.mark.parametrize("direct_tls", TRANSPORTS, ids=TRANSPORT_IDS)
async def test_second_domain_uses_its_own_certificate(server, direct_tls):
    """The stream to example.net is served with example.net's certificate (chosen by SNI)."""
    c = await Client(server, "dave", direct_tls=direct_tls).login(presence=False)
    try:
        der = ssl_object(c).getpeercert(binary_form=True)
        assert der == ssl.PEM_cert_to_DER_cert(server.cert("example.net").read_text())
        assert der != ssl.PEM_cert_to_DER_cert(server.cert("localhost").read_text())
        assert c.boundjid.bare == "dave@example.net"
        rtt = await c.plugin["xep_0199"].ping(jid="example.net", timeout=10)
        assert rtt >= 0
    finally:
        await c.logout()


async def test_chat_across_local_domains(server):
    alice = await Client(server, "alice").login()
    dave = await Client(server, "dave", resource="net").login()
    try:
        alice.send_message(mto="dave@example.net", mbody="hi other domain", mtype="chat")
        m = await expect(dave.messages, lambda m: m["body"] == "hi other domain")
        assert m["from"] == alice.boundjid
        m.reply("hi back").send()
        r = await expect(alice.messages, lambda m: m["body"] == "hi back")
        assert r["from"].full == "dave@example.net/net"
    finally:
        await alice.logout()
        await dave.logout()

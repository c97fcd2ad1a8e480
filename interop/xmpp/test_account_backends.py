"""slixmpp logs in with the mail password an external account backend checks: a real Dovecot
(its auth socket, and its IMAP server), a real OpenLDAP slapd and a real MariaDB (a
Postfixadmin-style table read by the `sql` backend), started on loopback by
`backend_fixture` (tests/src/bin/backend_fixture.rs, the harnesses of the Rust tests;
the `backend_server` fixture in conftest.py).

For each: SCRAM-SHA-256 is refused until a PLAIN login has been confirmed by the backend
(Postern has no keys of the backend's password before), PLAIN works and gives a usable
session, SCRAM-SHA-256 works after it, and a wrong password is refused with not-authorized.
"""

from __future__ import annotations

import asyncio

from clients import Client, LoginFailed, expect


async def test_plain_then_scram_through_the_backend(backend_server):
    srv = backend_server
    # The accounts the suite creates have internal keys of the same passwords, but for a
    # domain with an external backend only the backend's confirmation counts.
    early = Client(srv, "alice", mech="SCRAM-SHA-256")
    login = asyncio.ensure_future(early.login_fails())
    failure = await expect(early.failed_auths, what="SASL failure")
    assert failure["condition"] == "not-authorized"
    assert isinstance(await login, LoginFailed)

    c = await Client(srv, "alice", mech="PLAIN").login(presence=False)
    try:
        assert c.sasl_mech == "PLAIN"
        assert await c.plugin["xep_0199"].ping(jid=srv.domain, timeout=10) >= 0
    finally:
        await c.logout()

    c = await Client(srv, "alice", mech="SCRAM-SHA-256").login(presence=False)
    try:
        assert c.sasl_mech == "SCRAM-SHA-256"
        assert c.boundjid.bare == srv.jid("alice")
    finally:
        await c.logout()

    wrong = Client(srv, "bob", password="not bob's", mech="PLAIN")
    login = asyncio.ensure_future(wrong.login_fails())
    failure = await expect(wrong.failed_auths, what="SASL failure")
    assert failure["condition"] == "not-authorized"
    await login

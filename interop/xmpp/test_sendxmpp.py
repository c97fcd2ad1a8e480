"""Debian's command-line senders deliver to a connected slixmpp client.

- sendxmpp (Perl, Net::XMPP): STARTTLS, verifies the certificate against `--tls-ca-path`.
- go-sendxmpp (Go, go-xmpp): STARTTLS or direct TLS (`-t`); it has no CA option but Go reads
  SSL_CERT_FILE, so it verifies against the server's certificate too.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from clients import Client, expect

SENDXMPP = shutil.which("sendxmpp")
GO_SENDXMPP = shutil.which("go-sendxmpp")


def required(tool: str | None, name: str) -> str:
    """A missing client fails its tests (interop/run installs both): a skip would pass."""
    if tool is None:
        pytest.fail(f"{name} is not installed (interop/run installs it)")
    return tool


def run(cmd: list[str], server, *, stdin: str, env: dict | None = None) -> subprocess.CompletedProcess:
    home = server.dir / "home"
    home.mkdir(exist_ok=True)
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **(env or {})}
    return subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, timeout=30, env=full_env
    )


def sendxmpp(server, *, password: str, ca: str | None, body: str, to: str = "bob@localhost"):
    cmd = [required(SENDXMPP, "sendxmpp"), "--tls", "--username", "alice", "--password", password,
           "--jserver", f"localhost:{server.starttls_port}", "--resource", "perl",
           "--message-type", "chat"]
    if ca:
        cmd += ["--tls-ca-path", ca]
    return run(cmd + [to], server, stdin=body)


def go_sendxmpp(server, *, direct_tls: bool, password: str, body: str, ca: str | None = None):
    port = server.direct_tls_port if direct_tls else server.starttls_port
    cmd = [required(GO_SENDXMPP, "go-sendxmpp"), "--username", "alice@localhost", "--password", password,
           "--jserver", f"localhost:{port}", "--resource", "go", "--timeout", "10"]
    if direct_tls:
        cmd.append("--tls")
    env = {"SSL_CERT_FILE": ca or str(server.ca_file)}
    return run(cmd + ["bob@localhost"], server, stdin=body, env=env)


async def test_sendxmpp_message_reaches_slixmpp(server):
    bob = await Client(server, "bob").login()
    try:
        r = sendxmpp(server, password=server.passwords["alice"], ca=str(server.ca_file),
                     body="hello from sendxmpp")
        assert r.returncode == 0, f"sendxmpp failed: {r.stdout}{r.stderr}"
        m = await expect(bob.messages, lambda m: "hello from sendxmpp" in m["body"])
        assert m["body"].strip() == "hello from sendxmpp"
        assert m["from"].full == "alice@localhost/perl"
        assert m["type"] == "chat"
    finally:
        await bob.logout()


async def test_sendxmpp_refuses_untrusted_cert_and_wrong_password(server):
    bob = await Client(server, "bob").login()
    try:
        # Trusting another certificate (the other served domain's), it must refuse the server.
        r = sendxmpp(server, password=server.passwords["alice"], ca=str(server.cert("example.net")),
                     body="no")
        assert r.returncode != 0, "sendxmpp accepted a certificate it should not trust"
        r = sendxmpp(server, password="wrong", ca=str(server.ca_file), body="no")
        assert r.returncode != 0
        assert "not-authorized" in r.stdout + r.stderr
        # Nothing got through.
        bob.send_message(mto=bob.boundjid.full, mbody="marker", mtype="chat")
        m = await expect(bob.messages)
        assert m["body"] == "marker", f"unexpected message {m}"
    finally:
        await bob.logout()


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
async def test_go_sendxmpp_message_reaches_slixmpp(server, direct_tls):
    bob = await Client(server, "bob").login()
    try:
        r = go_sendxmpp(server, direct_tls=direct_tls, password=server.passwords["alice"],
                        body="hello from go-sendxmpp")
        assert r.returncode == 0, f"go-sendxmpp failed: {r.stdout}{r.stderr}"
        m = await expect(bob.messages, lambda m: "hello from go-sendxmpp" in m["body"])
        assert m["from"].bare == "alice@localhost"
        assert m["from"].resource
    finally:
        await bob.logout()


async def test_go_sendxmpp_verifies_the_certificate(server):
    # Trusting another certificate (the other served domain's), it must refuse the server.
    r = go_sendxmpp(server, direct_tls=True, password=server.passwords["alice"], body="no",
                    ca=str(server.cert("example.net")))
    assert r.returncode != 0
    assert "certificate" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr

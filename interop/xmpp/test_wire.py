"""Byte-level framing that real clients produce (here: go-xmpp's), replayed over raw sockets.

go-xmpp, the library under go-sendxmpp, ends every element it writes with a newline:
`<starttls .../>\\n`, `<auth ...>...</auth>\\n`. Whitespace between top-level elements is legal
XML stream content (RFC 6120 §11.7), so the server must take it.
"""

from __future__ import annotations

import base64
import socket
import ssl

import pytest

HEADER = (
    b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)
STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"


def recv_until(sock, token: bytes, timeout: float = 10.0) -> bytes:
    """Read until `token` appears; returns what was read (ending early on EOF)."""
    sock.settimeout(timeout)
    buf = b""
    while token not in buf:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not data:
            break
        buf += data
    return buf


def tls_context(server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_file))


def starttls(server, after: bytes):
    sock = socket.create_connection((server.host, server.starttls_port), timeout=10)
    sock.sendall(HEADER)
    assert b"</stream:features>" in recv_until(sock, b"</stream:features>")
    sock.sendall(STARTTLS + after)
    assert b"proceed" in recv_until(sock, b"proceed")
    return sock


def test_whitespace_after_starttls(server):
    sock = starttls(server, b"\n")
    with tls_context(server).wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(HEADER)
        assert b"SCRAM-SHA-256" in recv_until(tls, b"</stream:features>")


def test_data_after_starttls_is_refused(server):
    """Plaintext sent after <starttls/> must not survive into the TLS session."""
    sock = starttls(server, b"<message to='bob@localhost'><body>injected</body></message>")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with tls_context(server).wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(HEADER)
            # Should the handshake pass anyway, the stream must not go on.
            if b"</stream:features>" in recv_until(tls, b"</stream:features>"):
                pytest.fail("the server went on after plaintext following <starttls/>")
            raise ConnectionError("closed")


def plain_auth_then_restart(server, after_auth: bytes) -> bytes:
    raw = socket.create_connection((server.host, server.direct_tls_port), timeout=10)
    with tls_context(server).wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(HEADER)
        assert b"PLAIN" in recv_until(tls, b"</stream:features>")
        creds = base64.b64encode(b"\0alice\0" + server.passwords["alice"].encode())
        tls.sendall(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
            + creds
            + b"</auth>"
            + after_auth
        )
        assert b"<success" in recv_until(tls, b"success")
        tls.sendall(HEADER)
        return recv_until(tls, b"</stream:features>")


def test_stream_restart_after_sasl(server):
    assert b"urn:ietf:params:xml:ns:xmpp-bind" in plain_auth_then_restart(server, b"")


def test_whitespace_after_sasl_auth(server):
    assert b"urn:ietf:params:xml:ns:xmpp-bind" in plain_auth_then_restart(server, b"\n")

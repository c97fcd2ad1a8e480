"""A raw-socket XMPP client for robustness tests: it sends exactly the bytes it is given.

Standard library only (bench/burst imports it too). slixmpp is no use here: it would refuse to
write most of what these tests send. Every read has a timeout; a server that closes while a
large payload is still being written is expected (that is often the point), so `send` reports
it instead of raising, and what the server sent before closing stays readable.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import time

STREAM_NS = "http://etherx.jabber.org/streams"
STREAMS_NS = "urn:ietf:params:xml:ns:xmpp-streams"


def header(to: str = "localhost", *, ns: str = "jabber:client", version: str = "1.0") -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream to='{to}' xmlns='{ns}' "
        f"xmlns:stream='{STREAM_NS}' version='{version}'>"
    ).encode()


STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"

# RFC 6120 §4.9.3: the defined stream error conditions.
DEFINED_CONDITIONS = frozenset(
    """bad-format bad-namespace-prefix conflict connection-timeout host-gone host-unknown
    improper-addressing internal-server-error invalid-from invalid-namespace invalid-xml
    not-authorized not-well-formed policy-violation remote-connection-failed reset
    resource-constraint restricted-xml see-other-host system-shutdown undefined-condition
    unsupported-encoding unsupported-feature unsupported-stanza-type
    unsupported-version""".split()
)

_ERROR_RE = re.compile(rb"<(?:stream:)?error\b[^>]*>\s*<([a-z-]+)\b[^>]*xmlns=['\"]" + re.escape(STREAMS_NS.encode()))


def stream_error(data: bytes) -> str | None:
    """The condition of the last `<stream:error>` in `data`, if any."""
    found = _ERROR_RE.findall(data)
    return found[-1].decode() if found else None


class Closed(Exception):
    """The server closed the connection before the awaited token arrived."""


class Timeout(Exception):
    """The awaited token did not arrive in time (the connection is still open)."""


class Conn:
    """One client connection: plain TCP until `starttls()`, TLS afterwards."""

    def __init__(self, host: str, port: int, ca_file, *, domain: str = "localhost", timeout: float = 10.0):
        self.host, self.port, self.domain = host, port, domain
        self.ca_file = str(ca_file)
        self.timeout = timeout
        self.sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""  # received, not yet consumed by read_until
        self.tail = b""  # the last bytes received, whatever consumed them
        self.eof = False
        self.jid: str | None = None

    # --- bytes ----------------------------------------------------------------------------
    def send(self, data: bytes) -> bool:
        """Writes `data`; False when the server closed or reset the connection meanwhile."""
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
            return False

    def _recv(self, deadline: float) -> bool:
        """One read into `buf`; False on EOF (or a reset). Raises Timeout at the deadline."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout()
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            raise Timeout() from None
        except (ConnectionResetError, ConnectionAbortedError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        self.tail = (self.tail + data)[-8192:]
        return True

    def read_until(self, token: bytes, timeout: float | None = None) -> bytes:
        """Everything up to and including `token` (consumed). Raises Closed or Timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while token not in self.buf:
            if not self._recv(deadline):
                raise Closed(self.buf[-2000:])
        at = self.buf.index(token) + len(token)
        out, self.buf = self.buf[:at], self.buf[at:]
        return out

    def read_match(self, pattern: bytes, timeout: float | None = None) -> bytes:
        """Everything up to the end of the first match of the regex `pattern` (consumed)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        rx = re.compile(pattern, re.S)
        while not (m := rx.search(self.buf)):
            if not self._recv(deadline):
                raise Closed(self.buf[-2000:])
        out, self.buf = self.buf[: m.end()], self.buf[m.end() :]
        return out

    def read_to_close(self, timeout: float | None = None) -> tuple[bytes, bool]:
        """Everything until the server closes: (data, closed). closed=False: it did not in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            while self._recv(deadline):
                pass
            closed = True
        except Timeout:
            closed = False
        out, self.buf = self.buf, b""
        return out, closed

    def drain(self) -> bytes:
        """Whatever has arrived, without waiting (consumed); check `eof` afterwards."""
        try:
            while self._recv(time.monotonic() + 0.001):
                pass
        except Timeout:
            pass
        out, self.buf = self.buf, b""
        return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # --- negotiation -----------------------------------------------------------------------
    def open_stream(self, hdr: bytes | None = None) -> bytes:
        self.send(hdr or header(self.domain))
        return self.read_until(b"</stream:features>")

    def starttls(self) -> None:
        """Stream header, <starttls/>, <proceed/>, TLS handshake trusting only the server's cert."""
        self.open_stream()
        self.send(STARTTLS)
        self.read_match(rb"<proceed\b[^>]*/>|</proceed>")
        assert not self.buf, f"data after <proceed/>: {self.buf!r}"
        ctx = ssl.create_default_context(cafile=self.ca_file)
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.domain)

    def auth_plain(self, user: str, password: str) -> None:
        """SASL PLAIN on a fresh TLS stream, then the stream restart (features with bind)."""
        features = self.open_stream()
        assert b"PLAIN" in features, features
        creds = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
        self.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + creds + b"</auth>")
        # argon2id in a debug build takes a while.
        answer = self.read_match(rb"<(success|failure)\b[^>]*/>|</(success|failure)>", timeout=30)
        if b"<success" not in answer:
            raise AssertionError(f"PLAIN refused: {answer[:500]!r}")
        assert b"urn:ietf:params:xml:ns:xmpp-bind" in self.open_stream()

    def bind(self, resource: str) -> str:
        self.send(
            f"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>".encode()
        )
        answer = self.read_match(rb"<iq\b[^>]*/>|</iq>")
        m = re.search(rb"<jid>([^<]+)</jid>", answer)
        assert m and re.search(rb"type=['\"]result['\"]", answer), answer
        self.jid = m.group(1).decode()
        return self.jid

    def ping(self, ident: str, timeout: float | None = None) -> bool:
        """Sends a ping to the server; True when its result arrives, False when closed.
        Raises Timeout when neither happens in time."""
        if not self.send(f"<iq type='get' id='{ident}'><ping xmlns='urn:xmpp:ping'/></iq>".encode()):
            return False
        try:
            self.read_match(rb"id=['\"]" + re.escape(ident.encode()) + rb"['\"]", timeout)
            return True
        except Closed:
            return False


def connect(host: str, port: int, ca_file, *, timeout: float = 10.0) -> Conn:
    return Conn(host, port, ca_file, timeout=timeout)


def login(host: str, port: int, ca_file, user: str, password: str, resource: str, *, timeout: float = 10.0) -> Conn:
    """A bound session over STARTTLS with SASL PLAIN."""
    c = Conn(host, port, ca_file, timeout=timeout)
    try:
        c.starttls()
        c.auth_plain(user, password)
        c.bind(resource)
    except BaseException:
        c.close()
        raise
    return c

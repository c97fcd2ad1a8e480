"""Mutation test of the XMPP listener: malformed, hostile and oversized XML from clients,
logged in and not, must end only the offending stream, never the server.

GitHub issue "An unauthenticated client can crash the whole server with deeply nested XML":
5,000 nested elements overflowed a worker stack and aborted the process, taking every other
session with it. These tests send such input, and a seeded (reproducible) stream of other
mutations of a small corpus of valid stanzas, to a real `postern serve`, and check:

- a bystander that logged in first is never disturbed: its ping is answered at the end;
- whenever the server closes a stream it first sends `<stream:error>` with a defined
  condition (RFC 6120 §4.9.3) and then `</stream:stream>`; the one exception is a stream
  header the server does not accept (it just closes; those cases are listed in the output);
- after every dropped connection the process is alive and a fresh login (STARTTLS, PLAIN,
  bind, ping answered) works; the next mutations are sent on that fresh session;
- a stream the server neither answers nor closes (it waits for the rest of an element) is
  ended by a NUL byte, which XML allows nowhere: the server must then close it, with an error;
- nesting deeper than `[xmpp.limits] max_stanza_depth` (64) ends the stream with
  `<policy-violation/>` before TLS, after TLS and after login; exactly 64 levels are delivered.

The budget is about 35 s for the module: fixed cases always run, the seeded random
mutations run until their test's deadline (with a minimum count, so a server that
slows to a crawl fails). Each test prints a summary of what it sent and what came back.
"""

from __future__ import annotations

import base64
import random
import re
import time
from collections import Counter
from dataclasses import dataclass

import rawxmpp as rx

SEED = 20251201
# Seconds per test: the depth cases are a fixed list (about 2 s); the random mutations of the
# other two run until their deadline. With three server starts: about 35 s for the module.
SESSION_BUDGET, PREAUTH_BUDGET = 17.0, 14.0
MIN_RANDOM_SESSION = 60
MIN_RANDOM_PREAUTH = 25
# How long a stream may stay silent after a mutation before the NUL byte ends it. Only a
# classification: a slow answer just counts as "waited".
SETTLE = 0.6
MAX_DEPTH = 64  # the default [xmpp.limits] max_stanza_depth
STANZA_CAP = 256 * 1024  # the default [xmpp.limits] max_stanza_size
RXML_TOKEN = 8 * 1024  # rxml's limit on one name, attribute value or reference

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
# What the server answers a pre-auth element with (or how it ends the stream).
ANSWER = rb"</stream:features>|</failure>|<success\b[^>]*(/>|>.*?</success>)|</proceed>|</challenge>|</stream:stream>"

# The limits that are not under test: all connections come from 127.0.0.1, and the per-IP
# delay after failed logins (up to 5 s each) would only slow the SASL mutations down.
XMPP_LIMITS = {"auth_failures_before_delay": "100000"}


def corpus(bystander_jid: str) -> list[bytes]:
    """Valid stanzas of every kind a client sends; mutations start from these."""
    return [
        f"<message to='{bystander_jid}' type='chat' id='m1'><body>Hello from the corpus "
        f"&amp; friends</body><thread>t1</thread></message>".encode(),
        b"<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
        b"<iq type='get' id='d1' to='localhost'>"
        b"<query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        b"<presence><show>away</show><status>mutating</status><priority>5</priority></presence>",
        b"<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    ]


def nest(levels: int, inner: bytes = b"", *, to: str = "carol@localhost") -> bytes:
    """A message whose element tree is `levels` deep (the message is level 1)."""
    n = levels - 1
    return (
        f"<message to='{to}'>".encode()
        + b"<a xmlns='urn:example:deep'>" * n
        + inner
        + b"</a>" * n
        + b"</message>"
    )


def bare_nest(levels: int) -> bytes:
    """`levels` bare `<a>` elements, opened and closed (the tree of the issue report)."""
    return b"<a>" * levels + b"</a>" * levels


def huge_attr(size: int, to: str) -> bytes:
    return f"<message to='{to}' x='".encode() + b"v" * size + b"'><body>attr</body></message>"


def many_attrs(count: int, to: str) -> bytes:
    attrs = b" ".join(b"a%d='%d'" % (i, i) for i in range(count))
    return f"<message to='{to}' ".encode() + attrs + b"><body>many</body></message>"


@dataclass
class Case:
    name: str
    data: bytes
    # A mutated stream header: the server may close without a stream error.
    header: bool = False
    # The condition the server must close with, if any.
    expect: str | None = None
    # Where it is sent: "session", or a fresh connection's "header", "plain", "tls".
    stage: str = "session"


class Harness:
    """Sends cases, classifies what came back, checks the server after every drop."""

    def __init__(self, server, title: str):
        self.server = server
        self.title = title
        self.sent = 0
        self.outcomes: Counter[str] = Counter()
        self.conditions: Counter[str] = Counter()
        self.silent_header_closes: list[str] = []
        self.logins = 0
        self.bystander: rx.Conn | None = None

    # --- sessions --------------------------------------------------------------------------
    def login(self, user: str, resource: str) -> rx.Conn:
        s = self.server
        conn = rx.login(s.host, s.starttls_port, s.ca_file, user, s.passwords[user], resource)
        self.logins += 1
        return conn

    def connect(self) -> rx.Conn:
        return rx.connect(self.server.host, self.server.starttls_port, self.server.ca_file)

    def start_bystander(self) -> rx.Conn:
        self.bystander = self.login("bob", "bystander")
        return self.bystander

    def fresh_login(self, after: str) -> rx.Conn:
        """After a dropped connection: the process lives and a new PLAIN login is served."""
        assert self.server.alive(), f"postern serve died after {after}: exit {self.server.proc.returncode}"
        try:
            conn = self.login("alice", f"fresh{self.logins}")
            assert conn.ping(f"fresh-ping-{self.logins}"), "fresh session closed"
        except (rx.Closed, rx.Timeout, AssertionError, OSError) as e:
            raise AssertionError(f"fresh login failed after {after}: {e!r}") from None
        self.drain_bystander()
        return conn

    def drain_bystander(self) -> None:
        """Reads what the bystander was sent (mutated messages addressed to it) and checks
        that the server did not close its stream."""
        b = self.bystander
        if b is None:
            return
        got = b.drain()
        assert not b.eof and b"<stream:error" not in got, f"the bystander was disconnected: {b.tail[-500:]!r}"

    def check_bystander(self) -> None:
        self.drain_bystander()
        assert self.bystander.ping("bystander-final", timeout=10), "the bystander's stream was closed"

    # --- outcomes --------------------------------------------------------------------------
    def closed(self, case: Case, data: bytes) -> None:
        """The server closed the stream after `case`; `data` is what it sent last."""
        cond = rx.stream_error(data)
        if cond is None and case.stage == "plain" and b"<proceed" in data:
            # <starttls/> with bytes after it: the server says <proceed/> and then drops
            # the connection rather than let plaintext into the TLS session (test_wire.py).
            self.outcomes["proceed, then dropped (data after <starttls/>)"] += 1
            return
        if cond is None and case.header:
            self.outcomes["closed without error (stream header refused)"] += 1
            self.silent_header_closes.append(case.name)
            return
        assert cond is not None, f"{case.name}: closed without <stream:error>: {data[-400:]!r}"
        assert cond in rx.DEFINED_CONDITIONS, f"{case.name}: undefined condition {cond}"
        after = data[data.rindex(b"<stream:error") :]
        assert b"</stream:stream>" in after, f"{case.name}: no </stream:stream> after the error: {after[-300:]!r}"
        if case.expect:
            assert cond == case.expect, f"{case.name}: closed with {cond}, expected {case.expect}"
        self.conditions[cond] += 1
        self.outcomes["closed with stream error"] += 1

    def finish(self, conn: rx.Conn, case: Case) -> None:
        """The stream is silent after `case`: a NUL byte must end it (with an error, except
        after a refused header). Consumes the connection."""
        self.outcomes["waited, ended by NUL"] += 1
        conn.send(b"\0")
        data, closed = conn.read_to_close(10)
        conn.close()
        assert closed, f"{case.name}: stream neither answered nor closed, even after a NUL byte"
        self.closed(case, data)

    def session_case(self, conn: rx.Conn, case: Case) -> rx.Conn:
        """Sends `case` on a bound session, then a ping. Returns the session to go on with:
        the same one if the ping was answered, else a fresh login."""
        self.sent += 1
        ident = f"sentinel-{self.sent}"
        if conn.send(case.data) and conn.send(
            f"<iq type='get' id='{ident}'><ping xmlns='urn:xmpp:ping'/></iq>".encode()
        ):
            try:
                got = conn.read_match(
                    rb"id=['\"]" + ident.encode() + rb"['\"]|</stream:stream>", timeout=SETTLE
                )
                if b"</stream:stream>" not in got:
                    assert case.expect is None, f"{case.name}: stream survived, expected {case.expect}"
                    self.outcomes["survived (ping answered)"] += 1
                    self.drain_bystander()
                    return conn
                data = got + conn.read_to_close(5)[0]
                conn.close()
                self.closed(case, data)
            except rx.Closed as e:
                conn.close()
                self.closed(case, e.args[0])
            except rx.Timeout:
                self.finish(conn, case)
        else:
            data, closed = conn.read_to_close(5)
            conn.close()
            assert closed, f"{case.name}: write failed but the connection stayed open"
            self.closed(case, data)
        return self.fresh_login(case.name)

    def fresh_case(self, stage: str, case: Case) -> None:
        """Sends `case` on a new connection at `stage` ("header": first bytes of the
        connection; "plain": after the server's features; "tls": after STARTTLS and the TLS
        stream's features), then waits for the close (a NUL byte ends a silent stream)."""
        self.sent += 1
        case.stage = stage
        conn = self.connect()
        try:
            if stage == "tls":
                conn.starttls()
                conn.open_stream()
            elif stage == "plain":
                conn.open_stream()
            conn.send(case.data)
            # Until the server closes, or answers (features for a new header, a SASL
            # outcome, <proceed/>); then the NUL byte ends the stream without waiting.
            try:
                data = conn.read_match(ANSWER, timeout=SETTLE)
                closed = b"</stream:stream>" in data
                if closed:
                    data += conn.read_to_close(5)[0]
            except rx.Closed as e:
                data, closed = e.args[0], True
            except rx.Timeout:
                data, closed = b"", False
            if re.search(rb"<success\b", data):
                # A mutated <auth> that still logs in: a new stream header is due, so what
                # follows (the NUL byte) is a refused header.
                case.header = True
                case.name += " [logged in]"
            if closed:
                self.closed(case, data)
            else:
                conn.buf = data + conn.buf  # finish() classifies all of it
                self.finish(conn, case)
        finally:
            conn.close()
        self.fresh_login(f"{stage}:{case.name}").close()

    def summary(self, started: float, **extra) -> str:
        lines = [
            f"{self.title}: {self.sent} mutations sent, {self.logins} logins, "
            f"{time.monotonic() - started:.1f} s",
            "  outcomes: " + ", ".join(f"{k}: {v}" for k, v in sorted(self.outcomes.items())),
            "  stream errors: " + ", ".join(f"{k}: {v}" for k, v in sorted(self.conditions.items())),
        ]
        fixed = [n for n in self.silent_header_closes if not n.startswith("random")]
        if fixed:
            lines.append("  closed without error, header refused: " + ", ".join(fixed))
        if len(fixed) < len(self.silent_header_closes):
            lines.append(f"  ... and {len(self.silent_header_closes) - len(fixed)} random header mutations")
        lines += [f"  {k}: {v}" for k, v in extra.items()]
        return "\n".join(lines)


def report(capsys, text: str) -> None:
    """Into the CI log even when pytest captures output."""
    with capsys.disabled():
        print("\n" + text)


# --- random mutations -----------------------------------------------------------------------

TOKENS = [
    b"<", b">", b"&", b"'", b'"', b"/", b"=", b"\0", b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80", b"]]>", b"<!--", b"-->", b"<?x y?>", b"<![CDATA[", b"<!DOCTYPE x>",
    b"&#0;", b"&#xD800;", b"&#x110000;", b"&foo;", b"&amp;", b"&#x41;", b"</x>", b"<a>",
    b"<x xmlns='urn:unknown'/>", b" xmlns:p='urn:p' p:q='r'", b" xmlns=''", b"<p:q/>",
    b"<stream:stream>", b"\r\n", b"\t",
]


def random_mutation(rng: random.Random, stanzas: list[bytes]) -> Case:
    base = rng.choice(stanzas)
    op = rng.choice(["flip", "flip", "truncate", "insert", "insert", "delete", "repeat", "nest", "attr", "splice"])
    if op == "flip":
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return Case("flip", bytes(data))
    if op == "truncate":
        cut = rng.randrange(1, len(base))
        more = b"".join(rng.choice(stanzas) for _ in range(rng.randint(1, 3)))
        return Case(f"truncate@{cut}+more", base[:cut] + more)
    if op == "insert":
        at = rng.randrange(len(base) + 1)
        token = rng.choice(TOKENS) * rng.choice([1, 1, 2, 50, 3000])
        return Case("insert", base[:at] + token + base[at:])
    if op == "delete":
        a = rng.randrange(len(base))
        b = min(len(base), a + rng.randint(1, 12))
        return Case("delete", base[:a] + base[b:])
    if op == "repeat":
        a = rng.randrange(len(base))
        b = min(len(base), a + rng.randint(1, 20))
        return Case("repeat", base[:b] + base[a:b] * rng.choice([2, 100, 5000]) + base[b:])
    if op == "nest":
        levels = rng.choice([2, 10, 63, 64, 65, 66, 200, 3000])
        # Inserted after the first tag: inside a stanza (one level more), or at the top level
        # after an empty element or a stream header.
        cut = base.index(b">") + 1
        inner = b"<n>" * levels + b"x" + b"</n>" * levels
        depth = levels if base.startswith(b"<?xml") or base[:cut].endswith(b"/>") else levels + 1
        return Case(f"nest{depth}", base[:cut] + inner + base[cut:],
                    expect="policy-violation" if depth > MAX_DEPTH else None)
    if op == "attr":
        size = rng.choice([100, RXML_TOKEN - 200, RXML_TOKEN + 10, 100_000, STANZA_CAP + 100])
        at = re.search(rb"[ />]", base).start()
        return Case(f"attr{size}", base[:at] + b" x='" + b"v" * size + b"'" + base[at:])
    a, b = sorted(rng.randrange(len(base)) for _ in range(2))
    other = rng.choice(stanzas)
    c = rng.randrange(len(other))
    return Case("splice", base[:a] + other[c:] + base[b:])


# --- the tests ------------------------------------------------------------------------------


def test_depth_limit_at_every_stage(server, capsys):
    """64 levels are delivered; 65, 100, 1,000, 10,000 and 100,000 end the stream with
    <policy-violation/> before STARTTLS, after TLS before SASL, and in a bound session."""
    started = time.monotonic()
    h = Harness(server, "depth limit")
    bob = h.start_bystander()
    alice = h.login("alice", "deep")

    marker = b"deepest-of-64"
    alice.send(nest(MAX_DEPTH, marker, to=bob.jid))
    got = bob.read_until(marker)
    assert b"urn:example:deep" in got, got[:300]
    assert alice.ping("after-64"), "a 64-level stanza ended the sender's stream"

    for levels in [MAX_DEPTH + 1, 100, 1_000, 10_000, 100_000]:
        alice = h.session_case(alice, Case(f"session nest {levels}", nest(levels, to=bob.jid), expect="policy-violation"))
        for stage in ["plain", "tls"]:
            h.fresh_case(stage, Case(f"{stage} nest {levels}", bare_nest(levels), expect="policy-violation"))
    # Deep nesting inside <auth>: the depth limit holds before the SASL code sees it.
    h.fresh_case("tls", Case("auth nest 1000", f"<auth xmlns='{SASL}' mechanism='PLAIN'>".encode() + bare_nest(1000) + b"</auth>", expect="policy-violation"))
    h.check_bystander()
    report(capsys, h.summary(started))


def session_cases(bob_jid: str) -> list[Case]:
    """The fixed cases for a bound session: one of each kind the issue asks about."""
    to = bob_jid
    msg = lambda body: f"<message to='{to}'><body>".encode() + body + b"</body></message>"
    ping = b"<iq type='get' id='trunc-ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
    return [
        Case("huge attr under token limit", huge_attr(RXML_TOKEN - 200, to)),
        Case("huge attr over token limit", huge_attr(RXML_TOKEN + 1, to), expect="not-well-formed"),
        Case("huge attr near stanza cap", huge_attr(STANZA_CAP - 1024, to), expect="not-well-formed"),
        Case("huge attr over stanza cap", huge_attr(STANZA_CAP + 16 * 1024, to), expect="not-well-formed"),
        Case("body near stanza cap", msg(b"b" * (STANZA_CAP - 1024))),
        # The cap holds to within one 8 KiB read (crates/xmpp/src/stream/io.rs): 16 KiB over.
        Case("body over stanza cap", msg(b"b" * (STANZA_CAP + 16 * 1024)), expect="policy-violation"),
        Case("5,000 attributes", many_attrs(5_000, to)),
        Case("20,000 attributes", many_attrs(20_000, to)),
        Case("duplicate attribute", f"<message to='{to}' a='1' a='2'/>".encode(), expect="not-well-formed"),
        Case("long element name", f"<message to='{to}'><".encode() + b"n" * (RXML_TOKEN + 1) + b"/></message>"),
        Case("unknown namespace payload", f"<message to='{to}'><x xmlns='urn:unknown:ns'><y z='1'/></x></message>".encode()),
        Case("unknown namespace query", b"<iq type='get' id='u1' to='localhost'><query xmlns='urn:unknown'/></iq>"),
        Case("unknown top-level element", b"<foo xmlns='urn:bar'/>"),
        Case("stream-namespace top-level element", b"<stream:foo/>"),
        Case("message in a wrong namespace", f"<message xmlns='urn:wrong' to='{to}'/>".encode()),
        Case("entity &foo;", msg(b"&foo;"), expect="not-well-formed"),
        Case("entity &#0;", msg(b"&#0;"), expect="not-well-formed"),
        Case("entity &#xD800;", msg(b"&#xD800;"), expect="not-well-formed"),
        Case("entity &#x110000;", msg(b"&#x110000;"), expect="not-well-formed"),
        Case("bad entity in attribute", f"<message to='{to}' x='&#0;'/>".encode(), expect="not-well-formed"),
        Case("invalid UTF-8 \\xff", msg(b"\xff\xfe"), expect="not-well-formed"),
        Case("overlong UTF-8", msg(b"\xc0\xaf"), expect="not-well-formed"),
        Case("UTF-8 surrogate", msg(b"\xed\xa0\x80"), expect="not-well-formed"),
        Case("truncated UTF-8 then more", msg(b"\xe2\x82") + ping),
        Case("NUL in body", msg(b"a\0b"), expect="not-well-formed"),
        Case("NUL in element name", b"<mess\0age/>", expect="not-well-formed"),
        Case("NUL in attribute", f"<message to='{to}' x='\0'/>".encode(), expect="not-well-formed"),
        Case("comment", b"<!-- hello -->", expect="not-well-formed"),
        Case("processing instruction", b"<?php echo 1 ?>", expect="not-well-formed"),
        Case("DOCTYPE", b"<!DOCTYPE stream [<!ENTITY x 'y'>]>", expect="not-well-formed"),
        Case("billion laughs", b"<!DOCTYPE l [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;'>]>" + msg(b"&b;")),
        Case("CDATA in body", msg(b"<![CDATA[<not-xml>]]>")),
        Case("mismatched close tag", f"<message to='{to}'><body></message>".encode(), expect="not-well-formed"),
        Case("close tag at top level", b"</message>", expect="not-well-formed"),
        Case("undeclared prefix", msg(b"<p:x/>"), expect="not-well-formed"),
        Case("second stream header", rx.header()),
        Case("second stream header without XML declaration", rx.header()[len(b"<?xml version='1.0'?>"):]),
        Case("truncated start tag then more", f"<message to='{to}'><bo".encode() + ping),
        Case("truncated attribute then more", b"<iq type='get' id='x" + ping),
        Case("truncated stanza then more", f"<message to='{to}'><body>cut".encode() + ping + ping),
    ]


def test_session_mutations(server, capsys):
    """A logged-in attacker sends the fixed cases, then seeded random mutations of the corpus."""
    started = time.monotonic()
    deadline = started + SESSION_BUDGET
    h = Harness(server, f"session mutations (seed {SEED})")
    bob = h.start_bystander()
    alice = h.login("alice", "attacker")
    fixed = session_cases(bob.jid)
    for case in fixed:
        alice = h.session_case(alice, case)
    rng = random.Random(SEED)
    stanzas = corpus(bob.jid)
    random_sent = 0
    while time.monotonic() < deadline:
        case = random_mutation(rng, stanzas)
        case.name = f"random #{random_sent} ({case.name}, seed {SEED})"
        alice = h.session_case(alice, case)
        random_sent += 1
    alice.close()
    h.check_bystander()
    report(capsys, h.summary(started, fixed=len(fixed), random=random_sent))
    assert random_sent >= MIN_RANDOM_SESSION, f"only {random_sent} random mutations in the budget"


def preauth_cases() -> list[tuple[str, Case]]:
    """(stage, case) for fresh connections: stream headers, before STARTTLS, before SASL."""
    decl = b"<?xml version='1.0'?>"
    stream_attrs = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    auth = lambda mech, payload: f"<auth xmlns='{SASL}' mechanism='{mech}'>".encode() + payload + b"</auth>"
    plain = lambda s: base64.b64encode(s)
    cases = [
        ("header", Case("bad default namespace", rx.header(ns="jabber:server"), header=True)),
        ("header", Case("unknown default namespace", rx.header(ns="urn:nope"), header=True)),
        ("header", Case("bad stream namespace", decl + f"<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='urn:wrong' version='1.0'>".encode(), header=True)),
        ("header", Case("unbound stream prefix", decl + b"<stream:stream to='localhost' xmlns='jabber:client' version='1.0'>", header=True)),
        ("header", Case("version 2.0", rx.header(version="2.0"), header=True)),
        ("header", Case("version garbage", rx.header(version="x.y"), header=True)),
        ("header", Case("no version", decl + f"<stream:stream to='localhost' {stream_attrs}>".encode(), header=True)),
        ("header", Case("huge to (300 KB)", rx.header(to="a" * 300_000), header=True)),
        ("header", Case("long to (7 KB)", rx.header(to="a" * 7_000), header=True)),
        ("header", Case("unknown host", rx.header(to="example.org"), header=True)),
        ("header", Case("no to", decl + f"<stream:stream {stream_attrs} version='1.0'>".encode(), header=True)),
        ("header", Case("10,000 attributes", decl + f"<stream:stream to='localhost' {stream_attrs} version='1.0' ".encode() + b" ".join(b"a%d='1'" % i for i in range(10_000)) + b">", header=True)),
        ("header", Case("NUL in header", rx.header().replace(b"localhost", b"local\0host"), header=True)),
        ("header", Case("invalid UTF-8 in header", rx.header().replace(b"localhost", b"local\xffhost"), header=True)),
        ("header", Case("not a stream", b"<foo/>", header=True)),
        ("header", Case("HTTP request", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", header=True)),
        ("header", Case("TLS ClientHello on the STARTTLS port", bytes.fromhex("160301002c010000280303") + b"\0" * 40, header=True)),
        ("header", Case("header then deep nesting", rx.header() + bare_nest(10_000), expect="policy-violation")),
        ("header", Case("DOCTYPE before header", b"<!DOCTYPE x>" + rx.header(), header=True)),
        ("plain", Case("stanza before STARTTLS", b"<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>", expect="not-authorized")),
        ("plain", Case("auth before STARTTLS", auth("PLAIN", plain(b"\0alice\0x")))),
        ("plain", Case("starttls in a wrong namespace", b"<starttls xmlns='urn:wrong'/>")),
        ("plain", Case("second header before STARTTLS", rx.header())),
        ("plain", Case("huge attribute before STARTTLS", b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls' x='" + b"v" * (STANZA_CAP + 10) + b"'/>")),
        ("plain", Case("garbage before STARTTLS", bytes(range(1, 256)) * 4)),
        ("tls", Case("stanza before SASL", b"<message to='bob@localhost'><body>x</body></message>", expect="not-authorized")),
        ("tls", Case("unknown mechanism", auth("FOO", b"AAAA"))),
        ("tls", Case("no mechanism attribute", f"<auth xmlns='{SASL}'>AAAA</auth>".encode())),
        ("tls", Case("bad base64", auth("PLAIN", b"!!!!"))),
        ("tls", Case("empty PLAIN", auth("PLAIN", b""))),
        ("tls", Case("PLAIN without NULs", auth("PLAIN", plain(b"alice")))),
        ("tls", Case("PLAIN wrong password x3", auth("PLAIN", plain(b"\0alice\0wrong")) * 3)),
        ("tls", Case("PLAIN unknown user", auth("PLAIN", plain(b"\0nobody\0pw")))),
        ("tls", Case("PLAIN non-UTF-8 user", auth("PLAIN", plain(b"\0\xff\xfe\0pw")))),
        ("tls", Case("PLAIN authzid of another user", auth("PLAIN", plain(b"bob@localhost\0alice\0x")))),
        ("tls", Case("PLAIN huge credentials", auth("PLAIN", plain(b"\0alice\0" + b"p" * 150_000)))),
        ("tls", Case("auth over the stanza cap", auth("PLAIN", b"QUFB" * (STANZA_CAP // 4 + 100)), expect="policy-violation")),
        ("tls", Case("auth in a wrong namespace", b"<auth xmlns='urn:wrong' mechanism='PLAIN'>AAAA</auth>")),
        ("tls", Case("SCRAM garbage first message", auth("SCRAM-SHA-256", plain(b"n,,n=alice,r=")))),
        ("tls", Case("SCRAM bad gs2 header", auth("SCRAM-SHA-256", plain(b"q,,n=alice,r=abc")))),
        ("tls", Case("SCRAM-PLUS unknown binding", auth("SCRAM-SHA-256-PLUS", plain(b"p=nope,,n=alice,r=abc")))),
        ("tls", Case("response without auth", f"<response xmlns='{SASL}'>AAAA</response>".encode())),
        ("tls", Case("abort without auth", f"<abort xmlns='{SASL}'/>".encode())),
        ("tls", Case("attribute over token limit in auth", f"<auth xmlns='{SASL}' mechanism='".encode() + b"P" * (RXML_TOKEN + 1) + b"'/>", expect="not-well-formed")),
        ("tls", Case("second header before SASL", rx.header())),
        ("tls", Case("starttls again", rx.STARTTLS)),
    ]
    return cases


def test_preauth_mutations(server, capsys):
    """Mutated stream headers, input before STARTTLS, and mutated <auth> after TLS, each on a
    fresh connection; then seeded random mutations of those."""
    started = time.monotonic()
    deadline = started + PREAUTH_BUDGET
    h = Harness(server, f"pre-auth mutations (seed {SEED})")
    h.start_bystander()
    fixed = preauth_cases()
    for stage, case in fixed:
        h.fresh_case(stage, case)
    rng = random.Random(SEED + 1)
    creds = base64.b64encode(b"\0alice\0" + server.passwords["alice"].encode())
    bases = [
        ("header", rx.header(), True),
        ("plain", rx.STARTTLS, False),
        ("tls", f"<auth xmlns='{SASL}' mechanism='PLAIN'>".encode() + creds + b"</auth>", False),
        ("tls", f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>".encode() + base64.b64encode(b"n,,n=alice,r=0123456789abcdef") + b"</auth>", False),
    ]
    random_sent = 0
    while time.monotonic() < deadline:
        stage, base, is_header = rng.choice(bases)
        case = random_mutation(rng, [base])
        case.name = f"random #{random_sent} ({stage} {case.name}, seed {SEED + 1})"
        case.header = is_header
        case.expect = None if is_header else case.expect
        h.fresh_case(stage, case)
        random_sent += 1
    h.check_bystander()
    report(capsys, h.summary(started, fixed=len(fixed), random=random_sent))
    assert random_sent >= MIN_RANDOM_PREAUTH, f"only {random_sent} random mutations in the budget"

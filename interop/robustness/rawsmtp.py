"""SMTP on raw sockets for robustness tests: a sink that plays the MTA's re-injection
listener (the gateway's next hop) and records every message, and a client that sends exactly
the bytes it is given and reads replies with a timeout. Standard library only.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Received:
    """One message the sink accepted."""

    mail_from: str
    rcpts: list[str]
    data: bytes


@dataclass
class Sink:
    """ESMTP server on a free loopback port: 220, EHLO (PIPELINING, 8BITMIME, SIZE,
    SMTPUTF8), HELO, MAIL, RCPT, DATA (dot-unstuffed), RSET, NOOP, QUIT. The gateway relays
    with DATA (crates/gateway/src/relay.rs), so CHUNKING is not offered."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> "Sink":
        self._listener = socket.create_server((self.host, 0))
        self.port = self._listener.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, name="smtp-sink", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(120)
        f = conn.makefile("rb")
        out = conn.makefile("wb")

        def say(line: str) -> None:
            out.write(line.encode() + b"\r\n")
            out.flush()

        try:
            say("220 sink ESMTP")
            mail_from, rcpts = None, []
            while True:
                line = f.readline(1 << 20)
                if not line:
                    return
                cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    say("250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 104857600")
                elif verb in ("HELO", "NOOP"):
                    say("250 ok")
                elif verb == "RSET":
                    mail_from, rcpts = None, []
                    say("250 ok")
                elif verb == "MAIL":
                    m = re.match(r"MAIL FROM:<([^>]*)>", cmd, re.I)
                    mail_from = m.group(1) if m else cmd
                    rcpts = []
                    say("250 ok")
                elif verb == "RCPT":
                    m = re.match(r"RCPT TO:<([^>]*)>", cmd, re.I)
                    rcpts.append(m.group(1) if m else cmd)
                    say("250 ok")
                elif verb == "DATA":
                    say("354 go on")
                    lines = []
                    while True:
                        d = f.readline(1 << 30)
                        if not d:
                            return
                        if d == b".\r\n":
                            break
                        lines.append(d[1:] if d.startswith(b".") else d)
                    with self._lock:
                        self.messages.append(Received(mail_from or "", rcpts, b"".join(lines)))
                        self._lock.notify_all()
                    say("250 queued")
                    mail_from, rcpts = None, []
                elif verb == "QUIT":
                    say("221 bye")
                    return
                else:
                    self.errors.append(cmd[:200])
                    say("502 not here")
        except OSError:
            return
        finally:
            conn.close()

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def wait_for(self, token: bytes, timeout: float = 15.0) -> Received | None:
        """The first message containing `token`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for m in self.messages:
                    if token in m.data:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)

    def has(self, token: bytes) -> bool:
        with self._lock:
            return any(token in m.data for m in self.messages)


class NoReply(Exception):
    """No complete reply within the timeout (the connection is still open)."""


class Hangup(Exception):
    """The server closed the connection before a complete reply."""


class Client:
    """One SMTP client connection to the gateway."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def send(self, data: bytes) -> bool:
        """False when the server closed or reset the connection meanwhile."""
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def reply(self, timeout: float | None = None) -> tuple[int, str]:
        """The next complete reply (all its lines): (code, text). Raises NoReply or Hangup."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            # A reply is lines "ddd-..." ending with a line "ddd ..." (or a bare "ddd").
            m = re.match(rb"((?:\d{3}-[^\n]*\n)*)(\d{3})(?: [^\n]*)?\r?\n", self.buf)
            if m:
                text = self.buf[: m.end()].decode("utf-8", "replace")
                self.buf = self.buf[m.end() :]
                return int(m.group(2)), text
            if self.eof:
                raise Hangup(self.buf[:300])
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoReply(self.buf[:300])
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                raise NoReply(self.buf[:300]) from None
            except OSError:
                data = b""
            if not data:
                self.eof = True
            self.buf += data

    def command(self, line: bytes, timeout: float | None = None) -> tuple[int, str]:
        if not self.send(line):
            raise Hangup(b"write failed")
        return self.reply(timeout)

    def closed_by_server(self, timeout: float = 2.0) -> bool:
        """Whether the server closes the connection (with nothing more to say) in time."""
        try:
            self.reply(timeout)
            return False
        except Hangup:
            return True
        except NoReply:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def dot_stuff(message: bytes) -> bytes:
    """CRLF line ends, leading dots doubled, the final CRLF.CRLF."""
    message = re.sub(rb"\r?\n", b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    message = re.sub(rb"(?m)^\.", b"..", message)
    return message + b".\r\n"

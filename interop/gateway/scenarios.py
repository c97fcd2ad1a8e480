#!/usr/bin/env python3
"""Postern's OpenPGP gateway behind a real Postfix, driven by swaks, checked with GnuPG.

Mail flow (every port on 127.0.0.1, picked free at start):

    swaks -> Postfix smtpd :IN -> queue -> content_filter postern:[127.0.0.1]:GW
          -> postern serve (gateway) -> Postfix smtpd :REINJECT (content_filter=)
          -> queue -> smtp:[127.0.0.1]:SINK -> the capture sink below (one .eml per mail)

Postfix runs as its own instance (`postfix -c DIR`): config, queue and data directories
under a temporary directory, loopback only, nothing of the system's Postfix is used or
touched. Standard library only; run through interop/gateway/run.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

POSTERN = os.environ.get("POSTERN_BIN", "postern")
WAIT = 60  # seconds for any one thing to happen


def log(msg):
    print(f"gateway-interop: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what):
    end = time.time() + WAIT
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port}")


def run(cmd, stdin=b"", env=None, check=True):
    p = subprocess.run(cmd, input=stdin, capture_output=True, env=env)
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n"
                         f"{p.stdout.decode(errors='replace')}\n{p.stderr.decode(errors='replace')}")
    return p


# --- the capture sink: the last hop ----------------------------------------------------------

class Sink:
    """A minimal SMTP server that stores each mail (envelope + data) in memory."""

    def __init__(self, port):
        self.mails = []
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            conn, _ = self.server.accept()
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        f = conn.makefile("rwb")
        f.write(b"220 sink ESMTP\r\n")
        f.flush()
        rcpts, sender = [], ""
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.upper()
            if cmd.startswith(b"EHLO"):
                f.write(b"250-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n")
            elif cmd.startswith(b"MAIL"):
                sender, rcpts = line.decode(errors="replace").split("<", 1)[1].split(">")[0], []
                f.write(b"250 ok\r\n")
            elif cmd.startswith(b"RCPT"):
                rcpts.append(line.decode(errors="replace").split("<", 1)[1].split(">")[0])
                f.write(b"250 ok\r\n")
            elif cmd.startswith(b"DATA"):
                f.write(b"354 go\r\n")
                f.flush()
                data = bytearray()
                while True:
                    l = f.readline()
                    if not l or l == b".\r\n":
                        break
                    data += l[1:] if l.startswith(b".") else l
                with self.lock:
                    self.mails.append((sender, rcpts, bytes(data)))
                f.write(b"250 queued\r\n")
            elif cmd.startswith(b"QUIT"):
                f.write(b"221 bye\r\n")
                f.flush()
                return
            else:
                f.write(b"250 ok\r\n")
            f.flush()

    def wait(self, count):
        end = time.time() + WAIT
        while time.time() < end:
            with self.lock:
                if len(self.mails) >= count:
                    return self.mails[count - 1]
            time.sleep(0.2)
        raise SystemExit(f"mail #{count} never reached the sink")

    def count(self):
        with self.lock:
            return len(self.mails)


# --- Postfix as a private instance ----------------------------------------------------------

MASTER_CF = """\
127.0.0.1:{inp} inet n - n - - smtpd
127.0.0.1:{reinject} inet n - n - - smtpd
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
  -o smtpd_relay_restrictions=permit_mynetworks,reject
postern unix - - n - 4 smtp
  -o smtp_send_xforward_command=yes
  -o smtp_data_done_timeout=1200s
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {work}/postfix-queue
data_directory = {work}/postfix-data
maillog_file = {work}/postfix.log
maillog_file_prefixes = {work}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.org
mydomain = example.org
myorigin = example.org
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtputf8_enable = yes
content_filter = postern:[127.0.0.1]:{gw}
default_transport = smtp:[127.0.0.1]:{sink}
relay_transport = smtp:[127.0.0.1]:{sink}
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
queue_run_delay = 10s
minimal_backoff_time = 5s
maximal_backoff_time = 10s
biff = no
"""


class Postfix:
    def __init__(self, work, ports):
        self.dir = os.path.join(work, "postfix")
        os.makedirs(self.dir)
        for d in ("postfix-queue", "postfix-data"):
            os.makedirs(os.path.join(work, d))
        shutil.chown(os.path.join(work, "postfix-data"), "postfix", "postfix")
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(work=work, **ports))
        with open(os.path.join(self.dir, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(**ports))
        self.work = work

    def postfix(self, *args, check=True):
        return run(["postfix", "-c", self.dir, *args], check=check)

    def start(self, port):
        self.postfix("set-permissions", check=False)
        self.postfix("check")
        self.postfix("start")
        wait_port(port, "postfix")

    def flush(self):
        run(["postqueue", "-c", self.dir, "-f"])

    def queue(self):
        return run(["postqueue", "-c", self.dir, "-p"]).stdout.decode(errors="replace")

    def stop(self):
        self.postfix("stop", check=False)

    def log(self):
        try:
            with open(os.path.join(self.work, "postfix.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""


# --- Postern ---------------------------------------------------------------------------------

class Postern:
    def __init__(self, work, ports):
        self.config = os.path.join(work, "postern.toml")
        with open(self.config, "w") as f:
            f.write(f"""\
data_dir = "{work}/postern-data"
[[domain]]
name = "example.org"
[xmpp]
enabled = false
[http]
listen = []
[gateway]
listen = "127.0.0.1:{ports['gw']}"
next_hop = "127.0.0.1:{ports['reinject']}"
hostname = "postern.example.org"
# Postfix forwards the client address with XFORWARD: swaks connects from loopback.
local_senders = "authenticated"
trusted_networks = ["127.0.0.0/8"]
# Outbound encryption only where a content-filter rule asks for it, so the scenarios show
# a rule-triggered encryption (and its absence without the token).
[gateway.policy]
encrypt = false
[[gateway.rules]]
name = "confidential subject"
conditions = [{{ subject_contains = "[secure]" }}]
actions = [{{ encrypt = true }}, {{ add_header = "X-Classification: confidential" }}]
""")
        self.port = ports["gw"]
        self.proc = None
        self.stderr = os.path.join(work, "postern.log")

    def cli(self, *args, stdin=b""):
        return run([POSTERN, "--config", self.config, *args], stdin=stdin).stdout

    def start(self):
        self.proc = subprocess.Popen([POSTERN, "--config", self.config, "serve"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.stderr, "ab"))
        wait_port(self.port, "postern")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


# --- GnuPG -----------------------------------------------------------------------------------

class Gpg:
    def __init__(self, work, name):
        self.home = os.path.join(work, f"gnupg-{name}")
        os.makedirs(self.home, mode=0o700)

    def __call__(self, *args, stdin=b"", check=True):
        env = dict(os.environ, GNUPGHOME=self.home)
        return run(["gpg", "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", "",
                    "--trust-model", "always", "--status-fd", "2", *args], stdin=stdin, env=env, check=check)


# --- helpers on mail bytes -------------------------------------------------------------------

def header(mail, name):
    head = mail.split(b"\r\n\r\n", 1)[0].decode(errors="replace").replace("\r\n ", " ").replace("\r\n\t", " ")
    for line in head.split("\r\n"):
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


def armored(mail, kind):
    begin, end = f"-----BEGIN PGP {kind}-----".encode(), f"-----END PGP {kind}-----".encode()
    b = mail.index(begin)
    return mail[b:mail.index(end, b) + len(end)]


def swaks(port, sender, rcpt, *extra):
    p = run(["swaks", "--silent", "2", "--server", f"127.0.0.1:{port}", "--helo", "client.example.org",
             "--from", sender, "--to", rcpt, *extra], check=False)
    if p.returncode != 0:
        raise SystemExit(f"swaks failed:\n{p.stdout.decode(errors='replace')}{p.stderr.decode(errors='replace')}")


# --- the scenarios ---------------------------------------------------------------------------

def main():
    work = tempfile.mkdtemp(prefix="postern-gw-interop-")
    os.chmod(work, 0o755)  # Postfix's unprivileged daemons read their config below here
    ports = {k: free_port() for k in ("inp", "reinject", "gw", "sink")}
    log(f"work dir {work}, ports {ports}")
    sink = Sink(ports["sink"])
    postern = Postern(work, ports)
    postfix = Postfix(work, ports)
    passed, failed = 0, 0
    try:
        # Keys: Alice is ours (generated by Postern), Bob is a partner with gpg.
        postern.cli("pgp", "keygen", "alice@example.org", "--name", "Alice")
        bob = Gpg(work, "bob")
        bob("--quick-gen-key", "Bob <bob@partner.example>", "future-default", "default", "never")
        bob_pub = bob("--armor", "--export", "bob@partner.example").stdout
        with open(os.path.join(work, "bob.asc"), "wb") as f:
            f.write(bob_pub)
        postern.cli("pgp", "import", os.path.join(work, "bob.asc"))
        alice_pub = postern.cli("pgp", "export", "alice@example.org")
        bob("--import", stdin=alice_pub)
        alice_fpr = postern.cli("pgp", "list", "--local").split(b"\t")[0].decode()

        postern.start()
        postfix.start(ports["inp"])

        def scenario(name, fn):
            nonlocal passed, failed
            try:
                fn()
                passed += 1
                log(f"ok: {name}")
            except (SystemExit, AssertionError, ValueError) as e:
                failed += 1
                log(f"FAILED: {name}: {e}")

        def outbound():
            """Alice -> Bob through Postfix: PGP/MIME that Bob's gpg decrypts, signed by Alice."""
            body = "Grüße aus Köln, Bob — 日本語\n.dot line\n"
            swaks(ports["inp"], "alice@example.org", "bob@partner.example",
                  "--header", "Subject: [secure] interop outbound", "--body", body,
                  "--add-header", "MIME-Version: 1.0",
                  "--add-header", "Content-Type: text/plain; charset=utf-8",
                  "--add-header", "Content-Transfer-Encoding: 8bit")
            _, rcpts, mail = sink.wait(1)
            assert rcpts == ["bob@partner.example"], rcpts
            assert header(mail, "X-Postern-PGP").startswith("encrypted signed;"), header(mail, "X-Postern-PGP")
            assert header(mail, "Content-Type").startswith("multipart/encrypted;"), header(mail, "Content-Type")
            assert "Grüße".encode() not in mail, "plaintext leaked"
            p = bob("--decrypt", stdin=armored(mail, "MESSAGE"))
            assert "Grüße aus Köln, Bob — 日本語".encode() in p.stdout, p.stdout
            # The rule's other action.
            assert header(mail, "X-Classification") == "confidential", header(mail, "X-Classification")
            status = p.stderr.decode(errors="replace")
            assert any(l.startswith("[GNUPG:] VALIDSIG") and l.endswith(alice_fpr) for l in status.splitlines()), status

        def inbound():
            """Bob -> Alice: gpg's PGP/MIME is decrypted for Alice, with Bob's good signature."""
            inner = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHallo Alice, Grüße!\r\n"
            ct = bob("--armor", "--encrypt", "--sign", "-r", "alice@example.org", "-u", "bob@partner.example",
                     stdin=inner.encode()).stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            mail = (b"From: Bob <bob@partner.example>\r\nTo: alice@example.org\r\nSubject: interop inbound\r\n"
                    b"MIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n"
                    b"--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n--b1\r\nContent-Type: application/octet-stream\r\n\r\n"
                    + ct + b"\r\n--b1--\r\n")
            path = os.path.join(work, "inbound.eml")
            with open(path, "wb") as f:
                f.write(mail)
            before = sink.count()
            swaks(ports["inp"], "bob@partner.example", "alice@example.org", "--data", path)
            _, rcpts, got = sink.wait(before + 1)
            assert rcpts == ["alice@example.org"], rcpts
            trace = header(got, "X-Postern-PGP")
            assert trace.startswith("decrypted; signature=good "), trace
            assert "Hallo Alice, Grüße!".encode() in got, got
            assert b"BEGIN PGP MESSAGE" not in got

        def no_loss():
            """Postern down: Postfix keeps the mail queued; Postern up + flush: delivered."""
            postern.stop()
            before = sink.count()
            swaks(ports["inp"], "alice@example.org", "bob@partner.example", "--header", "Subject: [secure] while down",
                  "--body", "kept in the queue")
            time.sleep(2)
            assert sink.count() == before, "delivered while the gateway was down?"
            queue = postfix.queue()
            assert "bob@partner.example" in queue, queue
            postern.start()
            postfix.flush()
            _, rcpts, mail = sink.wait(before + 1)
            assert rcpts == ["bob@partner.example"]
            assert header(mail, "X-Postern-PGP").startswith("encrypted"), header(mail, "X-Postern-PGP")
            assert b"kept in the queue" in bob("--decrypt", stdin=armored(mail, "MESSAGE")).stdout

        def keyless_signed():
            """Alice -> a partner without key: plain multipart/signed that gpg verifies."""
            before = sink.count()
            swaks(ports["inp"], "alice@example.org", "carol@nokey.example", "--header", "Subject: signed",
                  "--body", "signed, not encrypted")
            _, rcpts, mail = sink.wait(before + 1)
            assert rcpts == ["carol@nokey.example"]
            assert header(mail, "Content-Type").startswith("multipart/signed;"), header(mail, "Content-Type")
            ct = header(mail, "Content-Type")
            boundary = ct.split('boundary="', 1)[1].split('"', 1)[0].encode()
            delim = b"\r\n--" + boundary
            body = b"\r\n" + mail.split(b"\r\n\r\n", 1)[1]
            parts = body.split(delim)[1:-1]
            signed = parts[0][2:]
            sig = armored(parts[1], "SIGNATURE")
            for name, data in (("part", signed), ("part.sig", sig)):
                with open(os.path.join(work, name), "wb") as f:
                    f.write(data)
            p = bob("--verify", os.path.join(work, "part.sig"), os.path.join(work, "part"))
            assert "VALIDSIG" in p.stderr.decode(errors="replace")

        def rule_off():
            """No token: the rule does not match, so Bob (who has a key) gets signed plain text."""
            before = sink.count()
            swaks(ports["inp"], "alice@example.org", "bob@partner.example", "--header", "Subject: lunch?",
                  "--body", "no secrets here")
            _, rcpts, mail = sink.wait(before + 1)
            assert rcpts == ["bob@partner.example"], rcpts
            assert header(mail, "Content-Type").startswith("multipart/signed;"), header(mail, "Content-Type")
            assert b"no secrets here" in mail
            assert header(mail, "X-Classification") is None, "rule applied without its token"

        scenario("rule [secure] in the subject encrypts and signs; gpg decrypts", outbound)
        scenario("no token: the rule does not fire, signed plain text", rule_off)
        scenario("inbound PGP/MIME from gpg decrypted for the local user", inbound)
        scenario("gateway down: Postfix queues, later delivered", no_loss)
        scenario("keyless partner gets multipart/signed verified by gpg", keyless_signed)
    except BaseException:
        failed += 1
        raise
    finally:
        postfix.stop()
        postern.stop()
        if failed or os.environ.get("KEEP"):
            log(f"kept {work}")
            log("postfix log:\n" + postfix.log()[-4000:])
            try:
                with open(postern.stderr, errors="replace") as f:
                    log("postern log:\n" + f.read()[-4000:])
            except OSError:
                pass
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"gateway: {passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())

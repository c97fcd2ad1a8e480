"""Fixtures: a real `postern serve` process on free loopback ports with a temporary data dir.

Each test that asks for `server` gets its own process, config and SQLite database, with the
accounts in ACCOUNTS created through the admin CLI (`postern account add --password-stdin`).
The server's stderr (its log) is attached to the report of every failed test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "localhost"
# A second served domain (virtual host) with its own generated certificate, chosen by SNI.
OTHER_DOMAIN = "example.net"
ACCOUNTS = {
    "alice": (DOMAIN, "alice-Secret-1"),
    "bob": (DOMAIN, "bob-Secret-2"),
    "carol": (DOMAIN, "carol-Secret-3"),
    "dave": (OTHER_DOMAIN, "dave-Secret-4 with spaces"),
}
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def postern_bin() -> Path:
    path = Path(os.environ.get("POSTERN_BIN", REPO / "target" / "debug" / "postern"))
    if not path.is_file():
        pytest.fail(f"postern binary not found at {path} (build it: cargo build -p postern)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Server:
    """One running `postern serve` with its config, ports and accounts."""

    dir: Path
    bin: Path
    host: str = "127.0.0.1"
    domain: str = DOMAIN
    other_domain: str = OTHER_DOMAIN
    starttls_port: int = 0
    direct_tls_port: int = 0
    https_port: int = 0
    proxy65_port: int = 0
    passwords: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    # Reuse by other suites (interop/robustness): extra `key = value` lines (TOML values) for
    # [xmpp.limits]; the gateway on a free port relaying to `next_hop_port` (0: disabled);
    # further TOML appended to the config (e.g. [gateway.policy]).
    xmpp_limits: dict[str, str] = field(default_factory=dict)
    next_hop_port: int = 0
    gateway_port: int = 0
    extra_config: str = ""

    @property
    def config(self) -> Path:
        return self.dir / "postern.toml"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def cert(self, domain: str) -> Path:
        """A domain's self-signed certificate, generated on first start."""
        return self.data_dir / "certs" / f"{domain}.crt"

    @property
    def ca_file(self) -> Path:
        """The main domain's certificate; clients of that domain trust exactly it."""
        return self.cert(self.domain)

    @property
    def log_file(self) -> Path:
        return self.dir / "postern.stderr"

    def jid(self, user: str) -> str:
        domain = ACCOUNTS[user][0] if user in ACCOUNTS else self.domain
        return f"{user}@{domain}"

    @property
    def gateway_enabled(self) -> bool:
        return self.next_hop_port != 0

    def write_config(self) -> None:
        taken = {self.next_hop_port}
        ports = []
        for _ in range(5 if self.gateway_enabled else 4):
            port = free_port()
            while port in taken:
                port = free_port()
            taken.add(port)
            ports.append(port)
        self.starttls_port, self.direct_tls_port, self.https_port, self.proxy65_port = ports[:4]
        limits = "".join(f"{key} = {value}\n" for key, value in self.xmpp_limits.items())
        if self.gateway_enabled:
            self.gateway_port = ports[4]
            gateway = (
                "enabled = true\n"
                f'listen = "{self.host}:{self.gateway_port}"\n'
                f'next_hop = "{self.host}:{self.next_hop_port}"\n'
            )
        else:
            gateway = "enabled = false\n"
        self.config.write_text(
            f"""\
data_dir = "{self.data_dir}"
log = "info,postern_xmpp=debug"

[[domain]]
name = "{self.domain}"

[[domain]]
name = "{self.other_domain}"

[xmpp]
enabled = true
starttls = ["{self.host}:{self.starttls_port}"]
direct_tls = ["{self.host}:{self.direct_tls_port}"]

[xmpp.proxy65]
listen = ["{self.host}:{self.proxy65_port}"]

[xmpp.limits]
handshake_timeout = "20s"
{limits}
[http]
listen = ["{self.host}:{self.https_port}"]

[gateway]
{gateway}{self.extra_config}"""
        )

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin), "--config", str(self.config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def add_account(self, user: str, password: str) -> None:
        r = self.cli("account", "add", self.jid(user), "--password-stdin", stdin=password + "\n")
        assert r.returncode == 0, f"account add {user} failed: {r.stdout}{r.stderr}"
        self.passwords[user] = password

    def start(self) -> None:
        """Start `postern serve`; return once both listeners accept connections."""
        log = open(self.log_file, "ab")
        env = dict(os.environ)
        env.pop("RUST_LOG", None)
        self.proc = subprocess.Popen(
            [str(self.bin), "--config", str(self.config), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postern serve exited with {self.proc.returncode} at start")
            if (
                port_open(self.starttls_port)
                and port_open(self.direct_tls_port)
                and port_open(self.https_port)
                and port_open(self.proxy65_port)
                and (not self.gateway_enabled or port_open(self.gateway_port))
                and self.cert(self.domain).is_file()
                and self.cert(self.other_domain).is_file()
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"postern serve did not listen within {START_TIMEOUT}s")

    def alive(self) -> bool:
        """The process has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then wait; SIGKILL if it does not stop. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(f"postern serve ignored SIGTERM for {STOP_TIMEOUT}s")

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no server log)"


def start_server(tmp_path: Path, **options) -> Server:
    """Config, accounts, start; a port taken between probe and bind gets a second try.

    `options` are further Server fields (xmpp_limits, next_hop_port, extra_config)."""
    last: Exception | None = None
    for attempt in range(3):
        srv = Server(dir=tmp_path / f"postern-{attempt}", bin=postern_bin(), **options)
        srv.dir.mkdir()
        srv.write_config()
        for user, (_domain, password) in ACCOUNTS.items():
            srv.add_account(user, password)
        try:
            srv.start()
            return srv
        except RuntimeError as e:
            last = e
            srv.stop()
            print(srv.log_text())
    raise RuntimeError(f"could not start postern: {last}")


@pytest.fixture
def server(request, tmp_path) -> Server:
    srv = start_server(tmp_path)
    request.node._postern = srv
    try:
        yield srv
    finally:
        code = srv.stop()
    assert code == 0, f"postern serve exited with {code} after SIGTERM"


def backend_fixture_bin() -> Path:
    path = Path(
        os.environ.get("BACKEND_FIXTURE_BIN", REPO / "target" / "debug" / "backend_fixture")
    )
    if not path.is_file():
        pytest.fail(
            f"backend_fixture not found at {path} (build it: cargo build -p postern-tests --bin backend_fixture)"
        )
    return path


@pytest.fixture(params=["dovecot", "imap", "ldap", "sql"])
def backend_server(request, tmp_path):
    users = [f"{u}@{d}={pw}" for u, (d, pw) in ACCOUNTS.items() if d == DOMAIN]
    proc = subprocess.Popen(
        [str(backend_fixture_bin()), request.param, DOMAIN, *users],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "END":
                break
            lines.append(line)
        else:
            pytest.fail(f"backend_fixture {request.param} exited before it was ready")
        srv = start_server(tmp_path, extra_config="\n" + "".join(lines))
        request.node._postern = srv
        try:
            yield srv
        finally:
            srv.stop()
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=30)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    srv = getattr(item, "_postern", None)
    if srv is not None and report.failed:
        report.sections.append((f"postern serve stderr ({report.when})", srv.log_text()))
    return report

"""Fixtures for the robustness (mutation) tests: the interop `Server` from xmpp/conftest.py,
reused, with limits fit for a test that opens many connections from one address.

xmpp/conftest.py is loaded under its own module name (pytest imports every conftest.py as
`conftest`), and its report hook is re-exported here so that a failing test shows the server
log under "postern serve stderr" as in the rest of the suite.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import rawsmtp

_path = Path(__file__).resolve().parents[1] / "xmpp" / "conftest.py"
_spec = importlib.util.spec_from_file_location("postern_interop_server", _path)
server_support = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = server_support
_spec.loader.exec_module(server_support)

Server = server_support.Server
start_server = server_support.start_server
pytest_runtest_makereport = server_support.pytest_runtest_makereport

# Every connection of these tests comes from 127.0.0.1; the default per-IP burst (100) would
# refuse some of them, which is not what they test.
MANY_CONNECTIONS = {"connection_burst_per_ip": "2000", "connections_per_minute_per_ip": "60000"}


def run_server(request, tmp_path, **options):
    """Starts a server for one test; yields it; stops it (SIGTERM must give exit code 0,
    unless the test already found it dead, which it reports itself)."""
    limits = {**MANY_CONNECTIONS, **options.pop("xmpp_limits", {})}
    srv = start_server(tmp_path, xmpp_limits=limits, **options)
    request.node._postern = srv
    try:
        yield srv
    finally:
        was_alive = srv.alive()
        code = srv.stop()
    if was_alive:
        assert code == 0, f"postern serve exited with {code} after SIGTERM"


@pytest.fixture
def server(request, tmp_path):
    """A server with MANY_CONNECTIONS and the test module's XMPP_LIMITS, if it has any."""
    yield from run_server(request, tmp_path, xmpp_limits=getattr(request.module, "XMPP_LIMITS", {}))


@pytest.fixture
def sink():
    """The gateway's next hop: an SMTP server in this process recording every message."""
    s = rawsmtp.Sink().start()
    yield s
    s.stop()


@pytest.fixture
def gateway_server(request, tmp_path, sink):
    """A server with the gateway enabled on a free port, relaying to `sink`, and the test
    module's GATEWAY_CONFIG (TOML tables under [gateway], e.g. rules), if it has one."""
    extra = getattr(request.module, "GATEWAY_CONFIG", "")
    yield from run_server(request, tmp_path, next_hop_port=sink.port, extra_config=extra)

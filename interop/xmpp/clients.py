"""slixmpp as an outside client of Postern, with every wait bounded.

`Client` verifies the server certificate against the server's own self-signed certificate
(nothing is switched off), connects to the STARTTLS or the direct-TLS listener only, and puts
what it receives into queues that tests read with `expect(...)`, which fails after TIMEOUT.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import slixmpp
from slixmpp.exceptions import IqError

TIMEOUT = 10.0

PLUGINS = ("xep_0030", "xep_0092", "xep_0191", "xep_0199", "xep_0202", "xep_0203", "xep_0280", "xep_0352")


class LoginFailed(Exception):
    pass


class Client(slixmpp.ClientXMPP):
    def __init__(
        self,
        server,
        user: str,
        *,
        resource: str | None = None,
        password: str | None = None,
        direct_tls: bool = False,
        mech: str | None = None,
        trust_server_cert: bool = True,
        alpn: list[str] | None = None,
        extra_plugins: tuple[str, ...] = (),
    ):
        jid = server.jid(user) + (f"/{resource}" if resource else "")
        if password is None:
            password = server.passwords[user]
        super().__init__(jid, password, sasl_mech=mech)
        self.postern = server
        self.port = server.direct_tls_port if direct_tls else server.starttls_port
        # Only the one listener asked for, and never plaintext.
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        self.whitespace_keepalive = False
        self.use_ipv6 = False
        # A fresh context that trusts only the server's certificate (or, to prove that
        # verification is on, only the system store), with host name checking.
        domain = self.boundjid.domain
        ctx = ssl.create_default_context(
            cafile=str(server.cert(domain)) if trust_server_cert else None
        )
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if alpn:
            ctx.set_alpn_protocols(alpn)
        self.ssl_context = ctx
        # Subscription requests are answered by the tests, not by slixmpp.
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        for plugin in PLUGINS + extra_plugins:
            self.register_plugin(plugin)

        self.messages: asyncio.Queue = asyncio.Queue()
        self.message_errors: asyncio.Queue = asyncio.Queue()
        self.presences: asyncio.Queue = asyncio.Queue()
        self.roster_pushes: asyncio.Queue = asyncio.Queue()
        self.stream_errors: asyncio.Queue = asyncio.Queue()
        self.failed_auths: asyncio.Queue = asyncio.Queue()
        # Every SASL failure's condition, kept (tests also take them off `failed_auths`).
        self.failure_conditions: list[str] = []
        self.sasl_mech: str | None = None
        self._outcome: asyncio.Future = asyncio.get_running_loop().create_future()
        self._disconnected = asyncio.Event()

        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("message_error", self.message_errors.put_nowait)
        self.add_event_handler("presence", self.presences.put_nowait)
        self.add_event_handler("roster_update", self._on_roster)
        self.add_event_handler("stream_error", self.stream_errors.put_nowait)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth", self._on_failed_all_auth)
        self.add_event_handler("auth_success", self._on_auth_success)
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("connection_failed", self._on_connection_failed)
        self.add_event_handler("ssl_invalid_chain", self._on_ssl_invalid)
        self.add_event_handler("disconnected", self._on_disconnected)

    # --- events -------------------------------------------------------------------------

    def _settle(self, result: Any = None, exc: Exception | None = None) -> None:
        if not self._outcome.done():
            if exc is not None:
                self._outcome.set_exception(exc)
            else:
                self._outcome.set_result(result)

    def _on_roster(self, iq) -> None:
        if iq["type"] == "set":
            self.roster_pushes.put_nowait(iq)

    def _on_failed_auth(self, failure) -> None:
        self.failure_conditions.append(failure["condition"])
        self.failed_auths.put_nowait(failure)

    def _on_failed_all_auth(self, _event) -> None:
        self._settle(exc=LoginFailed("every SASL mechanism failed"))

    def _on_auth_success(self, _stanza) -> None:
        self.sasl_mech = self.plugin["feature_mechanisms"].mech.name

    def _on_session_start(self, _event) -> None:
        self._settle(result=True)

    def _on_connection_failed(self, err) -> None:
        # slixmpp would retry forever with back-off; a test wants the first failure.
        self.cancel_connection_attempt()
        self._settle(exc=LoginFailed(f"connection failed: {err}"))

    def _on_ssl_invalid(self, err) -> None:
        self._settle(exc=LoginFailed(f"certificate rejected: {err}"))
        self.abort()

    def _on_disconnected(self, reason) -> None:
        self._disconnected.set()
        self._settle(exc=LoginFailed(f"disconnected before session start: {reason}"))

    # --- actions ------------------------------------------------------------------------

    async def login(self, *, presence: bool = True, timeout: float = TIMEOUT) -> "Client":
        """Connect, TLS, SASL, bind; then (by default) send initial presence."""
        self.connect(self.postern.host, self.port)
        try:
            await asyncio.wait_for(asyncio.shield(self._outcome), timeout)
        except asyncio.TimeoutError:
            self.close()
            raise LoginFailed(f"no session within {timeout}s") from None
        except LoginFailed:
            self.close()
            raise
        if presence:
            self.send_presence()
        return self

    async def login_fails(
        self, timeout: float = TIMEOUT, condition: str | None = "not-authorized"
    ) -> Exception:
        """Expect the login to fail; return why. With a `condition`, the server must have
        said so in a SASL failure (not merely closed the connection)."""
        self.connect(self.postern.host, self.port)
        try:
            await asyncio.wait_for(asyncio.shield(self._outcome), timeout)
        except LoginFailed as e:
            if condition is not None:
                assert condition in self.failure_conditions, (
                    f"expected a SASL <{condition}/>, got {self.failure_conditions} ({e})"
                )
            return e
        except asyncio.TimeoutError:
            raise AssertionError(f"login neither succeeded nor failed within {timeout}s") from None
        finally:
            self.close()
        raise AssertionError(f"login as {self.boundjid} succeeded but should have failed")

    @property
    def tls(self) -> ssl.SSLObject | None:
        return self.transport.get_extra_info("ssl_object") if self.transport else None

    async def wait_disconnected(self, timeout: float = TIMEOUT) -> None:
        await asyncio.wait_for(self._disconnected.wait(), timeout)

    async def logout(self) -> None:
        if self.transport is not None:
            try:
                await asyncio.wait_for(self.disconnect(wait=2.0), TIMEOUT)
            except (asyncio.TimeoutError, Exception):
                self.abort()
        self.close()

    def close(self) -> None:
        self.cancel_connection_attempt()
        if self.transport is not None:
            self.abort()

    async def fetch_roster(self) -> dict[str, dict]:
        """A plain roster get (no version), answered from the server's store."""
        iq = self.Iq(stype="get")
        iq.enable("roster")
        result = await iq.send(timeout=TIMEOUT)
        return {
            str(jid): {
                # An absent attribute means "none" (RFC 6121 §2.1.2.5).
                "subscription": item["subscription"] or "none",
                "ask": item["ask"],
                "name": item["name"],
                "groups": sorted(item["groups"]),
            }
            for jid, item in result["roster"]["items"].items()
        }


async def expect(
    queue: asyncio.Queue,
    pred: Callable[[Any], bool] = lambda _: True,
    *,
    timeout: float = TIMEOUT,
    what: str = "stanza",
) -> Any:
    """The first item of `queue` that satisfies `pred`, or AssertionError after `timeout`.

    Items that do not match are dropped (they are listed in the failure message).
    """
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(
                f"no matching {what} within {timeout}s; got instead: {seen or 'nothing'}"
            )
        try:
            item = await asyncio.wait_for(queue.get(), left)
        except asyncio.TimeoutError:
            continue
        if pred(item):
            return item
        seen.append(str(item))


async def expect_none(
    queue: asyncio.Queue, pred: Callable[[Any], bool] = lambda _: True, *, within: float = 1.0
) -> None:
    """Assert that nothing matching `pred` arrives within `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (left := deadline - loop.time()) > 0:
        try:
            item = await asyncio.wait_for(queue.get(), left)
        except asyncio.TimeoutError:
            return
        assert not pred(item), f"unexpected stanza: {item}"


async def iq_error(awaitable) -> str:
    """Await an IQ that must fail; return its error condition."""
    try:
        result = await awaitable
    except IqError as e:
        return e.iq["error"]["condition"]
    raise AssertionError(f"expected an IQ error, got result: {result}")


def ssl_object(client: Client) -> ssl.SSLObject:
    obj = client.tls
    assert obj is not None, "the stream is not TLS-protected"
    return obj


__all__ = ["Client", "LoginFailed", "TIMEOUT", "expect", "expect_none", "iq_error", "ssl_object", "Path"]

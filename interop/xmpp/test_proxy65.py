"""XEP-0065 SOCKS5 bytestreams through Postern's proxy with slixmpp's plugin on both ends:
the initiator discovers proxy.<domain> (disco#items, the proxy/bytestreams identity, its
streamhost), offers it to the target, both connect, the initiator activates, and 10 MiB
cross intact. Postern's proxy is the only streamhost offered: the bytes went through it."""

from __future__ import annotations

import asyncio
import os

from clients import Client, TIMEOUT


async def test_slixmpp_sends_10_mib_through_the_proxy(server):
    sender = await Client(server, "alice", resource="send", extra_plugins=("xep_0065",)).login()
    receiver = await Client(server, "bob", resource="recv", extra_plugins=("xep_0065",)).login()
    try:
        # The receiving user said yes (a client would ask them).
        receiver.plugin["xep_0065"].auto_accept = True
        chunks: list[bytes] = []
        closed = asyncio.Event()
        receiver.add_event_handler("socks5_data", chunks.append)
        receiver.add_event_handler("socks5_closed", lambda _exc: closed.set())

        proxies = await sender.plugin["xep_0065"].discover_proxies(timeout=TIMEOUT)
        assert {str(j): (h, int(p)) for j, (h, p) in proxies.items()} == {
            f"proxy.{server.domain}": ("127.0.0.1", server.proxy65_port)
        }, proxies
        sock = await asyncio.wait_for(sender.plugin["xep_0065"].handshake(receiver.boundjid, timeout=TIMEOUT), 30)
        assert sock is not None, "no stream: the proxy did not activate it"

        data = os.urandom(10 * 1024 * 1024)
        await sock.write(data)
        sock.transport.close()
        await asyncio.wait_for(closed.wait(), 60)
        received = b"".join(chunks)
        assert len(received) == len(data) and received == data, (len(received), len(data))
    finally:
        await sender.logout()
        await receiver.logout()

"""XEP-0363 HTTP File Upload with slixmpp's own plugin (xep_0363: disco of the service, its
max-file-size, the slot, the PUT with aiohttp), then `curl` fetching the GET URL, as another
user's client would. TLS is verified everywhere: aiohttp and curl trust the domain's
generated certificate, nothing is switched off."""

from __future__ import annotations

import os
import subprocess

import pytest
from slixmpp.plugins.xep_0363.http_upload import FileTooBig

from clients import Client, TIMEOUT


def trust_for_aiohttp(cert) -> None:
    """aiohttp (which slixmpp's plugin PUTs with) builds its verifying SSL context once, at
    import, from the system store: add the server's certificate to it, as an admin would add
    a private CA to the system store."""
    import aiohttp.connector

    aiohttp.connector._SSL_CONTEXT_VERIFIED.load_verify_locations(cafile=str(cert))


def curl(server, url: str, *args: str) -> tuple[int, bytes]:
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(server.ca_file), "-o", "-", "-w", "\n%{http_code}", *args, url],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    body, _, code = out.stdout.rpartition(b"\n")
    return int(code), body


async def test_slixmpp_uploads_and_curl_downloads(server, tmp_path):
    trust_for_aiohttp(server.ca_file)
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "holiday photo.jpg"
    path.write_bytes(data)
    c = await Client(server, "alice", extra_plugins=("xep_0363",)).login(presence=False)
    try:
        upload = c.plugin["xep_0363"]
        url = await upload.upload_file(path, timeout=TIMEOUT)
        # The plugin found upload.<domain> by disco and read our max-file-size form.
        assert str(upload.upload_service) == f"upload.{server.domain}"
        assert upload.max_file_size == 100 * 1024 * 1024
        assert url.startswith(f"https://{server.domain}:{server.https_port}/upload/"), url
        assert url.endswith("/holiday%20photo.jpg"), url
        # The content type slixmpp guessed is the one served, shown inline (an image).
        code, body = curl(server, url)
        assert code == 200 and body == data, (code, len(body))
        out = subprocess.run(
            ["curl", "-sS", "-I", "--cacert", str(server.ca_file), url], capture_output=True, text=True, timeout=30
        )
        headers = out.stdout.lower()
        assert "content-type: image/jpeg" in headers, headers
        assert "content-disposition: inline" in headers, headers
        assert "x-content-type-options: nosniff" in headers, headers
        # Ranges, as players and resumable downloads ask.
        code, part = curl(server, url, "-r", "100-199")
        assert code == 206 and part == data[100:200]

        # The plugin refuses, from our advertised limit, before asking for a slot.
        big = tmp_path / "big.bin"
        with open(big, "wb") as f:
            f.truncate(100 * 1024 * 1024 + 1)
        with pytest.raises(FileTooBig):
            await upload.upload_file(big, timeout=TIMEOUT)
    finally:
        await c.logout()


async def test_a_slot_is_used_once(server, tmp_path):
    """The plugin's slot request, then two PUTs of the same URL: the second is refused
    with 409 and the file stays what the first PUT stored."""
    trust_for_aiohttp(server.ca_file)
    c = await Client(server, "bob", extra_plugins=("xep_0363",)).login(presence=False)
    try:
        upload = c.plugin["xep_0363"]
        slot = (await upload.request_slot(f"upload.{server.domain}", "note.txt", 5, "text/plain", timeout=TIMEOUT))[
            "http_upload_slot"
        ]
        put, get = slot["put"]["url"], slot["get"]["url"]
        first = tmp_path / "first.txt"
        first.write_bytes(b"first")
        second = tmp_path / "second.txt"
        second.write_bytes(b"other")
        code, _ = curl(server, put, "-T", str(first), "-H", "Content-Type: text/plain")
        assert code == 201
        code, _ = curl(server, put, "-T", str(second), "-H", "Content-Type: text/plain")
        assert code == 409
        assert curl(server, get) == (200, b"first")
    finally:
        await c.logout()

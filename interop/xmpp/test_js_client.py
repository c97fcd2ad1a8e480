"""A JavaScript client library from the npm registry, @xmpp/client (xmpp.js, pinned in
interop/js/package.json), against the real binary: login with SASL2 + Bind2 (xmpp.js prefers
them when offered), carbons between two resources, and XEP-0198 resumption by xmpp.js's own
reconnect logic after its TCP connection is destroyed, and XEP-0484 FAST: the token xmpp.js
asked for at its first login is what it logs in with after a reconnect; XEP-0313 history
paged through with xmpp.js's IQ caller; and a XEP-0363 upload (slot over xmpp.js, PUT and GET
with Node's fetch).

The scripts (interop/js/*.mjs) only report what they saw; the assertions are here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

JS = Path(__file__).resolve().parent.parent / "js"


def run_js(server, script: str) -> dict:
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(server.ca_file))
    proc = subprocess.run(
        [
            "node",
            str(JS / script),
            server.host,
            str(server.starttls_port),
            server.domain,
            server.passwords["alice"],
            server.passwords["bob"],
        ],
        cwd=JS,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report from {script}: {proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1])


def test_xmppjs_carbons_and_stream_resumption(server):
    seen = run_js(server, "sm_carbons.mjs")
    assert "error" not in seen, (seen.get("error"), seen["events"])
    # SASL2 + Bind2: the server chose the resource from xmpp.js's tag.
    assert seen["js1Jid"].startswith(server.jid("alice") + "/js1."), seen
    # xmpp.js enabled stream management with resumption on our offer (inline in Bind2).
    assert seen["sm"] == {"enabled": True, "id": True}, seen
    # Carbons: js2 got a <received/> copy of what bob sent to js1, from alice's bare JID.
    assert {"to": "js2", "from": server.jid("alice"), "body": "hello js1"} in seen["carbons"], seen
    # Resumed, not re-bound, and every message exactly once.
    assert "js1 resumed" in seen["events"], seen
    assert seen["js1"] == ["hello js1", "while away"], seen
    assert seen["bob"].count("back again") == 1, seen
    # FAST: a token was issued at the password login and used after the reconnect.
    assert seen["js2Token"], seen
    assert seen["js2Mechanisms"][:2] == ["SCRAM-SHA-1", "HT-SHA-256-NONE"], seen


def test_xmppjs_pages_through_the_archive(server):
    seen = run_js(server, "mam.mjs")
    assert "error" not in seen, (seen.get("error"), seen["events"])
    bodies = [f"js {i}" for i in range(30)]
    assert [r["body"] for r in seen["forwards"]] == bodies, seen["forwards"]
    assert seen["backwards"] == seen["forwards"], seen["backwards"]
    # Pages of 12, 12, 6: only the last one is complete, in either direction.
    for direction in ("forwards", "backwards"):
        pages = [(p["size"], p["complete"]) for p in seen["pages"] if p["dir"] == direction]
        assert pages == [(12, False), (12, False), (6, True)], (direction, seen["pages"])
    # The stanza-id xmpp.js saw on each live message is its archive id.
    assert {r["body"]: r["id"] for r in seen["forwards"]} == seen["live"], seen["live"]
    assert seen["withBob"] == 30 and seen["withNobody"] == 0, seen


def test_xmppjs_uploads_a_file(server):
    seen = run_js(server, "upload.mjs")
    assert "error" not in seen, (seen.get("error"), seen["events"])
    assert f"upload.{server.domain}" in seen["services"], seen
    assert "urn:xmpp:http:upload:0" in seen["features"], seen
    assert seen["maxFileSize"] == 100 * 1024 * 1024, seen
    assert seen["getUrl"].startswith(f"https://{server.domain}:{server.https_port}/upload/"), seen
    # Stored, single use, and what bob downloaded from the URL in the message is the file.
    assert (seen["putStatus"], seen["againStatus"], seen["getStatus"]) == (201, 409, 200), seen
    assert seen["received"] == seen["sent"], seen
    assert seen["cors"] == "*", seen

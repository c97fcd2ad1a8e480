"""The deepest nesting an admin may configure (`max_stanza_depth = 1024`) works end to end
on the binary CI builds: a 1,024-level stanza is parsed, routed, serialised to another client
and dropped on the runtime's threads (crates/postern/src/main.rs, THREAD_STACK), and one level
more is refused with <policy-violation/>.

Element trees are handled recursively; this run needs about 1 MiB of stack on the debug
build (dependencies at opt-level 1), so it also passes on tokio's 2 MiB default: the 8 MiB
the binary sets is margin for the rest of a task, not something this test can show.
"""

from __future__ import annotations

import rawxmpp as rx
from test_xmpp_mutation import Harness, nest

CEILING = 1024
XMPP_LIMITS = {"max_stanza_depth": str(CEILING), "max_stanza_size": '"1 MiB"'}


def test_a_stanza_at_the_configured_ceiling_is_delivered(server):
    h = Harness(server, "depth ceiling")
    bob = h.start_bystander()
    alice = h.login("alice", "ceiling")
    marker = b"deepest-of-1024"
    alice.send(nest(CEILING, marker, to=bob.jid))
    got = bob.read_until(marker)
    assert got.count(b"<a") >= CEILING - 1, got[:300]
    assert alice.ping("after-ceiling"), "the sender's stream ended"
    # One over is refused as usual, and the server is still there.
    alice.send(nest(CEILING + 1, to=bob.jid))
    rest, _ = alice.read_to_close()
    assert rx.stream_error(rest) == "policy-violation", rest[-300:]
    assert server.alive()
    h.check_bystander()

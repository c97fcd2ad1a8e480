// @xmpp/client (xmpp.js, from the npm registry) fetching history from postern: bob writes to
// alice, then alice pages through her archive with XEP-0313 queries over xmpp.js's IQ caller,
// forwards (RSM <after/>) and backwards (<before/>), and by peer. xmpp.js has no MAM module,
// so the queries are built with its xml(); everything on the wire is xmpp.js's.
// (StanzaJS has one, but speaks only WebSocket and BOSH, which postern does not serve yet.)
//
// It only reports what it saw, one JSON object on stdout; interop/xmpp/test_js_client.py
// decides whether that is right. Arguments: host port domain alicePassword bobPassword.
import { client, xml } from "@xmpp/client";

const [host, port, domain, alicePw, bobPw] = process.argv.slice(2);
const MAM = "urn:xmpp:mam:2";
const RSM = "http://jabber.org/protocol/rsm";
const seen = { live: {}, forwards: [], backwards: [], withBob: 0, pages: [], events: [] };
const deadline = setTimeout(() => finish("timed out"), 30_000);

const results = new Map(); // queryid -> [{id, body}]
function make(user, password, resource) {
  const c = client({ service: `xmpp://${host}:${port}`, domain, username: user, password, resource });
  c.on("error", (e) => seen.events.push(`${user} error: ${e.message}`));
  return c;
}
const alice = make("alice", alicePw, "js");
const bob = make("bob", bobPw, "desk");
alice.on("stanza", (s) => {
  if (!s.is("message")) return;
  const result = s.getChild("result", MAM);
  if (result) {
    const inner = result.getChild("forwarded", "urn:xmpp:forward:0")?.getChild("message");
    const list = results.get(result.attrs.queryid) ?? [];
    list.push({ id: result.attrs.id, body: inner?.getChildText("body") ?? null });
    results.set(result.attrs.queryid, list);
    return;
  }
  const body = s.getChildText("body");
  const sid = s.getChildren("stanza-id", "urn:xmpp:sid:0").find((e) => e.attrs.by === `alice@${domain}`);
  if (body !== null) seen.live[body] = sid?.attrs.id ?? null;
});

let n = 0;
/** One page: [{id, body}], complete, first, last. */
async function page(set, form) {
  const queryid = `q${n++}`;
  const children = [];
  if (form) children.push(form);
  children.push(xml("set", { xmlns: RSM }, ...set));
  // The whole IQ result: iqCaller.set() would look for a <query/> child, and MAM answers <fin/>.
  const result = await alice.iqCaller.request(
    xml("iq", { type: "set", id: queryid }, xml("query", { xmlns: MAM, queryid }, ...children)),
  );
  const fin = result.getChild("fin", MAM);
  const rsm = fin.getChild("set", RSM);
  return {
    items: results.get(queryid) ?? [],
    complete: fin.attrs.complete === "true",
    first: rsm?.getChildText("first"),
    last: rsm?.getChildText("last"),
  };
}

function withForm(jid) {
  return xml(
    "x",
    { xmlns: "jabber:x:data", type: "submit" },
    xml("field", { var: "FORM_TYPE", type: "hidden" }, xml("value", {}, MAM)),
    xml("field", { var: "with" }, xml("value", {}, jid)),
  );
}

async function finish(error) {
  clearTimeout(deadline);
  if (error) seen.error = String(error);
  process.stdout.write(JSON.stringify(seen) + "\n");
  process.exit(0);
}

try {
  await Promise.all([alice.start(), bob.start()]);
  // Available, so that bob's messages to alice's bare JID are delivered live (xmpp.js sends
  // no presence by itself); the ping round trip makes sure it was handled.
  await alice.send(xml("presence"));
  await alice.iqCaller.get(xml("ping", { xmlns: "urn:xmpp:ping" }), domain);
  for (let i = 0; i < 30; i++) {
    await bob.send(xml("message", { to: `alice@${domain}`, type: "chat" }, xml("body", {}, `js ${i}`)));
  }
  // A ping round trip: bob's messages are handled before it returns.
  await bob.iqCaller.get(xml("ping", { xmlns: "urn:xmpp:ping" }), domain);
  const t0 = Date.now();
  while (Object.keys(seen.live).length < 30 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));

  // Forwards, 12 at a time.
  let after = null;
  for (;;) {
    const p = await page([xml("max", {}, "12"), ...(after ? [xml("after", {}, after)] : [])]);
    seen.pages.push({ dir: "forwards", size: p.items.length, complete: p.complete });
    seen.forwards.push(...p.items);
    if (p.complete || p.items.length === 0) break;
    after = p.last;
  }
  // Backwards from the newest, 12 at a time.
  let before = "";
  for (;;) {
    const p = await page([xml("max", {}, "12"), xml("before", {}, before)]);
    seen.pages.push({ dir: "backwards", size: p.items.length, complete: p.complete });
    seen.backwards.unshift(...p.items);
    if (p.complete || p.items.length === 0) break;
    before = p.first;
  }
  const mine = await page([xml("max", {}, "100")], withForm(`bob@${domain}`));
  seen.withBob = mine.items.length;
  const nobody = await page([xml("max", {}, "100")], withForm(`nobody@${domain}`));
  seen.withNobody = nobody.items.length;
  await Promise.all([alice.stop(), bob.stop()]);
  await finish();
} catch (e) {
  await finish(e);
}

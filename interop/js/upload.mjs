// @xmpp/client (xmpp.js, from the npm registry) uploading a file through postern with
// XEP-0363: disco#items of the domain finds upload.<domain>, disco#info gives its
// max-file-size, the slot request is sent with xmpp.js's IQ caller, the file is PUT with
// Node's fetch (as a web client does) and fetched back from the GET URL; then bob, another
// xmpp.js client, gets the URL in a message and downloads it. xmpp.js has no upload module,
// so the IQs are built with its xml(); the HTTP side is Node's own fetch (undici).
//
// It only reports what it saw, one JSON object on stdout; interop/xmpp/test_js_client.py
// decides whether that is right. Arguments: host port domain alicePassword bobPassword.
import { client, xml } from "@xmpp/client";
import { createHash, randomBytes } from "node:crypto";

const [host, port, domain, alicePw, bobPw] = process.argv.slice(2);
const UPLOAD = "urn:xmpp:http:upload:0";
const seen = { events: [] };
const deadline = setTimeout(() => finish("timed out"), 40_000);

function make(user, password, resource) {
  const c = client({ service: `xmpp://${host}:${port}`, domain, username: user, password, resource });
  c.on("error", (e) => seen.events.push(`${user} error: ${e.message}`));
  return c;
}
const alice = make("alice", alicePw, "jsup");
const bob = make("bob", bobPw, "jsdown");
const sha = (b) => createHash("sha256").update(b).digest("hex");

async function finish(error) {
  clearTimeout(deadline);
  if (error) seen.error = String(error?.stack ?? error);
  process.stdout.write(JSON.stringify(seen) + "\n");
  process.exit(0);
}

try {
  await Promise.all([alice.start(), bob.start()]);
  await bob.send(xml("presence"));
  await bob.iqCaller.get(xml("ping", { xmlns: "urn:xmpp:ping" }), domain);
  const got = new Promise((resolve) => {
    bob.on("stanza", (s) => {
      if (s.is("message") && s.getChildText("body")) resolve(s.getChildText("body"));
    });
  });

  const items = await alice.iqCaller.get(xml("query", { xmlns: "http://jabber.org/protocol/disco#items" }), domain);
  seen.services = items.getChildren("item").map((i) => i.attrs.jid);
  const service = `upload.${domain}`;
  const info = await alice.iqCaller.get(xml("query", { xmlns: "http://jabber.org/protocol/disco#info" }), service);
  seen.features = info.getChildren("feature").map((f) => f.attrs.var);
  const form = info.getChildren("x", "jabber:x:data").find((x) =>
    x.getChildren("field").some((f) => f.attrs.var === "FORM_TYPE" && f.getChildText("value") === UPLOAD),
  );
  seen.maxFileSize = Number(form?.getChildren("field").find((f) => f.attrs.var === "max-file-size")?.getChildText("value"));

  const data = randomBytes(2 * 1024 * 1024 + 3);
  seen.sent = sha(data);
  // The whole IQ result: iqCaller.get() looks for a child named like the request, and the
  // answer is a <slot/>.
  const result = await alice.iqCaller.request(
    xml(
      "iq",
      { type: "get", to: service, id: "slot1" },
      xml("request", { xmlns: UPLOAD, filename: "js upload.bin", size: String(data.length), "content-type": "application/octet-stream" }),
    ),
  );
  const slot = result.getChild("slot", UPLOAD);
  const putUrl = slot.getChild("put").attrs.url;
  seen.getUrl = slot.getChild("get").attrs.url;
  const put = await fetch(putUrl, { method: "PUT", body: data, headers: { "content-type": "application/octet-stream" } });
  seen.putStatus = put.status;
  const again = await fetch(putUrl, { method: "PUT", body: data, headers: { "content-type": "application/octet-stream" } });
  seen.againStatus = again.status;

  await alice.send(xml("message", { to: `bob@${domain}`, type: "chat" }, xml("body", {}, seen.getUrl)));
  const url = await got;
  const down = await fetch(url);
  seen.getStatus = down.status;
  seen.received = sha(Buffer.from(await down.arrayBuffer()));
  seen.cors = down.headers.get("access-control-allow-origin");
  await Promise.all([alice.stop(), bob.stop()]);
  await finish();
} catch (e) {
  await finish(e);
}

-- XEP-0191 blocklists (postgres flavour; keep in step with the other).
-- One row per blocked address of an account. `jid` is what the client sent, normalised by
-- the server (bare, full, domain or domain/resource JID).
CREATE TABLE blocklist (
    owner TEXT NOT NULL,
    jid TEXT NOT NULL,
    PRIMARY KEY (owner, jid)
);

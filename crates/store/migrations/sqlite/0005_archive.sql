-- The message archive (sqlite flavour; keep in step with the other): XEP-0313 MAM for users
-- and the chat log for admins, one store for both.
--
-- `archive` holds every archived message once. `archive_party` says whose archives show it:
-- one row per party (the sender's and the recipient's account; a room's JID for group chat),
-- `visible` = 0 where that party's MAM preferences keep it out of their own archive (the
-- admin log still has it). Retention deletes party rows per domain, then messages no party
-- holds any more.
CREATE TABLE archive (
    id INTEGER PRIMARY KEY AUTOINCREMENT, -- archiving order, never reused (cursors)
    uid TEXT NOT NULL UNIQUE,           -- XEP-0359 stanza-id, the MAM result id
    stamp_us BIGINT NOT NULL,           -- when the server took it, µs since the Unix epoch
    sender TEXT NOT NULL,               -- bare JID
    sender_resource TEXT NOT NULL,      -- '' when none
    recipient TEXT NOT NULL,            -- bare JID (a room's for group chat)
    recipient_resource TEXT NOT NULL,   -- '' when sent to the bare JID
    kind TEXT NOT NULL,                 -- the message type: chat, normal, groupchat
    body TEXT NOT NULL,                 -- the searchable text ('' when none)
    xml TEXT NOT NULL                   -- the stanza as delivered
);
CREATE INDEX archive_stamp ON archive (stamp_us);

CREATE TABLE archive_party (
    owner TEXT NOT NULL,                -- whose archive: an account's (or room's) bare JID
    msg BIGINT NOT NULL REFERENCES archive (id) ON DELETE CASCADE,
    peer TEXT NOT NULL,                 -- the other party's bare JID
    domain TEXT NOT NULL,               -- the owner's domain (retention, admin filters)
    visible BIGINT NOT NULL,            -- 1: in the owner's MAM archive
    PRIMARY KEY (owner, msg)
) WITHOUT ROWID;
CREATE INDEX archive_party_peer ON archive_party (owner, peer, msg);
CREATE INDEX archive_party_domain ON archive_party (domain, msg);
CREATE INDEX archive_party_msg ON archive_party (msg);

-- Party rows as the writer adds them: appended in order, moved into `archive_party` in bulk
-- (sorted, thousands at a time) by `Store::archive_flush`. Written one by one, the party
-- table's two indexes by owner took a random page each per row and per commit; in bulk one
-- page holds many of an owner's new rows. Readers look in both (the log is small: it has no
-- index to write, and is read by a scan).
CREATE TABLE archive_party_log (
    seq INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    msg BIGINT NOT NULL,
    peer TEXT NOT NULL,
    domain TEXT NOT NULL,
    visible BIGINT NOT NULL
);

-- Full-text search over `body`: FTS5 on SQLite, a tsvector on PostgreSQL. Both index the
-- words between non-alphanumeric characters, case-folded, without stemming, so that one
-- search finds the same messages on either database.
CREATE VIRTUAL TABLE archive_fts USING fts5 (
    body,
    content = 'archive',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 0'
);
CREATE TRIGGER archive_fts_insert AFTER INSERT ON archive WHEN new.body <> '' BEGIN
    INSERT INTO archive_fts (rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER archive_fts_delete AFTER DELETE ON archive WHEN old.body <> '' BEGIN
    INSERT INTO archive_fts (archive_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
-- One trigger for both halves of an update: SQLite runs the newest trigger first, so two
-- would re-index before un-indexing.
CREATE TRIGGER archive_fts_update AFTER UPDATE OF body ON archive BEGIN
    INSERT INTO archive_fts (archive_fts, rowid, body)
        SELECT 'delete', old.id, old.body WHERE old.body <> '';
    INSERT INTO archive_fts (rowid, body) SELECT new.id, new.body WHERE new.body <> '';
END;

-- XEP-0313 preferences: the default per account, and the always/never lists.
CREATE TABLE archive_prefs (
    owner TEXT PRIMARY KEY,
    default_mode TEXT NOT NULL          -- always, never, roster
);
CREATE TABLE archive_prefs_jid (
    owner TEXT NOT NULL,
    jid TEXT NOT NULL,
    always BIGINT NOT NULL,             -- 1: always, 0: never
    PRIMARY KEY (owner, jid)
);

-- Legal hold: an account whose archive no expiry or purge touches.
CREATE TABLE archive_holds (
    owner TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,               -- who placed it
    since_ms BIGINT NOT NULL
);

-- The audit trail of the chat log: every read, export, purge and hold, by whom, when, with
-- what query. Written before the read it records; never deleted by retention.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,               -- `cli:<os user>` or an admin account's JID
    action TEXT NOT NULL,              -- search, conversations, follow, export, purge, hold, ...
    detail TEXT NOT NULL               -- the query, as given
);
CREATE INDEX audit_log_at ON audit_log (at_ms);

-- Devices already told that messages are logged (`[xmpp.archive] notice`).
CREATE TABLE archive_notices (
    owner TEXT NOT NULL,
    device TEXT NOT NULL,              -- the SASL2 user-agent id, else the resource
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (owner, device)
);

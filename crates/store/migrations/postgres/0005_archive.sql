-- The message archive (postgres flavour; keep in step with the other): XEP-0313 MAM for users
-- and the chat log for admins, one store for both.
--
-- `archive` holds every archived message once. `archive_party` says whose archives show it:
-- one row per party (the sender's and the recipient's account; a room's JID for group chat),
-- `visible` = 0 where that party's MAM preferences keep it out of their own archive (the
-- admin log still has it). Retention deletes party rows per domain, then messages no party
-- holds any more.
CREATE TABLE archive (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    stamp_us BIGINT NOT NULL,
    sender TEXT NOT NULL,
    sender_resource TEXT NOT NULL,
    recipient TEXT NOT NULL,
    recipient_resource TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    xml TEXT NOT NULL,
    -- The words between non-alphanumeric characters, case-folded, no stemming: what SQLite's
    -- FTS5 unicode61 tokenizer indexes, so one search finds the same messages on both.
    body_words tsvector GENERATED ALWAYS AS
        (to_tsvector('simple', regexp_replace(body, '[^[:alnum:]]+', ' ', 'g'))) STORED
);
CREATE INDEX archive_stamp ON archive (stamp_us);
CREATE INDEX archive_words ON archive USING GIN (body_words);

CREATE TABLE archive_party (
    owner TEXT NOT NULL,
    msg BIGINT NOT NULL REFERENCES archive (id) ON DELETE CASCADE,
    peer TEXT NOT NULL,
    domain TEXT NOT NULL,
    visible BIGINT NOT NULL,
    PRIMARY KEY (owner, msg)
);
CREATE INDEX archive_party_peer ON archive_party (owner, peer, msg);
CREATE INDEX archive_party_domain ON archive_party (domain, msg);
CREATE INDEX archive_party_msg ON archive_party (msg);

-- Party rows as the writer adds them: appended in order, moved into `archive_party` in bulk
-- (sorted, thousands at a time) by `Store::archive_flush`. Written one by one, the party
-- table's two indexes by owner took a random page each per row and per commit; in bulk one
-- page holds many of an owner's new rows. Readers look in both (the log is small: it has no
-- index to write, and is read by a scan).
CREATE TABLE archive_party_log (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner TEXT NOT NULL,
    msg BIGINT NOT NULL,
    peer TEXT NOT NULL,
    domain TEXT NOT NULL,
    visible BIGINT NOT NULL
);

CREATE TABLE archive_prefs (
    owner TEXT PRIMARY KEY,
    default_mode TEXT NOT NULL
);
CREATE TABLE archive_prefs_jid (
    owner TEXT NOT NULL,
    jid TEXT NOT NULL,
    always BIGINT NOT NULL,
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
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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

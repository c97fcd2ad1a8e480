-- The archive's party rows by number (sqlite flavour; keep in step with the other). 0005
-- keyed them by text (owner, peer, domain), four B-trees a row; here every bare JID a party
-- row names has a number in `archive_jid`, and the party tables hold numbers in two B-trees.
-- The full-text index is filled by the writer in bulk, once per batch, in the batch's own
-- transaction (no longer by a trigger per row). Measured with `archive_bench 50000 256`: see
-- bench/README.md.
CREATE TABLE archive_jid (
    id INTEGER PRIMARY KEY,
    jid TEXT NOT NULL UNIQUE,           -- a bare JID, never renumbered or deleted
    domain TEXT NOT NULL                -- its domain (retention, admin filters)
);
CREATE INDEX archive_jid_domain ON archive_jid (domain);
INSERT INTO archive_jid (jid, domain)
    SELECT jid, CASE WHEN instr(jid, '@') > 0 THEN substr(jid, instr(jid, '@') + 1) ELSE jid END
    FROM (SELECT owner AS jid FROM archive_party UNION SELECT peer FROM archive_party
          UNION SELECT owner FROM archive_party_log UNION SELECT peer FROM archive_party_log);

-- Whose archives show a message: `owner` and `peer` are `archive_jid` ids. No foreign key:
-- whoever deletes messages deletes their party rows first (`Store::archive_expire`).
CREATE TABLE archive_party_by_number (
    owner INTEGER NOT NULL,
    msg INTEGER NOT NULL,
    peer INTEGER NOT NULL,
    visible INTEGER NOT NULL,           -- 1: in the owner's MAM archive
    PRIMARY KEY (owner, msg)
) WITHOUT ROWID;
INSERT INTO archive_party_by_number (owner, msg, peer, visible)
    SELECT o.id, p.msg, q.id, p.visible FROM archive_party p
    JOIN archive_jid o ON o.jid = p.owner JOIN archive_jid q ON q.jid = p.peer;
DROP TABLE archive_party;
ALTER TABLE archive_party_by_number RENAME TO archive_party;
CREATE INDEX archive_party_peer ON archive_party (owner, peer, msg);

-- The log of the newest party rows, as in 0005 but by number.
CREATE TABLE archive_party_log_by_number (
    seq INTEGER PRIMARY KEY,
    owner INTEGER NOT NULL,
    msg INTEGER NOT NULL,
    peer INTEGER NOT NULL,
    visible INTEGER NOT NULL
);
INSERT INTO archive_party_log_by_number (owner, msg, peer, visible)
    SELECT o.id, l.msg, q.id, l.visible FROM archive_party_log l
    JOIN archive_jid o ON o.jid = l.owner JOIN archive_jid q ON q.jid = l.peer ORDER BY l.seq;
DROP TABLE archive_party_log;
ALTER TABLE archive_party_log_by_number RENAME TO archive_party_log;

DROP TRIGGER archive_fts_insert;

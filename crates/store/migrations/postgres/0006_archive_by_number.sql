-- The archive's party rows by number (postgres flavour; keep in step with the other). 0005
-- keyed them by text (owner, peer, domain), four B-trees a row; here every bare JID a party
-- row names has a number in `archive_jid`, and the party tables hold numbers in two B-trees.
CREATE TABLE archive_jid (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    jid TEXT NOT NULL UNIQUE,
    domain TEXT NOT NULL
);
CREATE INDEX archive_jid_domain ON archive_jid (domain);
INSERT INTO archive_jid (jid, domain)
    SELECT jid, CASE WHEN position('@' in jid) > 0
                     THEN substr(jid, position('@' in jid) + 1) ELSE jid END
    FROM (SELECT owner AS jid FROM archive_party UNION SELECT peer FROM archive_party
          UNION SELECT owner FROM archive_party_log UNION SELECT peer FROM archive_party_log) j;

CREATE TABLE archive_party_by_number (
    owner BIGINT NOT NULL,
    msg BIGINT NOT NULL,
    peer BIGINT NOT NULL,
    visible BIGINT NOT NULL,
    PRIMARY KEY (owner, msg)
);
INSERT INTO archive_party_by_number (owner, msg, peer, visible)
    SELECT o.id, p.msg, q.id, p.visible FROM archive_party p
    JOIN archive_jid o ON o.jid = p.owner JOIN archive_jid q ON q.jid = p.peer;
DROP TABLE archive_party;
ALTER TABLE archive_party_by_number RENAME TO archive_party;
ALTER TABLE archive_party RENAME CONSTRAINT archive_party_by_number_pkey TO archive_party_pkey;
CREATE INDEX archive_party_peer ON archive_party (owner, peer, msg);

CREATE TABLE archive_party_log_by_number (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner BIGINT NOT NULL,
    msg BIGINT NOT NULL,
    peer BIGINT NOT NULL,
    visible BIGINT NOT NULL
);
INSERT INTO archive_party_log_by_number (owner, msg, peer, visible)
    SELECT o.id, l.msg, q.id, l.visible FROM archive_party_log l
    JOIN archive_jid o ON o.jid = l.owner JOIN archive_jid q ON q.jid = l.peer ORDER BY l.seq;
DROP TABLE archive_party_log;
ALTER TABLE archive_party_log_by_number RENAME TO archive_party_log;
ALTER TABLE archive_party_log
    RENAME CONSTRAINT archive_party_log_by_number_pkey TO archive_party_log_pkey;
ALTER SEQUENCE archive_party_log_by_number_seq_seq RENAME TO archive_party_log_seq_seq;

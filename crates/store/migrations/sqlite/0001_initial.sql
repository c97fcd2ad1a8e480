-- Postern schema, SQLite flavour. Keep in step with ../postgres/0001_initial.sql:
-- the two differ only where the dialects must (auto-increment ids).
-- Booleans are INTEGER 0/1 and binary values base64 TEXT, because the sqlx Any
-- driver decodes those the same way on both backends.

CREATE TABLE accounts (
    localpart TEXT NOT NULL,
    domain TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    scram_sha1_salt TEXT NOT NULL,
    scram_sha1_iterations INTEGER NOT NULL,
    scram_sha1_stored_key TEXT NOT NULL,
    scram_sha1_server_key TEXT NOT NULL,
    scram_sha256_salt TEXT NOT NULL,
    scram_sha256_iterations INTEGER NOT NULL,
    scram_sha256_stored_key TEXT NOT NULL,
    scram_sha256_server_key TEXT NOT NULL,
    scram_sha512_salt TEXT NOT NULL,
    scram_sha512_iterations INTEGER NOT NULL,
    scram_sha512_stored_key TEXT NOT NULL,
    scram_sha512_server_key TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    is_admin INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (localpart, domain)
);
CREATE INDEX accounts_domain ON accounts (domain);

CREATE TABLE groups (
    name TEXT NOT NULL PRIMARY KEY
);

CREATE TABLE group_members (
    group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    address TEXT NOT NULL,
    PRIMARY KEY (group_name, address)
);
CREATE INDEX group_members_address ON group_members (address);

CREATE TABLE roster_versions (
    owner TEXT NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL
);

CREATE TABLE roster (
    owner TEXT NOT NULL,
    contact TEXT NOT NULL,
    name TEXT,
    subscription TEXT NOT NULL,
    ask INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, contact)
);

CREATE TABLE roster_groups (
    owner TEXT NOT NULL,
    contact TEXT NOT NULL,
    group_name TEXT NOT NULL,
    PRIMARY KEY (owner, contact, group_name),
    FOREIGN KEY (owner, contact) REFERENCES roster (owner, contact) ON DELETE CASCADE
);

CREATE TABLE pending_in (
    owner TEXT NOT NULL,
    contact TEXT NOT NULL,
    xml TEXT NOT NULL,
    PRIMARY KEY (owner, contact)
);

CREATE TABLE offline (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    stamp_ms INTEGER NOT NULL,
    xml TEXT NOT NULL
);
CREATE INDEX offline_owner ON offline (owner, id);

-- OpenPGP certificates for the mail gateway (sqlite flavour; keep in step with the other).
-- One row per certificate (primary key fingerprint); several certificates may carry the
-- same address. Binary certificates are base64 TEXT, booleans 0/1, times in seconds/ms.

CREATE TABLE pgp_certs (
    -- Uppercase hex fingerprint of the primary key.
    fingerprint TEXT NOT NULL PRIMARY KEY,
    -- The public certificate, binary OpenPGP, base64.
    public_cert TEXT NOT NULL,
    -- The transferable secret key with every secret sealed under the server key, base64;
    -- NULL for a correspondent's public certificate.
    sealed_secret TEXT,
    -- 1 when the key is held for a local user (generated here or imported with its secret).
    local INTEGER NOT NULL DEFAULT 0,
    -- Creation time of the primary key, seconds since the epoch.
    created_at INTEGER NOT NULL,
    -- Last import/merge/revocation, milliseconds since the epoch.
    updated_at INTEGER NOT NULL
);

CREATE TABLE pgp_cert_addresses (
    fingerprint TEXT NOT NULL REFERENCES pgp_certs (fingerprint) ON DELETE CASCADE,
    -- Lowercased e-mail address of a user ID of the certificate.
    address TEXT NOT NULL,
    PRIMARY KEY (fingerprint, address)
);
CREATE INDEX pgp_cert_addresses_address ON pgp_cert_addresses (address);

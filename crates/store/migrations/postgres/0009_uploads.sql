-- XEP-0363 HTTP File Upload (postgres flavour; keep in step with the other).
-- One row per slot a client asked for. `id` is random (128 bits, hex) and names the file in
-- its URLs and on disk. `state`: 0 a slot not used yet (reserved against the quotas until
-- `slot_expires_ms`), 1 a PUT in progress (back to 0 if it fails; at start, every 1 is
-- reset), 2 stored (counted until deleted). Files are kept outside the database, in the
-- upload directory, under their id.
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,                -- the uploader's bare JID
    domain TEXT NOT NULL,               -- the owner's domain (quotas, admin filters)
    filename TEXT NOT NULL,             -- as the client named it (checked, never a path)
    size BIGINT NOT NULL,               -- bytes, as declared in the slot request
    content_type TEXT NOT NULL,
    state BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    slot_expires_ms BIGINT NOT NULL,
    stored_ms BIGINT,                   -- when the PUT completed
    sha256 TEXT                         -- hex, of the stored file
);
CREATE INDEX uploads_owner ON uploads (owner, state);
CREATE INDEX uploads_domain ON uploads (domain, state);
CREATE INDEX uploads_stored ON uploads (state, stored_ms);

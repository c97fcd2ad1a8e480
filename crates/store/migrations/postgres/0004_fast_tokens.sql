-- XEP-0484 FAST tokens (postgres flavour; keep in step with the other).
-- One row per token of one device (the client's SASL2 user-agent id) of an account. `secret`
-- is the token itself: the HT-* mechanisms prove knowledge of it with an HMAC keyed by it, so
-- it cannot be stored hashed. It is random, per device, expires, and every token of an
-- account is deleted when its password changes or the account is deleted.
CREATE TABLE fast_tokens (
    owner TEXT NOT NULL,
    agent TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    secret TEXT NOT NULL,
    issued_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (owner, agent, secret)
);

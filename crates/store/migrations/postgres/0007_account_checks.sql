-- When an external account backend (IMAP, …) last confirmed the account's password, ms since
-- the Unix epoch; 0 for accounts whose password Postern holds itself. The SCRAM keys of an
-- external account are derived from the password that backend last confirmed, and honoured
-- only for `[accounts.imap] scram_ttl` after it: so a password changed on the mail server
-- stops working over SCRAM within that bound (over PLAIN at once: every PLAIN asks it).
ALTER TABLE accounts ADD COLUMN checked_at_ms BIGINT NOT NULL DEFAULT 0;

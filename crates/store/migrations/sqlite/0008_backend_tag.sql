-- What an external account backend that exposes the password's hash (`sql`) returned when it
-- last confirmed the password: SHA-256 of that hash, hex. A SCRAM or FAST login of such an
-- account reads the hash again and is honoured only while it is unchanged, so a password
-- changed in the organisation's database stops working at once over every mechanism. NULL
-- for the other backends and for accounts whose password Postern holds.
ALTER TABLE accounts ADD COLUMN backend_tag TEXT;

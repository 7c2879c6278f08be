-- creddy schema 7 (SQLite): a keyed hash on every audit record (HMAC-SHA-256 of its chain hash
-- under a key derived from the master key), so the chain cannot be rewritten consistently
-- by someone who can write to the database but does not hold the master key.
ALTER TABLE audit_events ADD COLUMN mac TEXT;

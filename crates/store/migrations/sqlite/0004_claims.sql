-- creddy schema 4 (SQLite): claims, so that nodes sharing a database revoke each lease once.
ALTER TABLE leases ADD COLUMN claimed_until INTEGER;   -- a node works on the lease until then

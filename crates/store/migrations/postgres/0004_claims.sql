-- creddy schema 4 (PostgreSQL): claims, so that nodes sharing a database revoke each lease once.
ALTER TABLE leases ADD COLUMN claimed_until BIGINT;   -- a node works on the lease until then

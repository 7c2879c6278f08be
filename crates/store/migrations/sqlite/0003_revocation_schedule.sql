-- creddy schema 3 (SQLite): the revocation schedule.
ALTER TABLE leases ADD COLUMN next_attempt_at INTEGER;   -- no attempt before this time
ALTER TABLE leases ADD COLUMN first_failed_at INTEGER;   -- the retry horizon counts from here

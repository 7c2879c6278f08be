-- creddy schema 3 (PostgreSQL): the revocation schedule.
ALTER TABLE leases ADD COLUMN next_attempt_at BIGINT;   -- no attempt before this time
ALTER TABLE leases ADD COLUMN first_failed_at BIGINT;   -- the retry horizon counts from here

-- creddy schema 5 (PostgreSQL): one indexed due time per open lease, so that the revocation
-- engine reads due leases from an index however many live leases there are.
--
-- due_at is when the lease next needs the engine: the expiry of an active lease, the end of
-- a pending lease's grace, the next attempt of a failing one, or the end of a node's claim
-- while an attempt runs. It is NULL once nothing remains to do (revoked, failed, lapsed,
-- forgotten). It supersedes claimed_until, which is no longer written.
ALTER TABLE leases ADD COLUMN due_at BIGINT;
UPDATE leases SET due_at = CASE
    WHEN state = 'pending' THEN created_at + 120000
    WHEN state = 'active' THEN COALESCE(next_attempt_at, expires_at)
    WHEN state = 'revoking' THEN COALESCE(next_attempt_at, created_at)
    WHEN state = 'irrevocable' THEN next_attempt_at
    ELSE NULL END;
UPDATE leases SET due_at = claimed_until
    WHERE due_at IS NOT NULL AND claimed_until IS NOT NULL AND claimed_until > due_at;
CREATE INDEX leases_due ON leases (due_at, backend) WHERE due_at IS NOT NULL;
CREATE INDEX leases_backend_due ON leases (backend, due_at) WHERE due_at IS NOT NULL;
-- The admin listing: newest first, and by agent name.
CREATE INDEX leases_created ON leases (created_at);
CREATE INDEX leases_agent_name ON leases (agent_name, created_at);

-- creddy schema 6 (PostgreSQL): enrollments and amendments waiting for a person or a policy.
CREATE TABLE enrollments (
    id           TEXT PRIMARY KEY,        -- enr_<ULID>
    kind         TEXT NOT NULL,           -- 'enroll' or 'amendment'
    name         TEXT NOT NULL,           -- the (requested) agent name
    name_key     TEXT NOT NULL,           -- lower-cased name
    agent_id     TEXT,                    -- amendment: the agent; enroll: set at approval
    scopes       TEXT NOT NULL,           -- JSON array: requested, then as approved
    status       TEXT NOT NULL,           -- pending, approved, claimed, rejected, expired
    policy       TEXT,                    -- the governing policy, if any
    reason       TEXT,
    ip           TEXT,
    secret_hash  TEXT UNIQUE,             -- SHA-256 of the poll secret (enroll only)
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,             -- pending: decision deadline; approved: pickup deadline
    decided_at   BIGINT,
    decided_by   TEXT                     -- 'policy', 'local_admin' or an agent id
);
-- A name is free among open enrollments.
CREATE UNIQUE INDEX enrollments_open_name ON enrollments (name_key)
    WHERE kind = 'enroll' AND status IN ('pending', 'approved');
CREATE INDEX enrollments_open_expiry ON enrollments (expires_at)
    WHERE status IN ('pending', 'approved');
-- Automatic approvals per policy and window (limits.rate).
CREATE INDEX enrollments_policy_decisions ON enrollments (policy, decided_at)
    WHERE decided_by = 'policy';
CREATE INDEX agents_policy ON agents (policy) WHERE policy IS NOT NULL;

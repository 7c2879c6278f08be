-- creddy schema 1 (SQLite): agents, leases, the audit trail.
-- Times are UTC milliseconds since the epoch, stored as integers and compared numerically.

CREATE TABLE agents (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    name_key           TEXT NOT NULL UNIQUE,      -- lower-cased name: names are unique case-insensitively
    scopes             TEXT NOT NULL,             -- JSON array of scope strings, sorted
    policy             TEXT,
    client_id          TEXT NOT NULL UNIQUE,
    token_hash         TEXT NOT NULL UNIQUE,      -- SHA-256 of the vend token; the token is never stored
    client_secret_hash TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    last_used          INTEGER,
    expires_at         INTEGER
);
CREATE INDEX agents_expires_at ON agents (expires_at) WHERE expires_at IS NOT NULL;

-- Leases outlive their agent (revocation and audit still need them), so no foreign key.
CREATE TABLE leases (
    id          TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    agent_name  TEXT NOT NULL,
    backend     TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX leases_agent_state ON leases (agent_id, state);

CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    time        INTEGER NOT NULL,
    action      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    subject     TEXT,
    backend     TEXT,
    lease_id    TEXT,
    outcome     TEXT NOT NULL,
    ip          TEXT,
    request_id  TEXT,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);

-- The head of the chain: one row, updated in every transaction that appends an event, which
-- serialises appends and keeps seq gap-free.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

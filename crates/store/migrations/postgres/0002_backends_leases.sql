-- creddy schema 2 (PostgreSQL): configured backends, lease issuing columns, node-shared facts.

CREATE TABLE backends (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    plugin_version  TEXT NOT NULL,
    config          TEXT NOT NULL,          -- sealed (XChaCha20-Poly1305, key id prefixed)
    state           TEXT NOT NULL,          -- 'active' or 'draining'
    created_at      BIGINT NOT NULL
);

ALTER TABLE leases ADD COLUMN ttl_seconds BIGINT NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN external_id TEXT;          -- sealed revocation handle
ALTER TABLE leases ADD COLUMN value_sha256 TEXT;         -- the credential itself is never stored
ALTER TABLE leases ADD COLUMN revoked_at BIGINT;
ALTER TABLE leases ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN last_error TEXT;
CREATE INDEX leases_state_expires ON leases (state, expires_at);
CREATE INDEX leases_backend_state ON leases (backend, state);

-- Facts shared by every node, such as the check value that proves a node holds the right
-- master key.
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

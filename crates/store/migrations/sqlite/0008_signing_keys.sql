-- creddy schema 8 (SQLite): the OIDC signing keys, shared by every node.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,            -- EdDSA
    state        TEXT NOT NULL,            -- current, grace, retired
    private_key  TEXT NOT NULL,            -- sealed with the master key
    public_jwk   TEXT NOT NULL,            -- JSON
    created_at   INTEGER NOT NULL,
    retires_at   INTEGER                        -- end of the grace period
);
-- One current key at a time, whichever node creates it first.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (state) WHERE state = 'current';

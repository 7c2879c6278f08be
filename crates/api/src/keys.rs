//! The OIDC signing keys: `GET /v1/admin/keys`, `POST /v1/admin/keys/rotate`.

use creddy_core::Timestamp;
use creddy_core::signing::KeyState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A signing key (its public half is in the JWKS; the private half never leaves the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SigningKey {
    /// The key id.
    pub kid: String,
    /// `EdDSA`, `ES256` or `RS256`.
    pub alg: String,
    /// `current`, `grace` or `retired`.
    pub state: KeyState,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops being published.
    pub retires_at: Option<Timestamp>,
}

/// `POST /v1/admin/keys/rotate` (optional body).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RotateRequest {
    /// The new key's algorithm; the configured one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// How long the previous key stays published (`2h`); never less than a token's lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
}

/// A rotation's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Rotated {
    /// The new key's id.
    pub kid: String,
    /// Its algorithm.
    pub alg: String,
    /// Always `current`.
    pub state: KeyState,
    /// When it was made.
    pub created_at: Timestamp,
    /// Always null: a current key does not retire.
    pub retires_at: Option<Timestamp>,
    /// The key it replaced.
    pub previous: Option<String>,
    /// When that key stops being published.
    pub previous_retires_at: Option<Timestamp>,
}

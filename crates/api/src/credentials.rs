//! Vending: `GET`/`POST /v1/credentials/{backend}`.

use std::collections::BTreeMap;

use creddy_core::Timestamp;
use creddy_core::secret::Secret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The JSON body form of a vend request (`POST`); the query form has the same fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct VendRequest {
    /// How long the credential should live (`30m`, `1h`); the backend's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Narrower scopes than the agent's grants; all of its grants on the backend when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// The query form of a vend request: `?ttl=1h&scope=daytona:sandboxes:read&scope=…`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VendQuery {
    /// How long the credential should live.
    pub ttl: Option<String>,
    /// A narrower scope; repeat for several.
    #[param(explode, style = Form)]
    pub scope: Option<Vec<String>>,
}

/// An issued credential, with its lease.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Credential {
    /// The lease, `cred_<ULID>`.
    pub id: String,
    /// The backend that issued it.
    pub backend: String,
    /// The credential itself.
    #[schema(value_type = String)]
    pub token: Secret<String>,
    /// When it ends (and is deleted upstream).
    pub expires_at: Timestamp,
    /// Its lifetime as given back (`1h`).
    pub ttl: String,
    /// Its lifetime in seconds.
    pub ttl_seconds: u64,
    /// The scopes it carries.
    pub scopes: Vec<String>,
    /// Facts the plugin reports about it (never secrets).
    pub metadata: BTreeMap<String, String>,
    /// Environment variables to set for a program that uses it (`creddy run`).
    #[schema(value_type = BTreeMap<String, String>)]
    pub env: BTreeMap<String, Secret<String>>,
}

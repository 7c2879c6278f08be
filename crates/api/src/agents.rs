//! Agents as admins manage them: `/v1/admin/agents`.

use creddy_core::Timestamp;
use creddy_core::secret::Secret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::leases::LeaseSummary;

/// An agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    /// `ag_<ULID>`.
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// What it may ask for.
    pub scopes: Vec<String>,
    /// The policy that admitted it.
    pub policy: Option<String>,
    /// Its OIDC client id.
    pub client_id: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last authenticated.
    pub last_used: Option<Timestamp>,
    /// When it ends (never when absent).
    pub expires_at: Option<Timestamp>,
    /// Its open leases.
    pub active_leases: i64,
    /// For a federated agent (§18): the `[[trust]]` that admitted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
}

/// `POST /v1/admin/agents`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateAgent {
    /// A unique name: letters, digits, `-` and `_`.
    pub name: String,
    /// What it may ask for (`daytona`, `daytona:sandboxes:write`, `admin:agents:read`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Its lifetime (`30d`); unbounded when absent unless a policy says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// An agent's OIDC client credentials, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OidcClient {
    /// The client id.
    pub client_id: String,
    /// The client secret (`ccs_…`).
    #[schema(value_type = String)]
    pub client_secret: Secret<String>,
}

/// A created agent with its secrets, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedAgent {
    /// The agent.
    #[serde(flatten)]
    pub agent: Agent,
    /// Its vend token (`cat_…`).
    #[schema(value_type = String)]
    pub token: Secret<String>,
    /// Its OIDC client credentials.
    pub oidc: OidcClient,
    /// The server's public URL (the OIDC issuer).
    pub server_url: String,
    /// Granted scopes that name no configured backend yet.
    pub warnings: Vec<String>,
}

/// An agent with its open leases.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentDetail {
    /// The agent.
    #[serde(flatten)]
    pub agent: Agent,
    /// Its open leases.
    pub leases: Vec<LeaseSummary>,
}

/// `GET /v1/status`: the calling agent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentStatus {
    /// `ag_<ULID>`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Always `enrolled`.
    pub status: String,
    /// What it may ask for.
    pub scopes: Vec<String>,
    /// The policy that admitted it.
    pub policy: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last authenticated.
    pub last_used: Option<Timestamp>,
    /// When it ends.
    pub expires_at: Option<Timestamp>,
    /// Its open leases.
    pub active_credentials: Vec<ActiveCredential>,
    /// Its scope requests awaiting a decision.
    pub pending_amendments: Vec<PendingAmendment>,
}

/// An open lease in [`AgentStatus`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActiveCredential {
    /// `cred_<ULID>`.
    pub id: String,
    /// The backend.
    pub backend: String,
    /// When it ends.
    pub expires_at: Timestamp,
}

/// A scope request awaiting a decision, in [`AgentStatus`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PendingAmendment {
    /// `enr_<ULID>`.
    pub id: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// When it was asked.
    pub created_at: Timestamp,
}

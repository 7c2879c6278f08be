//! Leases: an agent's view (`GET /v1/active`), the admin's (`GET /v1/admin/tokens`) and the
//! answers to a revoke.

use creddy_core::Timestamp;
use creddy_core::lease::LeaseState;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A lease as its agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseSummary {
    /// `cred_<ULID>`.
    pub id: String,
    /// The backend it was issued by.
    pub backend: String,
    /// The scopes it was issued for.
    pub scopes: Vec<String>,
    /// Where it is in its life.
    pub state: LeaseState,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it ends.
    pub expires_at: Timestamp,
}

/// A lease as an admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    /// `cred_<ULID>`.
    pub id: String,
    /// The agent it was issued to.
    pub agent_id: String,
    /// That agent's name.
    pub agent_name: String,
    /// The backend it was issued by.
    pub backend: String,
    /// The scopes it was issued for.
    pub scopes: Vec<String>,
    /// Where it is in its life.
    pub state: LeaseState,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it ends.
    pub expires_at: Timestamp,
    /// When the upstream confirmed its revocation.
    pub revoked_at: Option<Timestamp>,
    /// Revocation attempts so far.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// `GET /v1/admin/tokens` filters; newest first, a page of `limit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeaseQuery {
    /// Only the leases of this agent (by name).
    pub agent: Option<String>,
    /// Only the leases of this backend.
    pub backend: Option<String>,
    /// Only leases in these states, comma-separated (`active,revoking`).
    pub state: Option<String>,
    /// The id of the last lease of the previous page.
    pub before: Option<String>,
    /// At most this many (1000 and the default).
    #[param(minimum = 0)]
    pub limit: Option<u32>,
}

/// `DELETE /v1/admin/tokens/{id}` options.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevokeQuery {
    /// Stop retrying an `irrevocable` lease (it becomes `forgotten`).
    #[serde(default)]
    pub force: bool,
    /// Why (recorded in the audit event).
    pub reason: Option<String>,
}

/// A lease's state after a revoke: 200 when ended, 202 while `revoking` (or, with `retry:
/// "queued"`, an `irrevocable` lease tried again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    /// The lease.
    pub id: String,
    /// Its state now.
    pub state: LeaseState,
    /// `queued` when an irrevocable lease's revocation was queued again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
}

//! Health and readiness: `GET /health`, `GET /ready`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /health`: `{"status": "ok"}`, with counts for a caller holding
/// `admin:metrics:read`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The server's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Seconds since it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
    /// Agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<i64>,
    /// Backends loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<u64>,
    /// Requests waiting for a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
    /// Open leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leases: Option<i64>,
    /// Leases whose revocation failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irrevocable: Option<i64>,
}

/// `GET /ready`: `{"status": "ready"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    pub status: String,
}

/// The 503 of `/health` and `/ready`: storage unreachable or damaged.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Unavailable {
    /// `unavailable`.
    pub status: String,
    /// What is wrong.
    pub error: String,
    /// `storage_unavailable`.
    pub code: String,
}

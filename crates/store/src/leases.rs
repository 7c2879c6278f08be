//! Leases, as far as the agent views need them: the open leases of one agent.
//!
//! Issuing and revoking leases arrive with the plugin host and the revocation engine; the
//! table exists from the first schema so that agent removal already queues revocations.

use creddy_core::Timestamp;
use creddy_core::ids::AgentId;
use serde::Serialize;

use crate::{Result, Store, decode_strings, with_pool};

/// One lease, as shown to its agent and in agent listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseSummary {
    /// `cred_<ULID>`.
    pub id: String,
    /// The backend that issued it.
    pub backend: String,
    /// The scopes it was issued for.
    pub scopes: Vec<String>,
    /// Its state.
    pub state: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
}

impl Store {
    /// The agent's leases in `pending` or `active`, soonest expiry first.
    pub async fn open_leases_of(&self, agent: &AgentId) -> Result<Vec<LeaseSummary>> {
        let rows: Vec<(String, String, String, String, i64, i64)> = with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, backend, scopes, state, created_at, expires_at FROM leases \
                 WHERE agent_id = $1 AND state IN ('pending', 'active') ORDER BY expires_at",
            )
            .bind(agent.as_str())
            .fetch_all(p)
            .await
        })?;
        rows.into_iter()
            .map(|r| {
                Ok(LeaseSummary {
                    id: r.0,
                    backend: r.1,
                    scopes: decode_strings("leases.scopes", &r.2)?,
                    state: r.3,
                    created_at: Timestamp::from_millis(r.4),
                    expires_at: Timestamp::from_millis(r.5),
                })
            })
            .collect()
    }

    /// The number of leases in `pending` or `active`.
    pub async fn count_open_leases(&self) -> Result<i64> {
        let (n,): (i64,) = with_pool!(self, |p| sqlx::query_as(
            "SELECT COUNT(*) FROM leases WHERE state IN ('pending', 'active')"
        )
        .fetch_one(p)
        .await)?;
        Ok(n)
    }
}

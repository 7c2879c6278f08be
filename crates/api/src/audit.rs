//! The audit trail: `GET /v1/admin/audit` and `GET /v1/admin/audit/verify`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// `GET /v1/admin/audit` filters; newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// At most this many (1 to 1000; 100 by default).
    pub limit: Option<i64>,
    /// Only events about this agent (by name).
    pub agent: Option<String>,
    /// Only events about this agent (by id).
    pub agent_id: Option<String>,
    /// Only events about this backend.
    pub backend: Option<String>,
    /// Only this action (`credential.issued`).
    pub action: Option<String>,
    /// Only events about this lease.
    pub lease: Option<String>,
    /// From this time (RFC 3339) or this long ago (`24h`).
    pub since: Option<String>,
    /// Until this time or this long ago.
    pub until: Option<String>,
    /// Only events before this position (the next page).
    pub before_seq: Option<i64>,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    /// Position in the chain, gap-free from 1.
    pub seq: i64,
    /// `evt_<ULID>`.
    pub id: String,
    /// Milliseconds since the epoch.
    pub time: i64,
    /// The action (`credential.issued`).
    pub action: String,
    /// Who did it: `{"type": "admin"|"agent"|"system", "id", "name"}`.
    #[schema(value_type = Object)]
    pub actor: Value,
    /// The agent concerned: `{"agent_id", "agent_name"}`.
    #[schema(value_type = Option<Object>)]
    pub subject: Option<Value>,
    /// The backend concerned.
    pub backend: Option<String>,
    /// The lease concerned.
    pub lease_id: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// The caller's address.
    pub ip: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// Action-specific facts (never secrets).
    #[schema(value_type = Object)]
    pub details: Value,
    /// The previous event's hash.
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

/// `GET /v1/admin/audit/verify` options.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// A head hash recorded earlier: the chain must still contain it.
    pub expect_head: Option<String>,
}

/// The verdict on the chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ChainVerdict {
    /// Every link holds.
    Intact(IntactChain),
    /// A link does not.
    Broken(BrokenChain),
}

/// A chain whose every link holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IntactChain {
    /// Always true.
    pub ok: bool,
    /// Events checked.
    pub events: i64,
    /// The newest event's position.
    pub head_seq: i64,
    /// The newest event's hash (record it to detect truncation later: `expect_head`).
    pub head_hash: String,
}

/// A chain with a broken link.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BrokenChain {
    /// Always false.
    pub ok: bool,
    /// The first position that does not verify.
    pub broken_at_seq: i64,
    /// That event's id, when it could be read.
    pub event_id: Option<String>,
    /// What is wrong.
    pub reason: String,
}

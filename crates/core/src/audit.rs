//! Audit events: what happened, who did it, and the chain that links the records.
//!
//! **Invariant: every state change writes its audit record in the same transaction; if the
//! record cannot be written, the change does not happen.** The store enforces this by taking
//! an [`AuditEvent`] with every operation that changes state.
//!
//! Each stored record carries `prev_hash` (the previous record's `hash`, 64 zeros for the
//! first) and `hash`, the SHA-256 of the canonical JSON of the record without `hash`.
//! Verification commands come with the audit trail's own issue; the chain is written from the
//! first record so that nothing has to be back-filled.

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Timestamp;
use crate::ids::EventId;

/// The hash that precedes the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The actions recorded so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    /// A plugin was found installed (details: name, version, SHA-256, signer).
    #[serde(rename = "plugin.installed")]
    PluginInstalled,
    /// An installed plugin changed version or executable.
    #[serde(rename = "plugin.upgraded")]
    PluginUpgraded,
    /// An installed plugin is gone.
    #[serde(rename = "plugin.removed")]
    PluginRemoved,
    /// A plugin was reloaded on request.
    #[serde(rename = "plugin.reloaded")]
    PluginReloaded,
    /// An installed plugin failed its integrity check.
    #[serde(rename = "plugin.integrity_failed")]
    PluginIntegrityFailed,
    /// A bearer token or client credentials were rejected (at most one per address and
    /// minute).
    #[serde(rename = "auth.failed")]
    AuthFailed,
    /// An OIDC access token was issued (details: jti, granted scope).
    #[serde(rename = "token.issued")]
    TokenIssued,
    /// A new signing key became current.
    #[serde(rename = "key.rotated")]
    KeyRotated,
    /// A signing key left its grace period and is trusted no more.
    #[serde(rename = "key.retired")]
    KeyRetired,
    /// An agent asked to enroll.
    #[serde(rename = "enrollment.requested")]
    EnrollmentRequested,
    /// An enrollment was approved (by an admin or a policy).
    #[serde(rename = "enrollment.approved")]
    EnrollmentApproved,
    /// An enrollment was rejected.
    #[serde(rename = "enrollment.rejected")]
    EnrollmentRejected,
    /// An enrollment expired undecided, or its approval unclaimed.
    #[serde(rename = "enrollment.expired")]
    EnrollmentExpired,
    /// An approved agent picked its credentials up.
    #[serde(rename = "enrollment.claimed")]
    EnrollmentClaimed,
    /// An agent asked for more scopes.
    #[serde(rename = "amendment.requested")]
    AmendmentRequested,
    /// An amendment was approved; the scopes were merged.
    #[serde(rename = "amendment.approved")]
    AmendmentApproved,
    /// An amendment was rejected.
    #[serde(rename = "amendment.rejected")]
    AmendmentRejected,
    /// A policy evaluated a request (details: policy, outcome, reason).
    #[serde(rename = "policy.decision")]
    PolicyDecision,
    /// The policies were (re)loaded (details: SHA-256 of the set).
    #[serde(rename = "policy.loaded")]
    PolicyLoaded,
    /// An agent was created.
    #[serde(rename = "agent.created")]
    AgentCreated,
    /// A federated agent was created or refreshed by a token exchange (§18; details: the
    /// trust, the token's `iss` and `sub`, the bound claims' values).
    #[serde(rename = "agent.federated")]
    AgentFederated,
    /// An agent was deleted (details carry the reason).
    #[serde(rename = "agent.deleted")]
    AgentDeleted,
    /// A node created its local admin token.
    #[serde(rename = "admin_token.created")]
    AdminTokenCreated,
    /// Events older than `audit.retention_days` were pruned; the chain now starts after the
    /// recorded anchor.
    #[serde(rename = "audit.pruned")]
    AuditPruned,
    /// A backend was configured.
    #[serde(rename = "backend.added")]
    BackendAdded,
    /// A backend was removed.
    #[serde(rename = "backend.removed")]
    BackendRemoved,
    /// A credential was issued (its lease committed).
    #[serde(rename = "credential.issued")]
    CredentialIssued,
    /// A credential request was refused before minting.
    #[serde(rename = "credential.denied")]
    CredentialDenied,
    /// Minting failed.
    #[serde(rename = "credential.failed")]
    CredentialFailed,
    /// The upstream confirmed a credential's deletion (or had no such credential).
    #[serde(rename = "credential.revoked")]
    CredentialRevoked,
    /// A credential could not be revoked and needs attention.
    #[serde(rename = "credential.irrevocable")]
    CredentialIrrevocable,
    /// One revocation attempt failed (details: attempt number, error kind).
    #[serde(rename = "credential.revoke_failed")]
    CredentialRevokeFailed,
    /// A self-expiring credential passed its expiry without a confirmed deletion.
    #[serde(rename = "credential.lapsed")]
    CredentialLapsed,
    /// An admin stopped the retries of an irrevocable credential.
    #[serde(rename = "credential.forgotten")]
    CredentialForgotten,
}

impl Action {
    /// The action's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::EnrollmentRequested => "enrollment.requested",
            Action::EnrollmentApproved => "enrollment.approved",
            Action::EnrollmentRejected => "enrollment.rejected",
            Action::EnrollmentExpired => "enrollment.expired",
            Action::EnrollmentClaimed => "enrollment.claimed",
            Action::AmendmentRequested => "amendment.requested",
            Action::AmendmentApproved => "amendment.approved",
            Action::AmendmentRejected => "amendment.rejected",
            Action::PolicyDecision => "policy.decision",
            Action::PolicyLoaded => "policy.loaded",
            Action::TokenIssued => "token.issued",
            Action::KeyRotated => "key.rotated",
            Action::KeyRetired => "key.retired",
            Action::AuthFailed => "auth.failed",
            Action::PluginInstalled => "plugin.installed",
            Action::PluginUpgraded => "plugin.upgraded",
            Action::PluginRemoved => "plugin.removed",
            Action::PluginReloaded => "plugin.reloaded",
            Action::PluginIntegrityFailed => "plugin.integrity_failed",
            Action::AgentCreated => "agent.created",
            Action::AgentFederated => "agent.federated",
            Action::AgentDeleted => "agent.deleted",
            Action::AdminTokenCreated => "admin_token.created",
            Action::AuditPruned => "audit.pruned",
            Action::BackendAdded => "backend.added",
            Action::BackendRemoved => "backend.removed",
            Action::CredentialIssued => "credential.issued",
            Action::CredentialDenied => "credential.denied",
            Action::CredentialFailed => "credential.failed",
            Action::CredentialRevoked => "credential.revoked",
            Action::CredentialIrrevocable => "credential.irrevocable",
            Action::CredentialRevokeFailed => "credential.revoke_failed",
            Action::CredentialLapsed => "credential.lapsed",
            Action::CredentialForgotten => "credential.forgotten",
        }
    }
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// `local_admin`, `agent`, `system` or `anonymous`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The actor's id, when it has one.
    pub id: Option<String>,
    /// The actor's name, when it has one.
    pub name: Option<String>,
}

impl Actor {
    /// The local admin token's holder.
    pub fn local_admin() -> Self {
        Self {
            kind: "local_admin",
            id: None,
            name: None,
        }
    }

    /// The server itself (background tasks, start-up).
    pub fn system() -> Self {
        Self {
            kind: "system",
            id: None,
            name: None,
        }
    }

    /// An unauthenticated caller (an enrollment request).
    pub fn anonymous() -> Self {
        Self {
            kind: "anonymous",
            id: None,
            name: None,
        }
    }

    /// An agent.
    pub fn agent(id: &str, name: &str) -> Self {
        Self {
            kind: "agent",
            id: Some(id.to_owned()),
            name: Some(name.to_owned()),
        }
    }
}

/// The outcome of the audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was attempted and failed.
    Failure,
    /// It was refused.
    Denied,
}

/// The agent an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// The agent's id.
    pub agent_id: String,
    /// The agent's name.
    pub agent_name: String,
}

/// An event about to be recorded; the store assigns `seq`, `prev_hash` and `hash`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// `evt_<ULID>`.
    pub id: EventId,
    /// When it happened.
    #[serde(serialize_with = "millis")]
    pub time: Timestamp,
    /// What happened.
    pub action: Action,
    /// Who did it.
    pub actor: Actor,
    /// The agent concerned.
    pub subject: Option<Subject>,
    /// The backend concerned.
    pub backend: Option<String>,
    /// The lease concerned.
    pub lease_id: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The caller's address.
    pub ip: Option<String>,
    /// The request that caused it.
    pub request_id: Option<String>,
    /// Action-specific facts; never a secret.
    pub details: Value,
}

fn millis<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(t.as_millis())
}

impl AuditEvent {
    /// A successful event with empty details.
    pub fn new(action: Action, actor: Actor, now: Timestamp) -> Self {
        Self {
            id: EventId::generate(now),
            time: now,
            action,
            actor,
            subject: None,
            backend: None,
            lease_id: None,
            outcome: Outcome::Success,
            ip: None,
            request_id: None,
            details: json!({}),
        }
    }

    /// Names the backend and lease the event is about.
    pub fn about_lease(mut self, backend: &str, lease_id: Option<&str>) -> Self {
        self.backend = Some(backend.to_owned());
        self.lease_id = lease_id.map(str::to_owned);
        self
    }

    /// Marks the outcome.
    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Names the agent the event is about.
    pub fn about_agent(mut self, id: &str, name: &str) -> Self {
        self.subject = Some(Subject {
            agent_id: id.to_owned(),
            agent_name: name.to_owned(),
        });
        self
    }

    /// Sets the details object.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Records the request context.
    pub fn from_request(mut self, ip: Option<String>, request_id: Option<String>) -> Self {
        self.ip = ip;
        self.request_id = request_id;
        self
    }

    /// The chain hash of this event stored at `seq` after `prev_hash`: SHA-256 of the
    /// canonical JSON (sorted keys, no whitespace) of the record without `hash`.
    pub fn chain_hash(&self, seq: i64, prev_hash: &str) -> String {
        let mut record = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut record {
            map.insert("seq".into(), json!(seq));
            map.insert("prev_hash".into(), json!(prev_hash));
        }
        record_hash(&record)
    }
}

/// SHA-256 (hex) of a record's canonical JSON: the record as stored, with `seq` and
/// `prev_hash` and without `hash` and `mac`. serde_json's map keeps keys sorted and compact
/// output has no whitespace: together they give RFC 8785's form for the strings, integers
/// and objects used here.
pub fn record_hash(record: &Value) -> String {
    hex::encode(Sha256::digest(record.to_string().as_bytes()))
}

/// The keyed hash of a record: HMAC-SHA-256 of its chain hash under the audit key (derived
/// from the master key), so that nobody without the key can rewrite the chain consistently.
pub fn keyed_hash(key: &[u8; 32], hash: &str) -> String {
    hex::encode(crate::secret::hmac_sha256(key, hash.as_bytes()))
}

/// The keyed hash of a chain anchor (the last pruned record), so that nobody without the
/// audit key can move the start of the chain.
pub fn anchor_mac(key: &[u8; 32], seq: i64, hash: &str) -> String {
    hex::encode(crate::secret::hmac_sha256(
        key,
        format!("anchor:{seq}:{hash}").as_bytes(),
    ))
}

/// Whether `mac` is the anchor's keyed hash (compared in constant time).
pub fn anchor_is_genuine(key: &[u8; 32], seq: i64, hash: &str, mac: &str) -> bool {
    bool::from(anchor_mac(key, seq, hash).as_bytes().ct_eq(mac.as_bytes()))
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// The first record that does not check out.
    pub seq: i64,
    /// Its id.
    pub event_id: String,
    /// What is wrong.
    pub reason: String,
}

/// Walks the chain in `seq` order, one record at a time.
#[derive(Debug, Clone)]
pub struct ChainCheck {
    key: Option<[u8; 32]>,
    first_seq: i64,
    expected_seq: i64,
    prev_hash: String,
}

impl ChainCheck {
    /// A check from the start of the chain, with the audit key when it is known.
    pub fn new(key: Option<[u8; 32]>) -> Self {
        Self {
            key,
            first_seq: 1,
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
        }
    }

    /// A check of a chain pruned through `anchor_seq`, whose last pruned record had
    /// `anchor_hash`: the first record must be `anchor_seq + 1` and link to it.
    pub fn from_anchor(key: Option<[u8; 32]>, anchor_seq: i64, anchor_hash: &str) -> Self {
        Self {
            key,
            first_seq: anchor_seq + 1,
            expected_seq: anchor_seq + 1,
            prev_hash: anchor_hash.to_owned(),
        }
    }

    /// Checks the next stored record: `record` holds every stored field but `hash` and `mac`.
    pub fn next(
        &mut self,
        record: &Value,
        hash: &str,
        mac: Option<&str>,
    ) -> Result<(), ChainBreak> {
        let seq = record["seq"].as_i64().unwrap_or(0);
        let fail = |reason: String| ChainBreak {
            seq,
            event_id: record["id"].as_str().unwrap_or_default().to_owned(),
            reason,
        };
        if seq != self.expected_seq {
            return Err(fail(format!(
                "expected seq {} here: a record was deleted, inserted or moved",
                self.expected_seq
            )));
        }
        if record["prev_hash"].as_str() != Some(self.prev_hash.as_str()) {
            return Err(fail(
                "prev_hash does not match the previous record: the chain was cut or reordered"
                    .into(),
            ));
        }
        if record_hash(record) != hash {
            return Err(fail(
                "the content does not match its hash: the record was edited".into(),
            ));
        }
        // With the key, every record from the first on must carry its keyed hash: the server
        // knows the key before it writes its first event, so a record without one was
        // stripped (someone recomputed the plain chain and cleared the keyed hashes).
        if let Some(key) = &self.key {
            match mac {
                Some(mac) if bool::from(keyed_hash(key, hash).as_bytes().ct_eq(mac.as_bytes())) => {
                }
                Some(_) => {
                    return Err(fail(
                        "the keyed hash does not match: the record was rewritten without the master key".into(),
                    ));
                }
                None => {
                    return Err(fail(
                        "the keyed hash is missing: the record was rewritten without the master key".into(),
                    ));
                }
            }
        }
        self.expected_seq += 1;
        self.prev_hash = hash.to_owned();
        Ok(())
    }

    /// Records checked so far.
    pub fn count(&self) -> i64 {
        self.expected_seq - self.first_seq
    }

    /// The `seq` of the last record checked (the anchor's before any).
    pub fn head_seq(&self) -> i64 {
        self.expected_seq - 1
    }

    /// The hash of the last record checked.
    pub fn head(&self) -> &str {
        &self.prev_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_hash_covers_content_position_and_predecessor() {
        let now = Timestamp::from_millis(5);
        let event = AuditEvent::new(Action::AgentCreated, Actor::local_admin(), now)
            .about_agent("ag_1", "ci");
        let base = event.chain_hash(1, GENESIS_HASH);
        assert_eq!(base.len(), 64);
        assert_eq!(base, event.chain_hash(1, GENESIS_HASH), "deterministic");
        assert_ne!(base, event.chain_hash(2, GENESIS_HASH), "position");
        assert_ne!(base, event.chain_hash(1, &"1".repeat(64)), "predecessor");
        let edited = event.clone().about_agent("ag_1", "cj");
        assert_ne!(base, edited.chain_hash(1, GENESIS_HASH), "content");
    }

    #[test]
    fn actions_serialise_to_their_names() {
        for a in [
            Action::AgentCreated,
            Action::AgentFederated,
            Action::AgentDeleted,
            Action::AdminTokenCreated,
        ] {
            assert_eq!(serde_json::to_value(a).ok(), Some(json!(a.as_str())));
        }
    }
}

//! The audit trail read back: a filtered page of events, and the verification of the whole
//! chain (hashes and keyed hashes recomputed from the anchor or the first record; the first
//! broken link reported, never a server error for a damaged record).

use creddy_api::audit::AuditQuery;
use creddy_core::audit::ChainCheck;
use creddy_core::{Duration, Timestamp};
use creddy_store::{AuditFilter, StoredEvent};

use crate::engine::auth::Principal;
use crate::engine::error::EngineError;
use crate::engine::state::Engine;

/// The default and largest page.
pub(crate) const DEFAULT_LIMIT: i64 = 100;
pub(crate) const MAX_LIMIT: i64 = 1_000;
/// Records read per query while verifying.
const VERIFY_BATCH: i64 = 1_000;

/// The original's action names, accepted by the `action` filter.
fn action_name(given: &str) -> String {
    match given {
        "token_issued" => "token.issued",
        "agent_created" | "agent_enrolled" => "agent.created",
        "scopes_amended" => "amendment.approved",
        "agent_self_deleted" => "agent.deleted",
        other => other,
    }
    .to_owned()
}

/// A time: RFC 3339, or a duration meaning that long ago (`24h`).
fn parse_time(field: &str, text: &str, now: Timestamp) -> Result<i64, EngineError> {
    if let Some(t) = Timestamp::parse_rfc3339(text) {
        return Ok(t.as_millis());
    }
    Duration::parse(text)
        .map(|d| now.as_millis() - i64::try_from(d.as_seconds() * 1000).unwrap_or(i64::MAX))
        .map_err(|_| {
            EngineError::invalid_request(format!(
                "{field}: '{text}' is neither a time (2026-11-27T10:00:00Z) nor a duration (24h)"
            ))
        })
}

/// A page of events, newest first.
pub(crate) async fn page(
    engine: &Engine,
    principal: &Principal,
    query: AuditQuery,
) -> Result<Vec<StoredEvent>, EngineError> {
    principal.require_admin("admin:audit:read")?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(EngineError::invalid_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let now = engine.clock().now();
    let filter = AuditFilter {
        agent_name: query.agent,
        agent_id: query.agent_id,
        backend: query.backend,
        action: query.action.as_deref().map(action_name),
        lease_id: query.lease,
        since: query
            .since
            .as_deref()
            .map(|t| parse_time("since", t, now))
            .transpose()?,
        until: query
            .until
            .as_deref()
            .map(|t| parse_time("until", t, now))
            .transpose()?,
        before_seq: query.before_seq,
    };
    Ok(engine.store().audit_page(&filter, limit).await?)
}

/// The verdict on the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every link holds.
    Intact {
        /// Events checked.
        events: i64,
        /// The newest event's position.
        head_seq: i64,
        /// The newest event's hash.
        head_hash: String,
    },
    /// A link does not.
    Broken {
        /// The first position that does not verify.
        at_seq: i64,
        /// That event's id, when it could be read.
        event_id: Option<String>,
        /// What is wrong.
        reason: String,
    },
}

/// The verdict on a chain broken at `seq`.
fn broken(seq: i64, event_id: Option<String>, reason: &str) -> Verdict {
    Verdict::Broken {
        at_seq: seq,
        event_id,
        reason: reason.to_owned(),
    }
}

/// Walks the whole chain; with `expect_head`, a head recorded earlier must still be in it
/// (the newest events were not removed).
pub(crate) async fn verify(
    engine: &Engine,
    principal: &Principal,
    expect_head: Option<&str>,
) -> Result<Verdict, EngineError> {
    principal.require_admin("admin:audit:read")?;
    let key = engine.sealer().audit_key();
    // A pruned chain starts after its anchor, whose keyed hash nobody without the key can
    // make: a forged or moved anchor is a broken link.
    let (mut check, mut last_seq) = match engine.store().audit_anchor().await? {
        None => (ChainCheck::new(Some(key)), 0),
        Some(anchor) => {
            if !creddy_core::audit::anchor_is_genuine(&key, anchor.seq, &anchor.hash, &anchor.mac) {
                return Ok(broken(
                    anchor.seq + 1,
                    None,
                    "the chain anchor's keyed hash does not match: the start of the trail was moved without the master key",
                ));
            }
            (
                ChainCheck::from_anchor(Some(key), anchor.seq, &anchor.hash),
                anchor.seq,
            )
        }
    };
    let mut expected_found = expect_head.is_none();
    loop {
        let batch = match engine.store().events_after(last_seq, VERIFY_BATCH).await {
            Ok(batch) => batch,
            // A record that cannot even be read is a broken link, not a server error.
            Err(creddy_store::StoreError::Corrupt(reason)) => {
                tracing::error!(after = last_seq, %reason, "audit chain unreadable");
                return Ok(broken(
                    check.head_seq() + 1,
                    None,
                    &format!("a record cannot be read: {reason}"),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let Some(last) = batch.last() else { break };
        last_seq = last.seq;
        for event in &batch {
            if let Err(broken) = check.next(&event.record(), &event.hash, event.mac.as_deref()) {
                tracing::error!(seq = broken.seq, reason = %broken.reason, "audit chain broken");
                return Ok(self::broken(
                    broken.seq,
                    Some(broken.event_id),
                    &broken.reason,
                ));
            }
            if expect_head == Some(event.hash.as_str()) {
                expected_found = true;
            }
        }
    }
    if !expected_found {
        return Ok(broken(
            check.head_seq() + 1,
            None,
            "the recorded head is not in the chain: the newest events were removed",
        ));
    }
    Ok(Verdict::Intact {
        events: check.count(),
        head_seq: check.head_seq(),
        head_hash: check.head().to_owned(),
    })
}

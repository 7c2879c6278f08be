//! The audit trail for admins: `GET /v1/admin/audit` (filters and `before_seq` paging) and
//! `GET /v1/admin/audit/verify` (the chain and keyed hashes recomputed from the first record;
//! the first broken link is reported).

use axum::Json;
use axum::extract::{Query, State};
use creddy_api::audit as api;
use creddy_core::audit::ChainCheck;
use creddy_core::{Duration, Timestamp};
use creddy_store::{AuditFilter, StoredEvent};

use crate::engine::auth::Principal;
use crate::engine::error::EngineError;
use crate::engine::state::Engine;

/// The default and largest page.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1_000;
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

/// `GET /v1/admin/audit`: a page of events, newest first.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "audit", security(("bearer" = [])),
    params(api::AuditQuery),
    responses((status = 200, description = "A page of events, newest first", body = Vec<api::AuditRecord>)))]
pub(crate) async fn list(
    State(state): State<Engine>,
    principal: Principal,
    Query(query): Query<api::AuditQuery>,
) -> Result<Json<Vec<api::AuditRecord>>, EngineError> {
    principal.require_admin("admin:audit:read")?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(EngineError::invalid_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let now = state.clock().now();
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
    let page = state.store().audit_page(&filter, limit).await?;
    Ok(Json(page.into_iter().map(record_view).collect()))
}

/// An event as the API shows it (its keyed hash stays inside).
fn record_view(event: StoredEvent) -> api::AuditRecord {
    api::AuditRecord {
        seq: event.seq,
        id: event.id,
        time: event.time,
        action: event.action,
        actor: event.actor,
        subject: event.subject,
        backend: event.backend,
        lease_id: event.lease_id,
        outcome: event.outcome,
        ip: event.ip,
        request_id: event.request_id,
        details: event.details,
        prev_hash: event.prev_hash,
        hash: event.hash,
    }
}

/// `GET /v1/admin/audit/verify`: walks the whole chain.
#[utoipa::path(get, path = "/v1/admin/audit/verify", tag = "audit", security(("bearer" = [])),
    params(api::VerifyQuery),
    responses((status = 200, description = "The verdict: intact, or where it breaks", body = api::ChainVerdict)))]
pub(crate) async fn verify(
    State(state): State<Engine>,
    principal: Principal,
    Query(query): Query<api::VerifyQuery>,
) -> Result<Json<api::ChainVerdict>, EngineError> {
    principal.require_admin("admin:audit:read")?;
    let key = state.sealer().audit_key();
    // A pruned chain starts after its anchor, whose keyed hash nobody without the key can
    // make: a forged or moved anchor is a broken link.
    let (mut check, mut last_seq) = match state.store().audit_anchor().await? {
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
    let mut expected_found = query.expect_head.is_none();
    loop {
        let batch = match state.store().events_after(last_seq, VERIFY_BATCH).await {
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
            if query.expect_head.as_deref() == Some(event.hash.as_str()) {
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
    Ok(Json(api::ChainVerdict::Intact(api::IntactChain {
        ok: true,
        events: check.count(),
        head_seq: check.head_seq(),
        head_hash: check.head().to_owned(),
    })))
}

/// The verdict on a chain broken at `seq`.
fn broken(seq: i64, event_id: Option<String>, reason: &str) -> Json<api::ChainVerdict> {
    Json(api::ChainVerdict::Broken(api::BrokenChain {
        ok: false,
        broken_at_seq: seq,
        event_id,
        reason: reason.to_owned(),
    }))
}

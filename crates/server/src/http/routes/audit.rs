//! The audit trail for admins: `GET /v1/admin/audit` (filters and `before_seq` paging) and
//! `GET /v1/admin/audit/verify` (`engine::audit`).

use axum::Json;
use axum::extract::{Query, State};
use creddy_api::audit as api;
use creddy_store::StoredEvent;

use crate::engine::audit::{self, Verdict};
use crate::engine::auth::Principal;
use crate::engine::error::EngineError;
use crate::engine::state::Engine;

/// `GET /v1/admin/audit`: a page of events, newest first.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "audit", security(("bearer" = [])),
    params(api::AuditQuery),
    responses((status = 200, description = "A page of events, newest first", body = Vec<api::AuditRecord>)))]
pub(crate) async fn list(
    State(state): State<Engine>,
    principal: Principal,
    Query(query): Query<api::AuditQuery>,
) -> Result<Json<Vec<api::AuditRecord>>, EngineError> {
    let page = audit::page(&state, &principal, query).await?;
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
    let verdict = audit::verify(&state, &principal, query.expect_head.as_deref()).await?;
    Ok(Json(match verdict {
        Verdict::Intact {
            events,
            head_seq,
            head_hash,
        } => api::ChainVerdict::Intact(api::IntactChain {
            ok: true,
            events,
            head_seq,
            head_hash,
        }),
        Verdict::Broken {
            at_seq,
            event_id,
            reason,
        } => api::ChainVerdict::Broken(api::BrokenChain {
            ok: false,
            broken_at_seq: at_seq,
            event_id,
            reason,
        }),
    }))
}

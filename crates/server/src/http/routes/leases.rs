//! Explicit revocation and the admin view of leases: `DELETE /v1/active/{id}` (an agent, its
//! own leases only), `GET /v1/admin/tokens`, `GET`/`DELETE /v1/admin/tokens/{id}`.
//!
//! A revoke moves the lease to `revoking` and tries once at once: 200 `revoked` when the
//! upstream confirmed, else 202 `revoking` (the reaper keeps trying). Repeating it on an
//! ended or `revoking` lease changes nothing and answers its state. Another agent's lease
//! answers 404, like an unknown one. An admin's `force=true` on an `irrevocable` lease stops
//! its retries: it becomes `forgotten`, audited with the admin's reason; without it, the lease is
//! tried again at once (202, still `irrevocable` until that attempt succeeds).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use creddy_core::lease::LeaseState;
use creddy_store::{LeaseFilter, LeaseRecord};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Principal;
use crate::error::EngineError;
use crate::http::RequestOrigin;
use crate::revocation::{AdminRevoke, admin_revoke, find, no_such_lease, revoke_explicitly};
use crate::state::AppState;

/// `DELETE /v1/active/{id}`.
pub(crate) async fn revoke_own(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
    Path(id): Path<String>,
) -> Result<Response, EngineError> {
    let agent = principal.clone().into_agent()?;
    let lease = find(&state, &id)
        .await?
        .filter(|l| l.agent_id == agent.id.as_str())
        .ok_or_else(|| no_such_lease(&id))?;
    let current = revoke_explicitly(&state, &principal, &context, lease).await?;
    Ok(state_response(&id, current))
}

/// `GET /v1/admin/tokens` filters.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    agent: Option<String>,
    backend: Option<String>,
    state: Option<String>,
    /// The id of the last lease of the previous page.
    before: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/admin/tokens`: newest first, a page of `limit` (at most 1000, the default);
/// `before=<last id>` gives the next page.
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<LeaseRecord>>, EngineError> {
    principal.require_admin("admin:tokens:read")?;
    let states = query
        .state
        .map(|s| {
            s.split(',')
                .map(str::parse::<LeaseState>)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|unknown| {
            EngineError::invalid_request(format!("unknown lease state '{}'", unknown.name))
                .with_remedy(format!(
                    "use one or more of: {}",
                    LeaseState::ALL.map(LeaseState::as_str).join(", ")
                ))
        })?
        .unwrap_or_default();
    let filter = LeaseFilter {
        id: None,
        agent_name: query.agent,
        backend: query.backend,
        states,
        before: query.before,
        limit: query.limit.unwrap_or(creddy_store::MAX_LEASE_PAGE),
    };
    Ok(Json(state.store().find_leases(&filter).await?))
}

/// `GET /v1/admin/tokens/{id}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<LeaseRecord>, EngineError> {
    principal.require_admin("admin:tokens:read")?;
    find(&state, &id)
        .await?
        .map(Json)
        .ok_or_else(|| no_such_lease(&id))
}

/// `DELETE /v1/admin/tokens/{id}` options.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RevokeQuery {
    /// Stop retrying an `irrevocable` lease (it becomes `forgotten`).
    #[serde(default)]
    force: bool,
    /// Why (recorded in the audit event).
    reason: Option<String>,
}

/// `DELETE /v1/admin/tokens/{id}`.
pub(crate) async fn revoke_any(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(origin): RequestOrigin,
    Path(id): Path<String>,
    Query(query): Query<RevokeQuery>,
) -> Result<Response, EngineError> {
    let outcome = admin_revoke(&state, &principal, &origin, &id, query.force, query.reason).await?;
    Ok(match outcome {
        AdminRevoke::RetryQueued => (
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "state": LeaseState::Irrevocable, "retry": "queued"})),
        )
            .into_response(),
        AdminRevoke::State(current) => state_response(&id, current),
    })
}

/// The lease's state after a revoke: 202 while it is `revoking`, else 200.
fn state_response(id: &str, current: LeaseState) -> Response {
    let status = if current == LeaseState::Revoking {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (status, Json(json!({"id": id, "state": current}))).into_response()
}

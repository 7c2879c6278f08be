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
use creddy_api::leases as api;
use creddy_core::lease::LeaseState;
use creddy_store::{LeaseRecord, LeaseSummary};

use crate::engine::auth::Principal;
use crate::engine::error::EngineError;
use crate::engine::revocation::{AdminRevoke, admin_revoke, revoke_own as revoke_own_lease};
use crate::engine::state::Engine;
use crate::http::RequestOrigin;

/// A lease as its agent sees it.
pub(crate) fn summary_view(lease: LeaseSummary) -> api::LeaseSummary {
    api::LeaseSummary {
        id: lease.id.to_string(),
        backend: lease.backend,
        scopes: lease.scopes,
        state: lease.state,
        created_at: lease.created_at,
        expires_at: lease.expires_at,
    }
}

/// A lease as an admin sees it.
fn lease_view(lease: LeaseRecord) -> api::Lease {
    api::Lease {
        id: lease.id.to_string(),
        agent_id: lease.agent_id,
        agent_name: lease.agent_name,
        backend: lease.backend,
        scopes: lease.scopes,
        state: lease.state,
        created_at: lease.created_at,
        expires_at: lease.expires_at,
        revoked_at: lease.revoked_at,
        attempts: lease.attempts,
        last_error: lease.last_error,
    }
}

/// `DELETE /v1/active/{id}`: an agent revokes one of its own leases.
#[utoipa::path(delete, path = "/v1/active/{id}", tag = "leases", security(("bearer" = [])),
    params(("id" = String, Path, description = "The lease, `cred_<ULID>`")),
    responses((status = 200, description = "Ended (or already ended)", body = api::Revoked),
        (status = 202, description = "`revoking`: the reaper keeps trying", body = api::Revoked)))]
pub(crate) async fn revoke_own(
    State(state): State<Engine>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
    Path(id): Path<String>,
) -> Result<Response, EngineError> {
    let current = revoke_own_lease(&state, &principal, &context, &id).await?;
    Ok(state_response(&id, current))
}

/// `GET /v1/admin/tokens`: newest first, a page of `limit` (at most 1000, the default);
/// `before=<last id>` gives the next page.
#[utoipa::path(get, path = "/v1/admin/tokens", tag = "leases", security(("bearer" = [])),
    params(api::LeaseQuery),
    responses((status = 200, description = "A page of leases, newest first", body = Vec<api::Lease>)))]
pub(crate) async fn list(
    State(state): State<Engine>,
    principal: Principal,
    Query(query): Query<api::LeaseQuery>,
) -> Result<Json<Vec<api::Lease>>, EngineError> {
    let leases = crate::engine::leases::page(&state, &principal, query).await?;
    Ok(Json(leases.into_iter().map(lease_view).collect()))
}

/// `GET /v1/admin/tokens/{id}`.
#[utoipa::path(get, path = "/v1/admin/tokens/{id}", tag = "leases", security(("bearer" = [])),
    params(("id" = String, Path, description = "The lease, `cred_<ULID>`")),
    responses((status = 200, description = "The lease", body = api::Lease)))]
pub(crate) async fn show(
    State(state): State<Engine>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<api::Lease>, EngineError> {
    let lease = crate::engine::leases::show(&state, &principal, &id).await?;
    Ok(Json(lease_view(lease)))
}

/// `DELETE /v1/admin/tokens/{id}`: an admin revokes any lease.
#[utoipa::path(delete, path = "/v1/admin/tokens/{id}", tag = "leases", security(("bearer" = [])),
    params(("id" = String, Path, description = "The lease, `cred_<ULID>`"), api::RevokeQuery),
    responses((status = 200, description = "Ended, or `forgotten` with `force`", body = api::Revoked),
        (status = 202, description = "`revoking`, or an `irrevocable` lease tried again (`retry: queued`)", body = api::Revoked)))]
pub(crate) async fn revoke_any(
    State(state): State<Engine>,
    principal: Principal,
    RequestOrigin(origin): RequestOrigin,
    Path(id): Path<String>,
    Query(query): Query<api::RevokeQuery>,
) -> Result<Response, EngineError> {
    let outcome = admin_revoke(&state, &principal, &origin, &id, query.force, query.reason).await?;
    Ok(match outcome {
        AdminRevoke::RetryQueued => (
            StatusCode::ACCEPTED,
            Json(api::Revoked {
                id,
                state: LeaseState::Irrevocable,
                retry: Some("queued".to_owned()),
            }),
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
    let body = api::Revoked {
        id: id.to_owned(),
        state: current,
        retry: None,
    };
    (status, Json(body)).into_response()
}

//! Explicit revocation and the admin view of leases: `DELETE /v1/active/{id}` (an agent, its
//! own leases only), `GET /v1/admin/tokens`, `GET`/`DELETE /v1/admin/tokens/{id}`.
//!
//! A revoke moves the lease to `revoking` and tries once at once: 200 `revoked` when the
//! upstream confirmed, else 202 `revoking` (the reaper keeps trying). Repeating it on an
//! ended or `revoking` lease changes nothing and answers its state. Another agent's lease
//! answers 404, like an unknown one.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use creddy_store::{LeaseFilter, LeaseRecord};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorCode};
use crate::http::RequestContext;
use crate::state::AppState;

async fn find(state: &AppState, id: &str) -> Result<Option<LeaseRecord>, ApiError> {
    let filter = LeaseFilter {
        id: Some(id.to_owned()),
        states: [
            "pending",
            "active",
            "revoking",
            "revoked",
            "failed",
            "irrevocable",
            "lapsed",
            "forgotten",
        ]
        .map(str::to_owned)
        .to_vec(),
        ..LeaseFilter::default()
    };
    Ok(state.store().find_leases(&filter).await?.into_iter().next())
}

fn no_such_lease(id: &str) -> ApiError {
    ApiError::not_found(format!("no credential with id '{id}'"))
        .with_remedy("list credentials with: creddy ls")
}

/// Queues the lease and tries once; answers its resulting state.
async fn revoke(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    lease: LeaseRecord,
) -> Result<Response, ApiError> {
    let mut current = lease.state.clone();
    if matches!(current.as_str(), "pending" | "active") {
        current = state
            .store()
            .queue_revocation(&lease.id)
            .await?
            .unwrap_or(current);
        let revocable = state
            .store()
            .revocable_lease(&lease.id)
            .await?
            .ok_or_else(|| no_such_lease(&lease.id))?;
        if crate::revocation::revoke(
            state,
            &revocable,
            principal.actor(),
            "explicit",
            Some(context),
        )
        .await?
        {
            current = "revoked".to_owned();
        }
    }
    let status = if current == "revoking" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"id": lease.id, "state": current}))).into_response())
}

/// `DELETE /v1/active/{id}`.
pub(crate) async fn revoke_own(
    State(state): State<AppState>,
    principal: Principal,
    context: RequestContext,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let agent = principal.clone().into_agent()?;
    let lease = find(&state, &id)
        .await?
        .filter(|l| l.agent_id == agent.id.as_str())
        .ok_or_else(|| no_such_lease(&id))?;
    revoke(&state, &principal, &context, lease).await
}

/// `GET /v1/admin/tokens` filters.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    agent: Option<String>,
    backend: Option<String>,
    state: Option<String>,
}

/// `GET /v1/admin/tokens`.
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<LeaseRecord>>, ApiError> {
    principal.require_admin("admin:tokens:read")?;
    let filter = LeaseFilter {
        id: None,
        agent_name: query.agent,
        backend: query.backend,
        states: query
            .state
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
    };
    Ok(Json(state.store().find_leases(&filter).await?))
}

/// `GET /v1/admin/tokens/{id}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<LeaseRecord>, ApiError> {
    principal.require_admin("admin:tokens:read")?;
    find(&state, &id)
        .await?
        .map(Json)
        .ok_or_else(|| no_such_lease(&id))
}

/// `DELETE /v1/admin/tokens/{id}`.
pub(crate) async fn revoke_any(
    State(state): State<AppState>,
    principal: Principal,
    context: RequestContext,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require_admin("admin:tokens:write")?;
    let lease = find(&state, &id).await?.ok_or_else(|| no_such_lease(&id))?;
    if lease.state == "irrevocable" {
        return Err(ApiError::new(ErrorCode::Conflict, format!("credential {id} is irrevocable"))
            .with_remedy("its revocation is retried daily; forgetting it (--force) comes with the revocation engine"));
    }
    revoke(&state, &principal, &context, lease).await
}

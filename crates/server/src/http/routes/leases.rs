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
use creddy_core::audit::{Action, AuditEvent, Outcome};
use creddy_store::{LeaseFilter, LeaseRecord, Queued};
use serde::Deserialize;
use serde_json::json;

use creddy_core::lease::LeaseState;

use crate::auth::Principal;
use crate::error::EngineError;
use crate::http::RequestOrigin;
use crate::state::AppState;

async fn find(state: &AppState, id: &str) -> Result<Option<LeaseRecord>, EngineError> {
    let filter = LeaseFilter {
        id: Some(id.to_owned()),
        states: LeaseState::ALL.to_vec(),
        ..LeaseFilter::default()
    };
    Ok(state.store().find_leases(&filter).await?.into_iter().next())
}

fn no_such_lease(id: &str) -> EngineError {
    EngineError::not_found(format!("no credential with id '{id}'"))
        .with_remedy("list credentials with: creddy ls")
}

/// How long an explicit revoke holds its lease while it tries once (longer than the plugin's
/// revoke timeout, so the reaper does not start a second attempt meanwhile).
const EXPLICIT_CLAIM_MILLIS: i64 = 60_000;

/// Queues the lease and tries once; answers its resulting state.
async fn revoke(
    state: &AppState,
    principal: &Principal,
    context: &creddy_core::origin::Origin,
    lease: LeaseRecord,
) -> Result<Response, EngineError> {
    let now = state.clock().now();
    let current = match state
        .store()
        .queue_revocation(&lease.id, now, EXPLICIT_CLAIM_MILLIS)
        .await?
    {
        Queued::Missing => return Err(no_such_lease(&lease.id)),
        Queued::State(current) => current,
        Queued::Claimed(claimed) => {
            let revoked = crate::revocation::revoke(
                state,
                &claimed,
                principal.actor(),
                "explicit",
                Some(context),
            )
            .await?;
            if revoked {
                LeaseState::Revoked
            } else {
                state.tasks().kick();
                LeaseState::Revoking
            }
        }
    };
    if current == LeaseState::Revoking {
        state.tasks().kick();
    }
    let status = if current == LeaseState::Revoking {
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
    RequestOrigin(context): RequestOrigin,
    Path(id): Path<String>,
) -> Result<Response, EngineError> {
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

/// The longest reason recorded for forgetting a lease.
const MAX_REASON_CHARS: usize = 500;

/// `DELETE /v1/admin/tokens/{id}`.
pub(crate) async fn revoke_any(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
    Path(id): Path<String>,
    Query(query): Query<RevokeQuery>,
) -> Result<Response, EngineError> {
    principal.require_admin("admin:tokens:write")?;
    let lease = find(&state, &id).await?.ok_or_else(|| no_such_lease(&id))?;
    if lease.state == LeaseState::Irrevocable {
        if query.force {
            return forget(&state, &principal, context, lease, query.reason).await;
        }
        // Without force: one more attempt now rather than at the daily retry.
        if state
            .store()
            .retry_irrevocable_now(&id, state.clock().now())
            .await?
        {
            tracing::info!(lease = %id, "an admin asked for a new revocation attempt of an irrevocable credential");
            state.tasks().kick();
        }
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "state": "irrevocable", "retry": "queued"})),
        )
            .into_response());
    }
    revoke(&state, &principal, &context, lease).await
}

/// Stops the retries of an irrevocable lease: it becomes `forgotten`, audited with the
/// admin's reason.
async fn forget(
    state: &AppState,
    principal: &Principal,
    context: creddy_core::origin::Origin,
    lease: LeaseRecord,
    reason: Option<String>,
) -> Result<Response, EngineError> {
    let reason = reason.unwrap_or_default();
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(EngineError::invalid_request(format!(
            "the reason is longer than {MAX_REASON_CHARS} characters"
        ))
        .with_remedy("shorten --reason"));
    }
    let event = AuditEvent::new(
        Action::CredentialForgotten,
        principal.actor(),
        state.clock().now(),
    )
    .about_agent(&lease.agent_id, &lease.agent_name)
    .about_lease(&lease.backend, Some(&lease.id))
    .from_request(context.ip, context.request_id)
    .with_outcome(Outcome::Success)
    .with_details(json!({"reason": reason, "attempts": lease.attempts}));
    let forgotten = state
        .store()
        .forget_lease(&lease.id, &format!("forgotten: {reason}"), &event)
        .await?;
    let current = if forgotten {
        tracing::warn!(lease = %lease.id, backend = %lease.backend, "an admin stopped the revocation retries of an irrevocable credential");
        LeaseState::Forgotten
    } else {
        state
            .store()
            .lease_state(&lease.id)
            .await?
            .unwrap_or(lease.state)
    };
    Ok((
        StatusCode::OK,
        Json(json!({"id": lease.id, "state": current})),
    )
        .into_response())
}

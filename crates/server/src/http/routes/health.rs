//! `GET /health` and `GET /ready`.
//!
//! Unauthenticated callers learn only whether the server is up: the original exposed the
//! version, counts and plugin names to anyone. An admin bearer gets the details.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use creddy_api::health as api;

use crate::engine::auth::Principal;
use crate::engine::error::EngineError;
use crate::engine::state::Engine;

/// Liveness: `{"status":"ok"}`, or 503 when storage is unreachable; details for admins.
#[utoipa::path(get, path = "/health", tag = "health", security((), ("bearer" = [])),
    responses((status = 200, description = "Up; with counts for a caller holding `admin:metrics:read`", body = api::Health),
        (status = 503, description = "Storage unreachable", body = api::Unavailable)))]
pub(crate) async fn health(
    State(state): State<Engine>,
    caller: Result<Principal, EngineError>,
) -> Response {
    if let Err(e) = state.store().ping().await {
        tracing::error!(error = %e, "health check: storage unreachable");
        return unavailable();
    }
    let is_admin = caller.is_ok_and(|p| p.require_admin("admin:metrics:read").is_ok());
    if !is_admin {
        return Json(api::Health {
            status: "ok".to_owned(),
            ..api::Health::default()
        })
        .into_response();
    }
    let (agents, leases, by_backend, pending) = match (
        state.store().count_agents().await,
        state.store().count_open_leases().await,
        state.store().count_open_leases_by_backend().await,
        state.store().pending_enrollments().await,
    ) {
        (Ok(a), Ok(l), Ok(b), Ok(p)) => (a, l, b, p),
        _ => return unavailable(),
    };
    let irrevocable: i64 = by_backend
        .iter()
        .filter(|(_, lease_state, _)| *lease_state == creddy_core::lease::LeaseState::Irrevocable)
        .map(|(_, _, n)| n)
        .sum();
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Json(api::Health {
        status: "ok".to_owned(),
        version: Some(crate::VERSION.to_owned()),
        uptime_seconds: Some(state.uptime_seconds()),
        agents: Some(agents),
        backends: Some(count(state.backends().all().len())),
        pending: Some(count(pending.len())),
        leases: Some(leases),
        irrevocable: Some(irrevocable),
    })
    .into_response()
}

/// Readiness: 200 when the store answers.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, description = "Ready: storage reachable and the audit head intact", body = api::Ready),
        (status = 503, description = "Storage unreachable or damaged", body = api::Unavailable)))]
pub(crate) async fn ready(State(state): State<Engine>) -> Response {
    match state.store().check_audit_head().await {
        Ok(()) => Json(api::Ready {
            status: "ready".to_owned(),
        })
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "readiness check: storage unreachable or damaged");
            unavailable()
        }
    }
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(api::Unavailable {
            status: "unavailable".to_owned(),
            error: "storage is unreachable or damaged".to_owned(),
            code: "storage_unavailable".to_owned(),
        }),
    )
        .into_response()
}

/// Routes kept so that clients of the original get a clear answer: 501 `not_implemented`.
pub(crate) async fn not_offered(uri: axum::http::Uri) -> EngineError {
    EngineError::new(
        crate::engine::error::ErrorCode::NotImplemented,
        format!("{} is not offered by this creddy", uri.path()),
    )
    .with_remedy("see the API reference: credentials come from /v1/credentials/{backend}, OIDC keys from /.well-known/jwks.json")
}

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
    let counts = match crate::engine::health::check(&state, caller.ok().as_ref()).await {
        Ok(counts) => counts,
        Err(()) => return unavailable(),
    };
    let body = match counts {
        None => api::Health {
            status: "ok".to_owned(),
            ..api::Health::default()
        },
        Some(c) => api::Health {
            status: "ok".to_owned(),
            version: Some(crate::VERSION.to_owned()),
            uptime_seconds: Some(c.uptime_seconds),
            agents: Some(c.agents),
            backends: Some(c.backends),
            pending: Some(c.pending),
            leases: Some(c.leases),
            irrevocable: Some(c.irrevocable),
        },
    };
    Json(body).into_response()
}

#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, description = "Ready: storage reachable and the audit head intact", body = api::Ready),
        (status = 503, description = "Storage unreachable or damaged", body = api::Unavailable)))]
pub(crate) async fn ready(State(state): State<Engine>) -> Response {
    if crate::engine::health::ready(&state).await {
        Json(api::Ready {
            status: "ready".to_owned(),
        })
        .into_response()
    } else {
        unavailable()
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

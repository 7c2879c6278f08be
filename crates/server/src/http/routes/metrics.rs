//! `GET /metrics`: Prometheus text for admins (`admin:metrics:read`).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::engine::auth::Principal;
use crate::engine::error::EngineError;
use crate::engine::state::Engine;

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "health", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text exposition (version 0.0.4)", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Response, EngineError> {
    let text = crate::engine::metrics::exposition(&state, &principal).await?;
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

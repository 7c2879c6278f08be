//! `GET /metrics`: Prometheus text for admins (`admin:metrics:read`).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::engine::auth::Principal;
use crate::engine::error::EngineError;
use crate::engine::metrics::Sample;
use crate::engine::state::Engine;

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "health", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text exposition (version 0.0.4)", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Response, EngineError> {
    principal.require_admin("admin:metrics:read")?;
    let mut samples = Vec::new();
    let mut irrevocable = 0;
    for (backend, lease_state, count) in state.store().count_open_leases_by_backend().await? {
        if lease_state == creddy_core::lease::LeaseState::Irrevocable {
            irrevocable += count;
        }
        samples.push(Sample {
            name: "creddy_leases",
            labels: vec![
                ("backend", backend),
                ("state", lease_state.as_str().to_owned()),
            ],
            value: count,
        });
    }
    samples.push(Sample {
        name: "creddy_leases_irrevocable",
        labels: vec![],
        value: irrevocable,
    });
    for live in state.backends().all() {
        if let Ok(process) = &live.process {
            samples.push(Sample {
                name: "creddy_plugin_restarts_total",
                labels: vec![("backend", live.name.clone())],
                value: i64::try_from(*process.restarts().borrow()).unwrap_or(i64::MAX),
            });
        }
    }
    let text = state.metrics().render(&samples);
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

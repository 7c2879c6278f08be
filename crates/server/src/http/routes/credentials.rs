//! `/v1/credentials/{backend}` (vend) and `/v1/active` (the agent's live credentials).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use creddy_store::LeaseSummary;
use serde::Deserialize;

use crate::auth::Principal;
use crate::error::EngineError;
use crate::http::RequestOrigin;
use crate::http::error::no_store;
use crate::metrics;
use crate::state::AppState;
use crate::vend::{VendRequest, vend};

/// The JSON body form of a vend request.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct VendBody {
    ttl: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

/// `ttl` and repeated `scope` from a query string.
fn from_query(query: Option<&str>) -> Result<VendRequest, EngineError> {
    let mut request = VendRequest::default();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = crate::http::form_decode(value).ok_or_else(|| {
            EngineError::invalid_request(format!(
                "query parameter '{key}' is not valid percent-encoded UTF-8"
            ))
        })?;
        match key {
            "ttl" => request.ttl = Some(value),
            "scope" => request.scopes.push(value),
            _ => {}
        }
    }
    Ok(request)
}

async fn respond(
    state: AppState,
    principal: Principal,
    context: creddy_core::origin::Origin,
    backend: String,
    request: VendRequest,
) -> Result<Response, EngineError> {
    let agent = principal.into_agent()?;
    let started = std::time::Instant::now();
    let asked = request.clone();
    let issued = vend(&state, &agent, &backend, request, context.clone()).await;
    if let Err(refusal) = &issued {
        crate::vend::record_denial(&state, &agent, &backend, &asked, refusal, &context).await;
    }
    let outcome = match &issued {
        Ok(_) => "success",
        Err(e) if crate::http::error::status(e.code).is_client_error() => "denied",
        Err(_) => "failure",
    };
    if state.backends().get(&backend).is_some() {
        let labels = [("backend", backend.as_str())];
        state
            .metrics()
            .observe(metrics::ISSUE_DURATION, &labels, started.elapsed());
        state.metrics().count(
            metrics::CREDENTIALS_ISSUED,
            &[("backend", backend.as_str()), ("outcome", outcome)],
        );
    }
    Ok((no_store(), Json(issued?)).into_response())
}

/// `GET /v1/credentials/{backend}?ttl=…&scope=…`.
pub(crate) async fn vend_get(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
    Path(backend): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, EngineError> {
    let request = from_query(query.as_deref())?;
    respond(state, principal, context, backend, request).await
}

/// `POST /v1/credentials/{backend}` with a query or a JSON body (not both).
pub(crate) async fn vend_post(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
    Path(backend): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, EngineError> {
    let from_url = from_query(query.as_deref())?;
    let has_query = from_url.ttl.is_some() || !from_url.scopes.is_empty();
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        from_url
    } else if has_query {
        return Err(EngineError::invalid_request(
            "give ttl and scopes either in the query or in the JSON body, not both",
        ));
    } else {
        let body: VendBody = serde_json::from_slice(&body)
            .map_err(|e| EngineError::invalid_request(format!("invalid JSON body: {e}")))?;
        VendRequest {
            ttl: body.ttl,
            scopes: body.scopes,
        }
    };
    respond(state, principal, context, backend, request).await
}

/// `GET /v1/active`: the caller's leases in `pending`, `active` or `revoking`.
pub(crate) async fn active(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<LeaseSummary>>, EngineError> {
    let agent = principal.into_agent()?;
    Ok(Json(state.store().live_leases_of(&agent.id).await?))
}

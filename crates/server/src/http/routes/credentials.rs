//! `/v1/credentials/{backend}` (vend) and `/v1/active` (the agent's live credentials).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use creddy_api::ErrorBody;
use creddy_api::credentials as api;
use creddy_api::leases::LeaseSummary;

use crate::engine::auth::Principal;
use crate::engine::error::EngineError;
use crate::engine::state::Engine;
use crate::engine::vend::{VendRequest, vend_recorded};
use crate::http::RequestOrigin;
use crate::http::error::no_store;

/// `ttl` and repeated `scope` from a query string (other parameters are ignored).
fn from_query(query: Option<&str>) -> VendRequest {
    let mut request = VendRequest::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "ttl" => request.ttl = Some(value.into_owned()),
            "scope" => request.scopes.push(value.into_owned()),
            _ => {}
        }
    }
    request
}

async fn respond(
    state: Engine,
    principal: Principal,
    origin: creddy_core::origin::Origin,
    backend: String,
    request: VendRequest,
) -> Result<Response, EngineError> {
    let agent = principal.into_agent()?;
    let issued = vend_recorded(&state, &agent, &backend, request, &origin).await?;
    Ok((no_store(), Json(credential_view(issued))).into_response())
}

/// The credential as the agent receives it.
fn credential_view(issued: crate::engine::vend::Issued) -> api::Credential {
    api::Credential {
        id: issued.id,
        backend: issued.backend,
        token: issued.token,
        expires_at: issued.expires_at,
        ttl: issued.ttl,
        ttl_seconds: issued.ttl_seconds,
        scopes: issued.scopes,
        metadata: issued.metadata,
        env: issued.env,
    }
}

/// `GET /v1/credentials/{backend}?ttl=…&scope=…`.
#[utoipa::path(get, path = "/v1/credentials/{backend}", tag = "credentials",
    security(("bearer" = [])),
    params(("backend" = String, Path, description = "The backend's name"), api::VendQuery),
    responses((status = 200, description = "The credential with its lease, shown once", body = api::Credential),
        (status = 422, description = "An organisation the backend is not configured for", body = ErrorBody),
        (status = 502, description = "The upstream refused (`upstream_*`)", body = ErrorBody)))]
pub(crate) async fn vend_get(
    State(state): State<Engine>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
    Path(backend): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, EngineError> {
    let request = from_query(query.as_deref());
    respond(state, principal, context, backend, request).await
}

/// `POST /v1/credentials/{backend}` with a query or a JSON body (not both).
#[utoipa::path(post, path = "/v1/credentials/{backend}", tag = "credentials",
    security(("bearer" = [])),
    params(("backend" = String, Path, description = "The backend's name"), api::VendQuery),
    request_body(content = Option<api::VendRequest>, description = "The request, unless the query gives it"),
    responses((status = 200, description = "The credential with its lease, shown once", body = api::Credential),
        (status = 422, description = "An organisation the backend is not configured for", body = ErrorBody),
        (status = 502, description = "The upstream refused (`upstream_*`)", body = ErrorBody)))]
pub(crate) async fn vend_post(
    State(state): State<Engine>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
    Path(backend): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, EngineError> {
    let from_url = from_query(query.as_deref());
    let has_query = from_url.ttl.is_some() || !from_url.scopes.is_empty();
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        from_url
    } else if has_query {
        return Err(EngineError::invalid_request(
            "give ttl and scopes either in the query or in the JSON body, not both",
        ));
    } else {
        crate::http::optional_json(&body)?
    };
    respond(state, principal, context, backend, request).await
}

/// `GET /v1/active`: the caller's leases in `pending`, `active` or `revoking`.
#[utoipa::path(get, path = "/v1/active", tag = "credentials", security(("bearer" = [])),
    responses((status = 200, description = "The caller's live leases", body = Vec<LeaseSummary>)))]
pub(crate) async fn active(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Json<Vec<LeaseSummary>>, EngineError> {
    let agent = principal.into_agent()?;
    let leases = crate::engine::leases::live_of(&state, &agent).await?;
    Ok(Json(
        leases
            .into_iter()
            .map(super::leases::summary_view)
            .collect(),
    ))
}

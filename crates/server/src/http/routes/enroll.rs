//! Enrollment and amendments: `POST /v1/enroll`, `GET /v1/enroll/status` (public; the poll
//! secret authenticates), `GET /v1/admin/pending`, `POST /v1/admin/pending/{id}/approve|reject`
//! (admins), `POST /v1/request` and `DELETE /v1/self` (agents).
//!
//! The vend token and client secret of an enrolled agent are generated when it first polls
//! after approval, returned once, and only their hashes are stored.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use creddy_api::ErrorBody;
use creddy_api::agents::OidcClient;
use creddy_api::enroll as api;
use creddy_store::Enrollment;

use crate::engine::auth::Principal;
use crate::engine::enrollment::{Amended, EnrollRequest, Pickup, Polled, Requested};
use crate::engine::error::EngineError;
use crate::engine::state::Engine;
use crate::http::error::no_store;
use crate::http::{ApiJson, RequestOrigin};

/// The header that carries the poll secret.
const SECRET_HEADER: &str = "x-creddy-enrollment-secret";

/// `POST /v1/enroll`: an agent asks to be let in.
#[utoipa::path(post, path = "/v1/enroll", tag = "enrollment", request_body = api::EnrollRequest,
    responses((status = 200, description = "Pending (with the poll secret), approved at once by a policy or an admin token (with the credentials), or rejected by a policy", body = api::EnrollAnswer),
        (status = 401, description = "The admin token is not valid", body = ErrorBody),
        (status = 403, description = "The admin token may not approve enrollments", body = ErrorBody),
        (status = 409, description = "The name is taken, or a policy's `max_agents` is reached", body = ErrorBody),
        (status = 429, description = "Too many enrollment requests from this address", body = ErrorBody)))]
pub(crate) async fn enroll(
    State(state): State<Engine>,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<api::EnrollRequest>,
) -> Result<Response, EngineError> {
    let request = EnrollRequest {
        name: body.name,
        scopes: body.scopes,
        admin_token: body.admin_token.map(|t| t.expose().clone()),
    };
    let answer = match crate::engine::enrollment::request(&state, &origin, request).await? {
        Requested::Rejected { id, reason } => {
            return Ok(Json(api::EnrollAnswer::Rejected(api::Refusal {
                id,
                reason: Some(reason),
            }))
            .into_response());
        }
        Requested::Pending {
            id,
            name,
            secret,
            expires_at,
        } => api::EnrollAnswer::Pending(api::PendingEnrollment {
            id,
            name,
            secret: Some(secret.to_secret()),
            expires_at,
        }),
        Requested::Admitted(pickup) => {
            let policy = pickup.policy.clone();
            let mut body = pickup_body(&state, *pickup);
            body.policy = policy;
            api::EnrollAnswer::Approved(body)
        }
    };
    Ok((no_store(), Json(answer)).into_response())
}

/// The body that hands an enrolled agent its credentials, once.
fn pickup_body(state: &Engine, pickup: Pickup) -> api::Pickup {
    api::Pickup {
        id: pickup.request,
        name: pickup.name,
        agent_id: pickup.agent_id,
        token: pickup.secrets.token.to_secret(),
        scopes: pickup.scopes,
        oidc: OidcClient {
            client_id: pickup.client_id,
            client_secret: pickup.secrets.client_secret.to_secret(),
        },
        server_url: state.issuer().to_owned(),
        expires_at: pickup.expires_at,
        policy: None,
    }
}

/// `GET /v1/enroll/status`: the fate of an enrollment, asked with its poll secret; once
/// approved, the first call hands out the agent's credentials.
#[utoipa::path(get, path = "/v1/enroll/status", tag = "enrollment",
    params(api::StatusQuery,
        ("X-Creddy-Enrollment-Secret" = Option<String>, Header, description = "The poll secret (preferred to the query)")),
    responses((status = 200, description = "Pending, approved (with the credentials, once), rejected or expired", body = api::EnrollAnswer),
        (status = 404, description = "No enrollment with that secret", body = ErrorBody),
        (status = 410, description = "The credentials were already picked up", body = ErrorBody)))]
pub(crate) async fn status(
    State(state): State<Engine>,
    headers: HeaderMap,
    Query(query): Query<api::StatusQuery>,
) -> Result<Response, EngineError> {
    let given = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.secret);
    let answer = match crate::engine::enrollment::poll(&state, given.as_deref()).await? {
        Polled::Pending {
            id,
            name,
            expires_at,
        } => api::EnrollAnswer::Pending(api::PendingEnrollment {
            id,
            name,
            secret: None,
            expires_at,
        }),
        Polled::PickedUp(pickup) => {
            let body = api::EnrollAnswer::Approved(pickup_body(&state, *pickup));
            return Ok((no_store(), Json(body)).into_response());
        }
        Polled::Rejected { id, reason } => api::EnrollAnswer::Rejected(api::Refusal { id, reason }),
        Polled::Expired { id } => api::EnrollAnswer::Expired(api::RequestRef { id }),
    };
    Ok(Json(answer).into_response())
}

/// A waiting request as admins see it.
fn request_view(request: Enrollment) -> api::PendingRequest {
    api::PendingRequest {
        id: request.id.to_string(),
        kind: request.kind,
        name: request.name,
        agent_id: request.agent_id,
        scopes: request.scopes,
        status: request.status,
        policy: request.policy,
        reason: request.reason,
        ip: request.ip,
        created_at: request.created_at,
        expires_at: request.expires_at,
    }
}

/// `GET /v1/admin/pending`: enrollments and scope requests waiting for a decision.
#[utoipa::path(get, path = "/v1/admin/pending", tag = "enrollment", security(("bearer" = [])),
    responses((status = 200, description = "The waiting requests, oldest first", body = Vec<api::PendingRequest>)))]
pub(crate) async fn pending(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Json<Vec<api::PendingRequest>>, EngineError> {
    let waiting = crate::engine::enrollment::pending(&state, &principal).await?;
    Ok(Json(waiting.into_iter().map(request_view).collect()))
}

/// `POST /v1/admin/pending/{id}/approve`.
#[utoipa::path(post, path = "/v1/admin/pending/{id}/approve", tag = "enrollment",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The request, `enr_<ULID>`")),
    request_body(content = Option<api::ApproveRequest>, description = "Other scopes to grant (optional)"),
    responses((status = 200, description = "Approved", body = api::Approval),
        (status = 409, description = "Already decided, or the name was taken meanwhile", body = ErrorBody)))]
pub(crate) async fn approve(
    State(state): State<Engine>,
    principal: Principal,
    RequestOrigin(origin): RequestOrigin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<api::Approval>, EngineError> {
    let body: api::ApproveRequest = crate::http::optional_json(&body)?;
    let approved =
        crate::engine::enrollment::approve(&state, &principal, &origin, &id, body.scopes).await?;
    Ok(Json(api::Approval {
        id,
        kind: approved.kind,
        agent_id: approved.agent_id,
        name: approved.name,
        scopes: approved.scopes,
        approved: true,
    }))
}

/// `POST /v1/admin/pending/{id}/reject`.
#[utoipa::path(post, path = "/v1/admin/pending/{id}/reject", tag = "enrollment",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The request, `enr_<ULID>`")),
    request_body(content = Option<api::RejectRequest>, description = "Why (optional)"),
    responses((status = 204, description = "Rejected"),
        (status = 409, description = "Already decided", body = ErrorBody)))]
pub(crate) async fn reject(
    State(state): State<Engine>,
    principal: Principal,
    RequestOrigin(origin): RequestOrigin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, EngineError> {
    let body: api::RejectRequest = crate::http::optional_json(&body)?;
    crate::engine::enrollment::reject(&state, &principal, &origin, &id, body.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/request`: an agent asks for more scopes.
#[utoipa::path(post, path = "/v1/request", tag = "enrollment", security(("bearer" = [])),
    request_body = api::AmendRequest,
    responses((status = 200, description = "Pending, approved by a policy, or rejected by one", body = api::AmendAnswer),
        (status = 409, description = "A request of this agent is already waiting", body = ErrorBody)))]
pub(crate) async fn amend(
    State(state): State<Engine>,
    principal: Principal,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<api::AmendRequest>,
) -> Result<Json<api::AmendAnswer>, EngineError> {
    let agent = principal.into_agent()?;
    Ok(Json(
        match crate::engine::enrollment::amend(&state, &agent, &origin, &body.scopes).await? {
            Amended::Rejected { id, reason } => api::AmendAnswer::Rejected(api::Refusal {
                id,
                reason: Some(reason),
            }),
            Amended::Pending { id } => api::AmendAnswer::Pending(api::RequestRef { id }),
            Amended::Approved { id, scopes } => {
                api::AmendAnswer::Approved(api::Amended { id, scopes })
            }
        },
    ))
}

/// `GET /v1/request/{id}`: one of the caller's own scope requests, with its outcome (what
/// `creddy request --wait` polls); another agent's request answers 404.
#[utoipa::path(get, path = "/v1/request/{id}", tag = "enrollment", security(("bearer" = [])),
    params(("id" = String, Path, description = "The request, `enr_<ULID>`")),
    responses((status = 200, description = "The request and its outcome", body = api::AmendmentStatus)))]
pub(crate) async fn amendment_status(
    State(state): State<Engine>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<api::AmendmentStatus>, EngineError> {
    let agent = principal.into_agent()?;
    let request = crate::engine::enrollment::amendment_of(&state, &agent, &id).await?;
    Ok(Json(api::AmendmentStatus {
        id: request.id.to_string(),
        status: request.status,
        scopes: request.scopes,
        reason: request.reason,
    }))
}

/// `DELETE /v1/self`: the agent leaves; its leases are queued for revocation.
#[utoipa::path(delete, path = "/v1/self", tag = "enrollment", security(("bearer" = [])),
    responses((status = 204, description = "Gone; its open leases are queued for revocation")))]
pub(crate) async fn leave(
    State(state): State<Engine>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
) -> Result<StatusCode, EngineError> {
    let agent = principal.into_agent()?;
    crate::engine::agents::leave(&state, &agent, &context).await?;
    Ok(StatusCode::NO_CONTENT)
}

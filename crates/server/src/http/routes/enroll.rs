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
use creddy_core::audit::{Action, Actor, AuditEvent};
use creddy_core::enrollment::{EnrollmentKind, EnrollmentStatus};
use creddy_core::ids::EnrollmentId;
use creddy_core::secret::{SecretToken, TokenKind};
use creddy_store::Enrollment;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::enrollment::{Amended, EnrollRequest, Pickup, Requested, no_such_request};
use crate::error::{EngineError, ErrorCode};
use crate::http::error::no_store;
use crate::http::{ApiJson, RequestOrigin};
use crate::state::AppState;

/// The header that carries the poll secret.
const SECRET_HEADER: &str = "x-creddy-enrollment-secret";

/// `POST /v1/enroll` body.
#[derive(Debug, Deserialize)]
pub(crate) struct EnrollBody {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    admin_token: Option<String>,
}

/// `POST /v1/enroll`.
pub(crate) async fn enroll(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<EnrollBody>,
) -> Result<Response, EngineError> {
    let request = EnrollRequest {
        name: body.name,
        scopes: body.scopes,
        admin_token: body.admin_token,
    };
    match crate::enrollment::request(&state, &origin, request).await? {
        Requested::Rejected { id, reason } => {
            Ok(Json(json!({"id": id, "status": "rejected", "reason": reason})).into_response())
        }
        Requested::Pending {
            id,
            name,
            secret,
            expires_at,
        } => Ok((
            no_store(),
            Json(json!({"id": id, "name": name, "status": "pending",
                "secret": secret.expose(), "expires_at": expires_at})),
        )
            .into_response()),
        Requested::Admitted(pickup) => {
            let mut body = pickup_body(&state, &pickup);
            body["policy"] = json!(pickup.policy);
            Ok((no_store(), Json(body)).into_response())
        }
    }
}

/// The body that hands an enrolled agent its credentials, once.
fn pickup_body(state: &AppState, pickup: &Pickup) -> Value {
    json!({
        "id": pickup.request,
        "name": pickup.name,
        "status": "approved",
        "agent_id": pickup.agent_id,
        "token": pickup.secrets.token.expose(),
        "scopes": pickup.scopes,
        "oidc": {"client_id": pickup.client_id, "client_secret": pickup.secrets.client_secret.expose()},
        "server_url": state.issuer(),
        "expires_at": pickup.expires_at,
    })
}

/// `GET /v1/enroll/status` query (the compatibility form of the secret).
#[derive(Debug, Deserialize)]
pub(crate) struct StatusQuery {
    secret: Option<String>,
}

/// `GET /v1/enroll/status`.
pub(crate) async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<StatusQuery>,
) -> Result<Response, EngineError> {
    let given = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.secret);
    let unknown = || {
        EngineError::not_found("no enrollment with that secret")
            .with_remedy("enroll again: creddy enroll --name NAME --can SCOPE")
    };
    let secret = given
        .as_deref()
        .and_then(|s| SecretToken::parse(TokenKind::EnrollmentSecret, s))
        .ok_or_else(unknown)?;
    let request = state
        .store()
        .find_enrollment_by_secret(&secret.hash())
        .await?
        .ok_or_else(unknown)?;
    let now = state.clock().now();
    let lapsed = request.expires_at <= now;
    match request.status {
        EnrollmentStatus::Pending if !lapsed => Ok(Json(json!({"id": request.id, "name": request.name,
            "status": "pending", "expires_at": request.expires_at}))
        .into_response()),
        EnrollmentStatus::Approved if !lapsed => {
            let pickup = crate::enrollment::pick_up(&state, &request, now).await?;
            Ok((no_store(), Json(pickup_body(&state, &pickup))).into_response())
        }
        EnrollmentStatus::Claimed => Err(EngineError::new(
            ErrorCode::EnrollmentClaimed,
            "the credentials of this enrollment were already picked up",
        )
        .with_remedy("they are handed out once; if they were lost, enroll again under another name or ask an admin")),
        EnrollmentStatus::Rejected => Ok(Json(json!({"id": request.id, "status": "rejected", "reason": request.reason})).into_response()),
        _ => Ok(Json(json!({"id": request.id, "status": "expired"})).into_response()),
    }
}

/// `GET /v1/admin/pending`.
pub(crate) async fn pending(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<Enrollment>>, EngineError> {
    principal.require_admin("admin:enrollments:read")?;
    Ok(Json(state.store().pending_enrollments().await?))
}

/// `POST /v1/admin/pending/{id}/approve` body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ApproveBody {
    scopes: Option<Vec<String>>,
}

/// An optional JSON body: empty means the defaults.
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, EngineError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| EngineError::invalid_request(format!("invalid JSON body: {e}")))
}

/// `POST /v1/admin/pending/{id}/approve`.
pub(crate) async fn approve(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(origin): RequestOrigin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, EngineError> {
    let body: ApproveBody = optional_json(&body)?;
    let approved =
        crate::enrollment::approve(&state, &principal, &origin, &id, body.scopes).await?;
    Ok(Json(
        json!({"id": id, "type": approved.kind, "agent_id": approved.agent_id,
        "name": approved.name, "scopes": approved.scopes, "approved": true}),
    )
    .into_response())
}

/// `POST /v1/admin/pending/{id}/reject` body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RejectBody {
    reason: Option<String>,
}

/// `POST /v1/admin/pending/{id}/reject`.
pub(crate) async fn reject(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(origin): RequestOrigin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, EngineError> {
    let body: RejectBody = optional_json(&body)?;
    crate::enrollment::reject(&state, &principal, &origin, &id, body.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/request` body.
#[derive(Debug, Deserialize)]
pub(crate) struct AmendBody {
    #[serde(default)]
    scopes: Vec<String>,
}

/// `POST /v1/request`: an agent asks for more scopes.
pub(crate) async fn amend(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<AmendBody>,
) -> Result<Response, EngineError> {
    let agent = principal.into_agent()?;
    let body = match crate::enrollment::amend(&state, &agent, &origin, &body.scopes).await? {
        Amended::Rejected { id, reason } => {
            json!({"id": id, "status": "rejected", "reason": reason})
        }
        Amended::Pending { id } => json!({"id": id, "status": "pending"}),
        Amended::Approved { id, scopes } => {
            json!({"id": id, "status": "approved", "scopes": scopes})
        }
    };
    Ok(Json(body).into_response())
}

/// `GET /v1/request/{id}`: one of the caller's own scope requests, with its outcome (what
/// `creddy request --wait` polls); another agent's request answers 404.
pub(crate) async fn amendment_status(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, EngineError> {
    let agent = principal.into_agent()?;
    let typed = EnrollmentId::parse(&id).ok_or_else(|| no_such_request(&id))?;
    let request = state
        .store()
        .find_enrollment(&typed)
        .await?
        .filter(|r| {
            r.kind == EnrollmentKind::Amendment && r.agent_id.as_deref() == Some(agent.id.as_str())
        })
        .ok_or_else(|| no_such_request(&id))?;
    Ok(Json(json!({"id": request.id, "status": request.status,
        "scopes": request.scopes, "reason": request.reason})))
}

/// `DELETE /v1/self`: the agent leaves; its leases are queued for revocation.
pub(crate) async fn leave(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
) -> Result<StatusCode, EngineError> {
    let agent = principal.into_agent()?;
    let event = AuditEvent::new(
        Action::AgentDeleted,
        Actor::agent(agent.id.as_str(), &agent.name),
        state.clock().now(),
    )
    .about_agent(agent.id.as_str(), &agent.name)
    .from_request(context.ip, context.request_id)
    .with_details(json!({"reason": "self"}));
    if let Some(queued) = state.store().delete_agent(&agent.id, &event).await? {
        tracing::info!(agent = %agent.name, queued, "agent unenrolled");
        state.tasks().kick();
    }
    Ok(StatusCode::NO_CONTENT)
}

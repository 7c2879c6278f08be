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
use creddy_core::audit::{Action, Actor, AuditEvent, Outcome};
use creddy_core::enrollment::{EnrollmentKind, EnrollmentStatus};
use creddy_core::ids::{AgentId, EnrollmentId};
use creddy_core::names::AgentName;
use creddy_core::policy::Verdict;
use creddy_core::scope::Grants;
use creddy_core::secret::{SecretToken, TokenKind};
use creddy_store::{Enrollment, NewEnrollment, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::enrollment::{
    EnrollRequest, Pickup, Requested, admitted_agent, admitting_policy, approval_events, decide,
    name_taken, requested_scopes,
};
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

fn no_such_request(id: &str) -> EngineError {
    EngineError::not_found(format!("no request with id '{id}'"))
        .with_remedy("list waiting requests with: creddy pending")
}

async fn open_request(state: &AppState, id: &str) -> Result<Enrollment, EngineError> {
    let request = state
        .store()
        .find_enrollment(id)
        .await?
        .ok_or_else(|| no_such_request(id))?;
    if request.status != EnrollmentStatus::Pending {
        return Err(EngineError::new(
            ErrorCode::Conflict,
            format!("request {id} is already {}", request.status),
        ));
    }
    Ok(request)
}

/// An agent never decides on its own amendment, whatever admin scopes it holds.
fn refuse_own_amendment(principal: &Principal, request: &Enrollment) -> Result<(), EngineError> {
    if request.kind == EnrollmentKind::Amendment
        && principal.agent_id().is_some()
        && principal.agent_id() == request.agent_id.as_deref()
    {
        return Err(EngineError::forbidden(format!(
            "request {} is this agent's own amendment; an agent cannot decide on it",
            request.id
        ))
        .with_remedy("another admin, or the local admin, must approve or reject it"));
    }
    Ok(())
}

/// `POST /v1/admin/pending/{id}/approve`.
pub(crate) async fn approve(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, EngineError> {
    let body: ApproveBody = optional_json(&body)?;
    principal.require_admin("admin:enrollments:write")?;
    let request = open_request(&state, &id).await?;
    refuse_own_amendment(&principal, &request)?;
    let chosen = body.scopes.unwrap_or_else(|| request.scopes.clone());
    if chosen.is_empty() || chosen.len() > crate::enrollment::MAX_REQUESTED {
        return Err(EngineError::invalid_request("approve with 1 to 64 scopes"));
    }
    let grants = Grants::parse(&chosen)
        .map_err(|e| EngineError::new(ErrorCode::InvalidScope, e.to_string()))?;
    principal.require_grantable(&grants)?;
    let now = state.clock().now();
    let actor = principal.actor();
    let decided_by = principal.decider();
    let (agent_id, final_scopes) = if request.kind == EnrollmentKind::Amendment {
        let agent_id = request.agent_id.clone().unwrap_or_default();
        let added = grants.to_strings();
        let request_id = id.clone();
        let origin = context.clone();
        let merged =
            state
                .store()
                .approve_amendment(
                    &id,
                    &AgentId::from_stored(agent_id.clone()),
                    &added,
                    &decided_by,
                    now,
                    |merged| {
                        vec![AuditEvent::new(Action::AmendmentApproved, actor, now)
                    .about_agent(&agent_id, &request.name)
                    .from_request(origin.ip, origin.request_id)
                    .with_details(json!({"request": request_id, "added": added, "scopes": merged}))]
                    },
                )
                .await?;
        (agent_id, merged)
    } else {
        let name = AgentName::parse(&request.name)
            .map_err(|e| EngineError::new(ErrorCode::Internal, e.to_string()))?;
        let policy = admitting_policy(&state, name.as_str()).await?;
        let (agent, _unused_until_pickup) =
            admitted_agent(name, grants, None, policy.as_ref(), now);
        let mut events = approval_events(&agent, &id, actor, now);
        if let Some(first) = events.first_mut() {
            *first = first
                .clone()
                .from_request(context.ip.clone(), context.request_id.clone());
        }
        let pickup_by = now.plus_seconds(state.settings().enrollment.pickup_ttl);
        state
            .store()
            .approve_enrollment(&id, &agent, &decided_by, pickup_by, &events)
            .await
            .map_err(|e| match e {
                StoreError::NameTaken => name_taken(agent.name.as_str()),
                other => other.into(),
            })?;
        (agent.id.to_string(), agent.scopes.to_strings())
    };
    tracing::info!(request = %id, agent = %request.name, "request approved");
    Ok(
        Json(json!({"id": id, "type": request.kind, "agent_id": agent_id,
        "name": request.name, "scopes": final_scopes, "approved": true}))
        .into_response(),
    )
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
    RequestOrigin(context): RequestOrigin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, EngineError> {
    let body: RejectBody = optional_json(&body)?;
    principal.require_admin("admin:enrollments:write")?;
    let request = open_request(&state, &id).await?;
    refuse_own_amendment(&principal, &request)?;
    let reason = body
        .reason
        .unwrap_or_else(|| "rejected by an admin".to_owned());
    if reason.chars().count() > 500 {
        return Err(EngineError::invalid_request(
            "the reason is longer than 500 characters",
        ));
    }
    let now = state.clock().now();
    let action = if request.kind == EnrollmentKind::Amendment {
        Action::AmendmentRejected
    } else {
        Action::EnrollmentRejected
    };
    let event = AuditEvent::new(action, principal.actor(), now)
        .from_request(context.ip, context.request_id)
        .with_outcome(Outcome::Denied)
        .with_details(json!({"request": id, "name": request.name, "reason": reason}));
    if !state
        .store()
        .close_enrollment(
            &id,
            EnrollmentStatus::Rejected,
            Some(&reason),
            &principal.decider(),
            now,
            &[event],
        )
        .await?
    {
        return Err(EngineError::new(
            ErrorCode::Conflict,
            format!("request {id} was already decided"),
        ));
    }
    tracing::info!(request = %id, "request rejected");
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
    RequestOrigin(context): RequestOrigin,
    ApiJson(body): ApiJson<AmendBody>,
) -> Result<Response, EngineError> {
    let agent = principal.into_agent()?;
    state.request_limiter().admit(
        agent.id.as_str(),
        state.clock().now(),
        "scope requests from this agent",
    )?;
    let scopes = requested_scopes(&state, &body.scopes).await?;
    let texts: Vec<String> = scopes.iter().map(ToString::to_string).collect();
    let now = state.clock().now();
    let id = EnrollmentId::generate(now).to_string();
    let decided = decide(&state, &agent.name, &scopes, agent.policy.as_deref(), now).await?;
    let actor = Actor::agent(agent.id.as_str(), &agent.name);
    let mut events = vec![
        AuditEvent::new(Action::AmendmentRequested, actor, now)
            .about_agent(agent.id.as_str(), &agent.name)
            .from_request(context.ip.clone(), context.request_id.clone())
            .with_details(json!({"request": id, "scopes": texts})),
        decided.event(now, &agent.name, &id),
    ];
    let (status, reason) = match &decided.verdict {
        Verdict::Rejected(r) => (EnrollmentStatus::Rejected, Some(r.clone())),
        Verdict::Pending(r) => (EnrollmentStatus::Pending, Some(r.clone())),
        Verdict::Approve => (EnrollmentStatus::Pending, None),
    };
    if let Verdict::Rejected(r) = &decided.verdict {
        events.push(
            AuditEvent::new(Action::AmendmentRejected, Actor::system(), now)
                .about_agent(agent.id.as_str(), &agent.name)
                .with_outcome(Outcome::Denied)
                .with_details(json!({"request": id, "reason": r})),
        );
    }
    let new = NewEnrollment {
        id: id.clone(),
        kind: EnrollmentKind::Amendment,
        name: agent.name.clone(),
        agent_id: Some(agent.id.to_string()),
        scopes: texts.clone(),
        status,
        policy: decided
            .policy
            .as_ref()
            .map(|p| p.name.clone())
            .or(agent.policy.clone()),
        reason: reason.clone(),
        ip: context.ip.clone(),
        secret_hash: None,
        created_at: now,
        expires_at: now.plus_seconds(state.settings().enrollment.pending_ttl),
        decided_by: (status == EnrollmentStatus::Rejected).then_some("policy"),
    };
    state
        .store()
        .request_enrollment(
            &new,
            None,
            state.settings().enrollment.max_open_amendments,
            &events,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => EngineError::rate_limited(m, 60).with_remedy(
                "wait until an admin has decided on this agent's waiting requests (creddy status lists them)",
            ),
            other => other.into(),
        })?;
    match decided.verdict {
        Verdict::Rejected(reason) => {
            Ok(Json(json!({"id": id, "status": "rejected", "reason": reason})).into_response())
        }
        Verdict::Pending(_) => Ok(Json(json!({"id": id, "status": "pending"})).into_response()),
        Verdict::Approve => {
            let policy = new.policy.clone();
            let all = state
                .store()
                .approve_amendment(&id, &agent.id, &texts, "policy", now, |all| {
                    vec![
                        AuditEvent::new(Action::AmendmentApproved, Actor::system(), now)
                            .about_agent(agent.id.as_str(), &agent.name)
                            .with_details(json!({"request": id, "added": texts, "scopes": all, "policy": policy})),
                    ]
                })
                .await?;
            Ok(Json(json!({"id": id, "status": "approved", "scopes": all})).into_response())
        }
    }
}

/// `GET /v1/request/{id}`: one of the caller's own scope requests, with its outcome (what
/// `creddy request --wait` polls); another agent's request answers 404.
pub(crate) async fn amendment_status(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, EngineError> {
    let agent = principal.into_agent()?;
    let request = state
        .store()
        .find_enrollment(&id)
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

//! `/v1/admin/agents`: create, list, show and remove agents.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use creddy_core::agent::Agent;
use creddy_core::audit::{Action, AuditEvent};
use creddy_core::names::AgentName;
use creddy_core::scope::Grants;
use creddy_core::{Duration, Timestamp};
use creddy_store::{LeaseSummary, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::Principal;
use crate::error::{EngineError, ErrorCode};
use crate::http::error::no_store;
use crate::http::{ApiJson, RequestOrigin};
use crate::state::AppState;

/// The most scopes one agent may hold.
pub(crate) const MAX_SCOPES: usize = 64;

/// An agent as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct AgentView {
    id: String,
    name: String,
    scopes: Vec<String>,
    policy: Option<String>,
    client_id: String,
    created_at: Timestamp,
    last_used: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    active_leases: i64,
}

impl AgentView {
    pub(crate) fn new(agent: Agent, active_leases: i64) -> Self {
        Self {
            id: agent.id.as_str().to_owned(),
            scopes: agent.scopes.to_strings(),
            name: agent.name,
            policy: agent.policy,
            client_id: agent.client_id,
            created_at: agent.created_at,
            last_used: agent.last_used,
            expires_at: agent.expires_at,
            active_leases,
        }
    }
}

/// `POST /v1/admin/agents` body.
#[derive(Debug, Deserialize)]
pub(crate) struct CreateAgent {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    expires_in: Option<String>,
}

/// Validates the body: the name grammar, the scope grammar and count, the lifetime syntax.
fn validate(body: &CreateAgent) -> Result<(AgentName, Grants, Option<Duration>), EngineError> {
    let name =
        AgentName::parse(&body.name).map_err(|e| EngineError::invalid_request(e.to_string()))?;
    if body.scopes.len() > MAX_SCOPES {
        return Err(EngineError::invalid_request(format!(
            "too many scopes ({}); an agent holds at most {MAX_SCOPES}",
            body.scopes.len()
        )));
    }
    let scopes = Grants::parse(&body.scopes).map_err(|e| {
        EngineError::new(ErrorCode::InvalidScope, e.to_string()).with_remedy(
            "scopes look like 'daytona', 'daytona:workspaces:read' or 'admin:agents:read'",
        )
    })?;
    let lifetime = body
        .expires_in
        .as_deref()
        .map(Duration::parse)
        .transpose()
        .map_err(|e| EngineError::invalid_request(format!("expires_in: {e}")))?;
    Ok((name, scopes, lifetime))
}

/// Creates an agent and returns its secrets, once.
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
    ApiJson(body): ApiJson<CreateAgent>,
) -> Result<Response, EngineError> {
    principal.require_admin("admin:agents:write")?;
    let (name, scopes, lifetime) = validate(&body)?;
    principal.require_grantable(&scopes)?;
    let now = state.clock().now();
    let policy = crate::enrollment::admitting_policy(&state, name.as_str()).await?;
    let (mut new, secrets) =
        crate::enrollment::admitted_agent(name, scopes, lifetime, policy.as_ref(), now);
    new.client_secret_hash = state.sealer().client_secret_hash(&secrets.client_secret);
    let event = AuditEvent::new(Action::AgentCreated, principal.actor(), now)
        .about_agent(new.id.as_str(), new.name.as_str())
        .from_request(context.ip, context.request_id)
        .with_details(json!({
            "scopes": new.scopes.to_strings(),
            "expires_at": new.expires_at,
            "client_id": new.client_id,
            "policy": new.policy,
        }));
    let agent = state
        .store()
        .create_agent(&new, &event)
        .await
        .map_err(|e| match e {
            StoreError::NameTaken => EngineError::new(
                ErrorCode::NameTaken,
                format!("an agent named '{}' already exists", new.name),
            )
            .with_remedy(format!(
                "choose another name, or remove the existing agent first (creddy agent rm {})",
                new.name
            )),
            other => other.into(),
        })?;
    tracing::info!(agent = %agent.name, agent_id = %agent.id, "agent created");
    let warnings = unconfigured_backends(&state, &agent.scopes);
    let mut view = serde_json::to_value(AgentView::new(agent, 0)).unwrap_or_default();
    if let Some(map) = view.as_object_mut() {
        map.insert("token".into(), json!(secrets.token.expose()));
        map.insert(
            "oidc".into(),
            json!({"client_id": new.client_id, "client_secret": secrets.client_secret.expose()}),
        );
        map.insert("server_url".into(), json!(state.issuer()));
        map.insert("warnings".into(), json!(warnings));
    }
    Ok((no_store(), Json(view)).into_response())
}

/// Warnings for granted scopes that name no configured backend: admins may prepare agents
/// before adding backends, but should know.
fn unconfigured_backends(state: &AppState, scopes: &Grants) -> Vec<String> {
    let mut backends: Vec<&str> = scopes
        .as_slice()
        .iter()
        .filter(|s| !s.is_admin() && s.as_str() != "*")
        .map(|s| s.backend())
        .filter(|b| state.backends().get(b).is_none())
        .collect();
    backends.dedup();
    backends
        .into_iter()
        .map(|b| format!("backend '{b}' is not configured yet; add it with: creddy backend add <type> --name {b}"))
        .collect()
}

/// Lists every agent.
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<AgentView>>, EngineError> {
    principal.require_admin("admin:agents:read")?;
    let agents = state.store().list_agents().await?;
    Ok(Json(
        agents
            .into_iter()
            .map(|l| AgentView::new(l.agent, l.active_leases))
            .collect(),
    ))
}

/// An agent with its open leases.
#[derive(Debug, Serialize)]
pub(crate) struct AgentDetail {
    #[serde(flatten)]
    agent: AgentView,
    leases: Vec<LeaseSummary>,
}

/// Shows one agent.
pub(crate) async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<AgentDetail>, EngineError> {
    principal.require_admin("admin:agents:read")?;
    let agent = find(&state, &name).await?;
    let leases = state.store().open_leases_of(&agent.id).await?;
    let count = i64::try_from(leases.len()).unwrap_or(i64::MAX);
    Ok(Json(AgentDetail {
        agent: AgentView::new(agent, count),
        leases,
    }))
}

/// Removes an agent; its open leases are queued for revocation.
pub(crate) async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
    Path(name): Path<String>,
) -> Result<StatusCode, EngineError> {
    principal.require_admin("admin:agents:write")?;
    let agent = find(&state, &name).await?;
    let event = AuditEvent::new(Action::AgentDeleted, principal.actor(), state.clock().now())
        .about_agent(agent.id.as_str(), &agent.name)
        .from_request(context.ip, context.request_id)
        .with_details(json!({"reason": "admin"}));
    match state.store().delete_agent(&agent.id, &event).await? {
        Some(queued) => {
            tracing::info!(agent = %agent.name, queued, "agent removed");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(no_such_agent(&name)),
    }
}

async fn find(state: &AppState, name: &str) -> Result<Agent, EngineError> {
    AgentName::parse(name).map_err(|e| EngineError::invalid_request(e.to_string()))?;
    state
        .store()
        .find_agent_by_name(name)
        .await?
        .ok_or_else(|| no_such_agent(name))
}

fn no_such_agent(name: &str) -> EngineError {
    EngineError::not_found(format!("no agent named '{name}'"))
        .with_remedy("list agents with: creddy agent ls")
}

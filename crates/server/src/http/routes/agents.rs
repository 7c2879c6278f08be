//! `/v1/admin/agents`: create, list, show and remove agents.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use creddy_api::ErrorBody;
use creddy_api::agents as api;
use creddy_core::Duration;
use creddy_core::agent::Agent;
use creddy_core::audit::{Action, AuditEvent};
use creddy_core::names::AgentName;
use creddy_core::scope::Grants;
use creddy_store::StoreError;
use serde_json::json;

use crate::engine::auth::Principal;
use crate::engine::error::{EngineError, ErrorCode};
use crate::engine::state::Engine;
use crate::http::error::no_store;
use crate::http::{ApiJson, RequestOrigin};

/// The most scopes one agent may hold.
pub(crate) const MAX_SCOPES: usize = 64;

/// An agent as the API shows it.
pub(crate) fn agent_view(agent: Agent, active_leases: i64) -> api::Agent {
    api::Agent {
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

/// Validates the body: the name grammar, the scope grammar and count, the lifetime syntax.
fn validate(body: &api::CreateAgent) -> Result<(AgentName, Grants, Option<Duration>), EngineError> {
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
#[utoipa::path(post, path = "/v1/admin/agents", tag = "agents",
    security(("bearer" = [])), request_body = api::CreateAgent,
    responses((status = 200, description = "The agent with its vend token and OIDC client secret, shown once", body = api::CreatedAgent),
        (status = 409, description = "The name is taken (`name_taken`) or a policy's `max_agents` is reached", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<Engine>,
    principal: Principal,
    RequestOrigin(context): RequestOrigin,
    ApiJson(body): ApiJson<api::CreateAgent>,
) -> Result<Response, EngineError> {
    principal.require_admin("admin:agents:write")?;
    let (name, scopes, lifetime) = validate(&body)?;
    principal.require_grantable(&scopes)?;
    let now = state.clock().now();
    let policy = crate::engine::enrollment::admitting_policy(&state, name.as_str()).await?;
    let (mut new, secrets) =
        crate::engine::enrollment::admitted_agent(name, scopes, lifetime, policy.as_ref(), now);
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
    let created = api::CreatedAgent {
        agent: agent_view(agent, 0),
        token: secrets.token.to_secret(),
        oidc: api::OidcClient {
            client_id: new.client_id.clone(),
            client_secret: secrets.client_secret.to_secret(),
        },
        server_url: state.issuer().to_owned(),
        warnings,
    };
    Ok((no_store(), Json(created)).into_response())
}

/// Warnings for granted scopes that name no configured backend: admins may prepare agents
/// before adding backends, but should know.
fn unconfigured_backends(state: &Engine, scopes: &Grants) -> Vec<String> {
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
#[utoipa::path(get, path = "/v1/admin/agents", tag = "agents", security(("bearer" = [])),
    responses((status = 200, description = "Every agent", body = Vec<api::Agent>)))]
pub(crate) async fn list(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Json<Vec<api::Agent>>, EngineError> {
    principal.require_admin("admin:agents:read")?;
    let agents = state.store().list_agents().await?;
    Ok(Json(
        agents
            .into_iter()
            .map(|l| agent_view(l.agent, l.active_leases))
            .collect(),
    ))
}

/// Shows one agent with its open leases.
#[utoipa::path(get, path = "/v1/admin/agents/{name}", tag = "agents", security(("bearer" = [])),
    params(("name" = String, Path, description = "The agent's name")),
    responses((status = 200, description = "The agent with its open leases", body = api::AgentDetail)))]
pub(crate) async fn show(
    State(state): State<Engine>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<api::AgentDetail>, EngineError> {
    principal.require_admin("admin:agents:read")?;
    let agent = find(&state, &name).await?;
    let leases = state.store().open_leases_of(&agent.id).await?;
    let count = i64::try_from(leases.len()).unwrap_or(i64::MAX);
    Ok(Json(api::AgentDetail {
        agent: agent_view(agent, count),
        leases: leases
            .into_iter()
            .map(super::leases::summary_view)
            .collect(),
    }))
}

/// Removes an agent; its open leases are queued for revocation.
#[utoipa::path(delete, path = "/v1/admin/agents/{name}", tag = "agents", security(("bearer" = [])),
    params(("name" = String, Path, description = "The agent's name")),
    responses((status = 204, description = "Removed; its open leases are queued for revocation")))]
pub(crate) async fn remove(
    State(state): State<Engine>,
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

async fn find(state: &Engine, name: &str) -> Result<Agent, EngineError> {
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

//! `/v1/admin/agents`: create, list, show and remove agents (`engine::agents`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use creddy_api::ErrorBody;
use creddy_api::agents as api;
use creddy_core::agent::Agent;

use crate::engine::agents;
use crate::engine::auth::Principal;
use crate::engine::error::EngineError;
use crate::engine::state::Engine;
use crate::http::error::no_store;
use crate::http::{ApiJson, RequestOrigin};

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
        trust: agent.trust,
    }
}

/// Creates an agent and returns its secrets, once.
#[utoipa::path(post, path = "/v1/admin/agents", tag = "agents",
    security(("bearer" = [])), request_body = api::CreateAgent,
    responses((status = 200, description = "The agent with its vend token and OIDC client secret, shown once", body = api::CreatedAgent),
        (status = 409, description = "The name is taken (`name_taken`) or a policy's `max_agents` is reached", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<Engine>,
    principal: Principal,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<api::CreateAgent>,
) -> Result<Response, EngineError> {
    let created = agents::create(&state, &principal, &origin, body).await?;
    let oidc = api::OidcClient {
        client_id: created.agent.client_id.clone(),
        client_secret: created.secrets.client_secret.to_secret(),
    };
    let answer = api::CreatedAgent {
        token: created.secrets.token.to_secret(),
        oidc,
        agent: agent_view(created.agent, 0),
        server_url: state.issuer().to_owned(),
        warnings: created.warnings,
    };
    Ok((no_store(), Json(answer)).into_response())
}

/// Lists every agent.
#[utoipa::path(get, path = "/v1/admin/agents", tag = "agents", security(("bearer" = [])),
    responses((status = 200, description = "Every agent", body = Vec<api::Agent>)))]
pub(crate) async fn list(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Json<Vec<api::Agent>>, EngineError> {
    let agents = agents::list(&state, &principal).await?;
    Ok(Json(
        agents
            .into_iter()
            .map(|(agent, leases)| agent_view(agent, leases))
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
    let (agent, leases) = agents::show(&state, &principal, &name).await?;
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
    RequestOrigin(origin): RequestOrigin,
    Path(name): Path<String>,
) -> Result<StatusCode, EngineError> {
    agents::remove(&state, &principal, &origin, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

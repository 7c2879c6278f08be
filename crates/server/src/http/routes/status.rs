//! `GET /v1/status`: an agent looks at itself.

use axum::Json;
use axum::extract::State;
use creddy_api::agents as api;

use crate::engine::auth::Principal;
use crate::engine::error::EngineError;
use crate::engine::state::Engine;

/// The calling agent's identity, scopes, expiry and open credentials.
#[utoipa::path(get, path = "/v1/status", tag = "agents", security(("bearer" = [])),
    responses((status = 200, description = "The calling agent, its open leases and its waiting scope requests", body = api::AgentStatus)))]
pub(crate) async fn status(
    State(state): State<Engine>,
    principal: Principal,
) -> Result<Json<api::AgentStatus>, EngineError> {
    let agent = principal.into_agent()?;
    let (leases, amendments) = crate::engine::leases::status_of(&state, &agent).await?;
    Ok(Json(api::AgentStatus {
        id: agent.id.as_str().to_owned(),
        status: "enrolled".to_owned(),
        scopes: agent.scopes.to_strings(),
        policy: agent.policy,
        created_at: agent.created_at,
        last_used: agent.last_used,
        expires_at: agent.expires_at,
        name: agent.name,
        active_credentials: leases
            .into_iter()
            .map(|l| api::ActiveCredential {
                id: l.id.to_string(),
                backend: l.backend,
                expires_at: l.expires_at,
            })
            .collect(),
        pending_amendments: amendments
            .into_iter()
            .map(|a| api::PendingAmendment {
                id: a.id.to_string(),
                scopes: a.scopes,
                created_at: a.created_at,
            })
            .collect(),
    }))
}

//! `GET /v1/status`: an agent looks at itself.

use axum::Json;
use axum::extract::State;
use creddy_core::Timestamp;
use serde::Serialize;

use crate::auth::Principal;
use crate::error::EngineError;
use crate::state::AppState;

/// One open credential of the agent.
#[derive(Debug, Serialize)]
pub(crate) struct ActiveCredential {
    id: String,
    backend: String,
    expires_at: Timestamp,
}

/// The agent's own view.
#[derive(Debug, Serialize)]
pub(crate) struct AgentStatus {
    id: String,
    name: String,
    status: &'static str,
    scopes: Vec<String>,
    policy: Option<String>,
    created_at: Timestamp,
    last_used: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    active_credentials: Vec<ActiveCredential>,
    pending_amendments: Vec<serde_json::Value>,
}

/// The calling agent's identity, scopes, expiry and open credentials.
pub(crate) async fn status(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<AgentStatus>, EngineError> {
    let agent = principal.into_agent()?;
    let leases = state.store().open_leases_of(&agent.id).await?;
    let amendments = state.store().pending_amendments_of(&agent.id).await?;
    Ok(Json(AgentStatus {
        id: agent.id.as_str().to_owned(),
        status: "enrolled",
        scopes: agent.scopes.to_strings(),
        policy: agent.policy,
        created_at: agent.created_at,
        last_used: agent.last_used,
        expires_at: agent.expires_at,
        name: agent.name,
        active_credentials: leases
            .into_iter()
            .map(|l| ActiveCredential {
                id: l.id.to_string(),
                backend: l.backend,
                expires_at: l.expires_at,
            })
            .collect(),
        pending_amendments: amendments
            .into_iter()
            .map(
                |a| serde_json::json!({"id": a.id, "scopes": a.scopes, "created_at": a.created_at}),
            )
            .collect(),
    }))
}

//! Agents as admins manage them: created with their secrets (shown once), listed, shown with
//! their open leases, and removed (their open leases queued for revocation), each change
//! audited in the same transaction.

use creddy_api::agents::CreateAgent;
use creddy_core::Duration;
use creddy_core::agent::{Agent, AgentSecrets};
use creddy_core::audit::{Action, AuditEvent};
use creddy_core::names::AgentName;
use creddy_core::origin::Origin;
use creddy_core::scope::Grants;
use creddy_store::{LeaseSummary, StoreError};
use serde_json::json;

use crate::engine::auth::Principal;
use crate::engine::error::{EngineError, ErrorCode};
use crate::engine::state::Engine;

/// The most scopes one agent may hold.
pub(crate) const MAX_SCOPES: usize = 64;

/// A created agent and its secrets, to be shown once.
#[derive(Debug)]
pub(crate) struct Created {
    /// The agent.
    pub agent: Agent,
    /// Its vend token and client secret (only their hashes are stored).
    pub secrets: AgentSecrets,
    /// Granted scopes that name no configured backend yet.
    pub warnings: Vec<String>,
}

/// Checks the request: the name grammar, the scope grammar and count, the lifetime syntax.
fn validate(request: &CreateAgent) -> Result<(AgentName, Grants, Option<Duration>), EngineError> {
    let name =
        AgentName::parse(&request.name).map_err(|e| EngineError::invalid_request(e.to_string()))?;
    if request.scopes.len() > MAX_SCOPES {
        return Err(EngineError::invalid_request(format!(
            "too many scopes ({}); an agent holds at most {MAX_SCOPES}",
            request.scopes.len()
        )));
    }
    let scopes = Grants::parse(&request.scopes).map_err(|e| {
        EngineError::new(ErrorCode::InvalidScope, e.to_string()).with_remedy(
            "scopes look like 'daytona', 'daytona:workspaces:read' or 'admin:agents:read'",
        )
    })?;
    let lifetime = request
        .expires_in
        .as_deref()
        .map(Duration::parse)
        .transpose()
        .map_err(|e| EngineError::invalid_request(format!("expires_in: {e}")))?;
    Ok((name, scopes, lifetime))
}

/// Creates an agent: the principal may grant only what its own grants cover; a policy that
/// governs the name sets its lifetime and limits.
pub(crate) async fn create(
    engine: &Engine,
    principal: &Principal,
    origin: &Origin,
    request: CreateAgent,
) -> Result<Created, EngineError> {
    principal.require_admin("admin:agents:write")?;
    let (name, scopes, lifetime) = validate(&request)?;
    principal.require_grantable(&scopes)?;
    let now = engine.clock().now();
    let policy = crate::engine::enrollment::admitting_policy(engine, name.as_str()).await?;
    let (mut new, secrets) =
        crate::engine::enrollment::admitted_agent(name, scopes, lifetime, policy.as_ref(), now);
    new.client_secret_hash = engine.sealer().client_secret_hash(&secrets.client_secret);
    let event = AuditEvent::new(Action::AgentCreated, principal.actor(), now)
        .about_agent(new.id.as_str(), new.name.as_str())
        .from_request(origin.ip.clone(), origin.request_id.clone())
        .with_details(json!({
            "scopes": new.scopes.to_strings(),
            "expires_at": new.expires_at,
            "client_id": new.client_id,
            "policy": new.policy,
        }));
    let agent = engine
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
    let warnings = unconfigured_backends(engine, &agent.scopes);
    Ok(Created {
        agent,
        secrets,
        warnings,
    })
}

/// Warnings for granted scopes that name no configured backend: admins may prepare agents
/// before adding backends, but should know.
fn unconfigured_backends(engine: &Engine, scopes: &Grants) -> Vec<String> {
    let mut backends: Vec<&str> = scopes
        .as_slice()
        .iter()
        .filter(|s| !s.is_admin() && s.as_str() != "*")
        .map(|s| s.backend())
        .filter(|b| engine.backends().get(b).is_none())
        .collect();
    backends.dedup();
    backends
        .into_iter()
        .map(|b| format!("backend '{b}' is not configured yet; add it with: creddy backend add <type> --name {b}"))
        .collect()
}

/// Every agent with its count of open leases.
pub(crate) async fn list(
    engine: &Engine,
    principal: &Principal,
) -> Result<Vec<(Agent, i64)>, EngineError> {
    principal.require_admin("admin:agents:read")?;
    let agents = engine.store().list_agents().await?;
    Ok(agents
        .into_iter()
        .map(|l| (l.agent, l.active_leases))
        .collect())
}

/// One agent with its open leases.
pub(crate) async fn show(
    engine: &Engine,
    principal: &Principal,
    name: &str,
) -> Result<(Agent, Vec<LeaseSummary>), EngineError> {
    principal.require_admin("admin:agents:read")?;
    let agent = find(engine, name).await?;
    let leases = engine.store().open_leases_of(&agent.id).await?;
    Ok((agent, leases))
}

/// Removes an agent; its open leases are queued for revocation in the same transaction.
pub(crate) async fn remove(
    engine: &Engine,
    principal: &Principal,
    origin: &Origin,
    name: &str,
) -> Result<(), EngineError> {
    principal.require_admin("admin:agents:write")?;
    let agent = find(engine, name).await?;
    let event = AuditEvent::new(
        Action::AgentDeleted,
        principal.actor(),
        engine.clock().now(),
    )
    .about_agent(agent.id.as_str(), &agent.name)
    .from_request(origin.ip.clone(), origin.request_id.clone())
    .with_details(json!({"reason": "admin"}));
    match engine.store().delete_agent(&agent.id, &event).await? {
        Some(queued) => {
            tracing::info!(agent = %agent.name, queued, "agent removed");
            Ok(())
        }
        None => Err(no_such_agent(name)),
    }
}

/// The agent leaves by itself (`reason: self`); its open leases are queued for revocation.
pub(crate) async fn leave(
    engine: &Engine,
    agent: &Agent,
    origin: &Origin,
) -> Result<(), EngineError> {
    let event = AuditEvent::new(
        Action::AgentDeleted,
        creddy_core::audit::Actor::agent(agent.id.as_str(), &agent.name),
        engine.clock().now(),
    )
    .about_agent(agent.id.as_str(), &agent.name)
    .from_request(origin.ip.clone(), origin.request_id.clone())
    .with_details(json!({"reason": "self"}));
    if let Some(queued) = engine.store().delete_agent(&agent.id, &event).await? {
        tracing::info!(agent = %agent.name, queued, "agent unenrolled");
        engine.tasks().kick();
    }
    Ok(())
}

async fn find(engine: &Engine, name: &str) -> Result<Agent, EngineError> {
    AgentName::parse(name).map_err(|e| EngineError::invalid_request(e.to_string()))?;
    engine
        .store()
        .find_agent_by_name(name)
        .await?
        .ok_or_else(|| no_such_agent(name))
}

fn no_such_agent(name: &str) -> EngineError {
    EngineError::not_found(format!("no agent named '{name}'"))
        .with_remedy("list agents with: creddy agent ls")
}

//! Reading leases: an admin's filtered pages and single leases (`admin:tokens:read`), and an
//! agent's own live leases. Changing them is `revocation`'s.

use creddy_api::leases::LeaseQuery;
use creddy_core::agent::Agent;
use creddy_core::lease::LeaseState;
use creddy_store::{LeaseFilter, LeaseRecord, LeaseSummary};

use crate::engine::auth::Principal;
use crate::engine::error::EngineError;
use crate::engine::revocation::{find, no_such_lease};
use crate::engine::state::Engine;

/// A page of leases, newest first: at most `limit` (1000, the default); `before=<last id>`
/// gives the next page; `state` is a comma-separated list of lease states.
pub(crate) async fn page(
    engine: &Engine,
    principal: &Principal,
    query: LeaseQuery,
) -> Result<Vec<LeaseRecord>, EngineError> {
    principal.require_admin("admin:tokens:read")?;
    let states = query
        .state
        .map(|s| {
            s.split(',')
                .map(str::parse::<LeaseState>)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|unknown| {
            EngineError::invalid_request(format!("unknown lease state '{}'", unknown.name))
                .with_remedy(format!(
                    "use one or more of: {}",
                    LeaseState::ALL.map(LeaseState::as_str).join(", ")
                ))
        })?
        .unwrap_or_default();
    let filter = LeaseFilter {
        id: None,
        agent_name: query.agent,
        backend: query.backend,
        states,
        before: query.before,
        limit: query.limit.unwrap_or(creddy_store::MAX_LEASE_PAGE),
    };
    Ok(engine.store().find_leases(&filter).await?)
}

/// One lease, in any state.
pub(crate) async fn show(
    engine: &Engine,
    principal: &Principal,
    id: &str,
) -> Result<LeaseRecord, EngineError> {
    principal.require_admin("admin:tokens:read")?;
    find(engine, id).await?.ok_or_else(|| no_such_lease(id))
}

/// The agent's leases in `pending`, `active` or `revoking`.
pub(crate) async fn live_of(
    engine: &Engine,
    agent: &Agent,
) -> Result<Vec<LeaseSummary>, EngineError> {
    Ok(engine.store().live_leases_of(&agent.id).await?)
}

/// The agent's open leases and its scope requests awaiting a decision (`GET /v1/status`).
pub(crate) async fn status_of(
    engine: &Engine,
    agent: &Agent,
) -> Result<(Vec<LeaseSummary>, Vec<creddy_store::Enrollment>), EngineError> {
    let leases = engine.store().open_leases_of(&agent.id).await?;
    let amendments = engine.store().pending_amendments_of(&agent.id).await?;
    Ok((leases, amendments))
}

//! How the server stands: whether storage answers (everyone may ask), the counts an admin
//! with `admin:metrics:read` sees, and readiness (the audit head matches its newest record).

use creddy_core::lease::LeaseState;

use crate::engine::auth::Principal;
use crate::engine::state::Engine;

/// The counts behind `GET /health` for admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Seconds since the server started.
    pub(crate) uptime_seconds: u64,
    /// Agents.
    pub(crate) agents: i64,
    /// Backends loaded on this node.
    pub(crate) backends: u64,
    /// Requests waiting for a decision.
    pub(crate) pending: u64,
    /// Open leases.
    pub(crate) leases: i64,
    /// Leases whose revocation failed for good.
    pub(crate) irrevocable: i64,
}

/// `Ok(None)` when storage answers and the caller may not see counts; `Ok(Some(..))` with
/// them for an admin holding `admin:metrics:read`; `Err` when storage is unreachable (the
/// cause is logged, never answered).
pub(crate) async fn check(
    engine: &Engine,
    caller: Option<&Principal>,
) -> Result<Option<Counts>, ()> {
    if let Err(e) = engine.store().ping().await {
        tracing::error!(error = %e, "health check: storage unreachable");
        return Err(());
    }
    if caller.is_none_or(|p| p.require_admin("admin:metrics:read").is_err()) {
        return Ok(None);
    }
    let store = engine.store();
    let (Ok(agents), Ok(leases), Ok(by_backend), Ok(pending)) = (
        store.count_agents().await,
        store.count_open_leases().await,
        store.count_open_leases_by_backend().await,
        store.pending_enrollments().await,
    ) else {
        return Err(());
    };
    let irrevocable = by_backend
        .iter()
        .filter(|(_, state, _)| *state == LeaseState::Irrevocable)
        .map(|(_, _, n)| n)
        .sum();
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Ok(Some(Counts {
        uptime_seconds: engine.uptime_seconds(),
        agents,
        backends: count(engine.backends().all().len()),
        pending: count(pending.len()),
        leases,
        irrevocable,
    }))
}

/// Whether the node is ready: storage answers and the audit head matches its newest record.
pub(crate) async fn ready(engine: &Engine) -> bool {
    match engine.store().check_audit_head().await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "readiness check: storage unreachable or damaged");
            false
        }
    }
}

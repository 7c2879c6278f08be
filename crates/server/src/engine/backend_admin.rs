//! Admin operations on configured backends that are decisions of the engine: removal, by
//! draining (no new lease, open leases queued for revocation, the backend deleted by the
//! reaper once the last one settled) or by force (gone at once, every lease still open marked
//! `irrevocable`, audited and logged for an admin to follow up).

use creddy_core::audit::{Action, AuditEvent, Outcome};
use creddy_core::lease::LeaseState;
use creddy_core::origin::Origin;
use creddy_store::BackendRecord;
use serde_json::{Value, json};

use crate::engine::auth::Principal;
use crate::engine::error::{EngineError, ErrorCode};
use crate::engine::state::Engine;

/// The stored backend of that name.
pub(crate) async fn find(state: &Engine, name: &str) -> Result<BackendRecord, EngineError> {
    state
        .store()
        .find_backend(name)
        .await?
        .ok_or_else(|| no_such_backend(name))
}

/// No backend of that name.
pub(crate) fn no_such_backend(name: &str) -> EngineError {
    EngineError::new(
        ErrorCode::BackendNotFound,
        format!("no backend named '{name}'"),
    )
    .with_remedy("list backends with: creddy backend ls")
}

/// What a removal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// The backend is gone.
    Removed,
    /// It takes no new lease and goes once its `open` leases settled.
    Draining {
        /// Leases still open.
        open: i64,
    },
}

/// Removes a backend (admin scope `admin:backends:write`): drains it, or with `force`
/// removes it at once and marks its open leases `irrevocable`.
pub(crate) async fn remove(
    state: &Engine,
    principal: &Principal,
    origin: &Origin,
    name: &str,
    force: bool,
) -> Result<Removal, EngineError> {
    principal.require_admin("admin:backends:write")?;
    let record = find(state, name).await?;
    let now = state.clock().now();
    let event = |details: Value| {
        AuditEvent::new(Action::BackendRemoved, principal.actor(), now)
            .about_lease(name, None)
            .from_request(origin.ip.clone(), origin.request_id.clone())
            .with_details(details)
    };
    if force {
        let irrevocable = mark_irrevocable(state, principal, name).await?;
        let removed =
            event(json!({"type": record.plugin, "forced": true, "irrevocable": irrevocable}));
        state.store().delete_backend(name, &removed).await?;
        state.backends().remove(name).await;
        tracing::info!(backend = %name, irrevocable, "backend removed by force");
        return Ok(Removal::Removed);
    }
    let draining = event(json!({"type": record.plugin, "stage": "draining"}));
    let open = state
        .store()
        .drain_backend(name, now, &draining)
        .await?
        .ok_or_else(|| no_such_backend(name))?;
    if open == 0 {
        crate::engine::tasks::finish_drain(state, name, principal.actor()).await?;
        return Ok(Removal::Removed);
    }
    state.tasks().kick();
    tracing::info!(backend = %name, open, "backend draining");
    Ok(Removal::Draining { open })
}

/// Marks every lease of the backend that may still hold a live credential `irrevocable`,
/// without further retries (no plugin remains to make them); returns how many. An admin
/// deletes such credentials upstream by hand and then forgets the leases.
async fn mark_irrevocable(
    state: &Engine,
    principal: &Principal,
    name: &str,
) -> Result<usize, EngineError> {
    let leases = state.store().revocable_leases_of_backend(name).await?;
    for lease in &leases {
        let event = AuditEvent::new(
            Action::CredentialIrrevocable,
            principal.actor(),
            state.clock().now(),
        )
        .about_agent(&lease.agent_id, &lease.agent_name)
        .about_lease(name, Some(lease.id.as_str()))
        .with_outcome(Outcome::Failure)
        .with_details(json!({"reason": "backend_removed_by_force"}));
        state
            .store()
            .settle_lease(
                &lease.id,
                LeaseState::Irrevocable,
                state.clock().now(),
                &event,
            )
            .await?;
        tracing::error!(backend = %name, lease = %lease.id, "credential left irrevocable by a forced backend removal");
    }
    Ok(leases.len())
}

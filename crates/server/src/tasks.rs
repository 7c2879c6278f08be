//! Background tasks. Each has an owner (the [`Server`](crate::Server)) and a shutdown path,
//! and sleeps until its next deadline, a kick, or shutdown.
//!
//! The reaper removes agents whose lifetime has ended (they are already refused at every
//! request by the authentication check; removal queues their leases for revocation and
//! writes `agent.deleted` with reason `expired`), then revokes the credentials of leases that
//! expired or were queued, through their plugins (see [`crate::revocation`]).

use std::time::Duration;

use creddy_core::audit::{Action, Actor, AuditEvent};
use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::state::AppState;

/// The longest the reaper sleeps between sweeps, so a removal happens within a minute even
/// when an agent is created by another node.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// The shortest pause between sweeps, so a failing upstream is not hammered.
const RETRY_PACE: Duration = Duration::from_secs(1);
/// How long to back off after a storage error.
const ERROR_BACKOFF: Duration = Duration::from_secs(5);
/// How long a node holds the leases it claimed; a node that dies releases them this late.
const CLAIM_MILLIS: i64 = 60_000;
/// Agents removed per sweep; a larger backlog is worked through in consecutive sweeps.
const SWEEP_BATCH: i64 = 100;

/// Signals between the server and its background tasks.
#[derive(Debug)]
pub struct TaskSignals {
    kick: Notify,
    sweeps: watch::Sender<u64>,
}

impl Default for TaskSignals {
    fn default() -> Self {
        Self {
            kick: Notify::new(),
            sweeps: watch::channel(0).0,
        }
    }
}

impl TaskSignals {
    /// Wakes the reaper now (for example after the clock moved in a test) and waits until it
    /// has completed a full sweep.
    pub async fn sweep_now(&self) {
        let mut done = self.sweeps.subscribe();
        let before = *done.borrow_and_update();
        self.kick.notify_one();
        let _ = done.wait_for(|n| *n > before).await;
    }
}

/// Runs the agent reaper until `shutdown` changes.
pub(crate) async fn reap_expired_agents(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        let wait = match sweep(&state).await {
            Ok(()) => next_wait(&state).await,
            Err(e) => {
                tracing::error!(error = %e, "agent reaper: storage error; retrying");
                ERROR_BACKOFF
            }
        };
        state.tasks().sweeps.send_modify(|n| *n += 1);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = state.tasks().kick.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn sweep(state: &AppState) -> Result<(), creddy_store::StoreError> {
    expire_agents(state).await?;
    revoke_due_leases(state).await
}

/// Revokes the credentials of expired leases and of leases queued by agent removal.
async fn revoke_due_leases(state: &AppState) -> Result<(), creddy_store::StoreError> {
    let now = state.clock().now();
    for lease in state
        .store()
        .claim_due_leases(now, CLAIM_MILLIS, SWEEP_BATCH)
        .await?
    {
        if let Err(e) =
            crate::revocation::revoke(state, &lease, Actor::system(), "expired", None).await
        {
            tracing::error!(lease = %lease.id, error = ?e, "recording a revocation failed");
        }
    }
    Ok(())
}

async fn expire_agents(state: &AppState) -> Result<(), creddy_store::StoreError> {
    let now = state.clock().now();
    for agent in state.store().expired_agents(now, SWEEP_BATCH).await? {
        let event = AuditEvent::new(Action::AgentDeleted, Actor::system(), now)
            .about_agent(agent.id.as_str(), &agent.name)
            .with_details(json!({"reason": "expired", "expired_at": agent.expires_at}));
        if let Some(queued) = state.store().delete_agent(&agent.id, &event).await? {
            tracing::info!(agent = %agent.name, queued, "removed expired agent");
        }
    }
    Ok(())
}

async fn next_wait(state: &AppState) -> Duration {
    let now = state.clock().now();
    let (agents, leases) = (
        state.store().next_agent_expiry().await,
        state.store().next_lease_due(now).await,
    );
    match (agents, leases) {
        (Ok(a), Ok(l)) => match a.into_iter().chain(l).min() {
            // A lease whose revocation just failed is due again at once; pace retries.
            Some(at) => {
                Duration::from_millis(u64::try_from(at.as_millis() - now.as_millis()).unwrap_or(0))
                    .clamp(RETRY_PACE, MAX_IDLE)
            }
            None => MAX_IDLE,
        },
        _ => ERROR_BACKOFF,
    }
}

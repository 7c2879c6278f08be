//! Background tasks. Each has an owner (the [`Server`](crate::Server)) and a shutdown path,
//! and sleeps until its next deadline, a kick, or shutdown.
//!
//! The agent reaper removes agents whose lifetime has ended (they are already refused at
//! every request by the authentication check); removal queues their leases for revocation
//! and writes `agent.deleted` with reason `expired`.

use std::time::Duration;

use creddy_core::audit::{Action, Actor, AuditEvent};
use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::state::AppState;

/// The longest the reaper sleeps between sweeps, so a removal happens within a minute even
/// when an agent is created by another node.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// How long to back off after a storage error.
const ERROR_BACKOFF: Duration = Duration::from_secs(5);
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
    match state.store().next_agent_expiry().await {
        Ok(Some(at)) => {
            let millis = at.as_millis() - state.clock().now().as_millis();
            Duration::from_millis(u64::try_from(millis).unwrap_or(0)).min(MAX_IDLE)
        }
        Ok(None) => MAX_IDLE,
        Err(_) => ERROR_BACKOFF,
    }
}

//! Background tasks. Each has an owner (the [`Server`](crate::Server)) and a shutdown path,
//! and sleeps until its next deadline, a kick, a finished revocation, or shutdown.
//!
//! The reaper removes agents whose lifetime has ended (they are already refused at every
//! request by the authentication check; removal queues their leases for revocation and
//! writes `agent.deleted` with reason `expired`), then revokes the credentials of leases that
//! are due (see [`crate::engine::revocation`]).
//!
//! **Per-backend queues.** The queue of each backend is its due leases in the store, ordered
//! by due time (an index). The reaper claims at most `revocation.concurrency` leases per
//! backend (default 8) minus those it is already revoking, and runs each claimed revocation as its own task, so a
//! slow or dead upstream holds at most its own slots and never delays another backend. Memory
//! holds only the revocations in flight, never the set of live leases.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use creddy_core::audit::{Action, Actor, AuditEvent};
use creddy_core::ids::LeaseId;
use creddy_core::lease::LeaseState;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::engine::state::Engine;

/// The shortest pause between sweeps, so a failing upstream is not hammered.
const RETRY_PACE: Duration = Duration::from_secs(1);
/// How long to back off after a storage error.
const ERROR_BACKOFF: Duration = Duration::from_secs(5);
/// How long a node holds the leases it claimed: twice the longest revoke call, so a claim
/// never lapses while its attempt runs; a node that dies releases them this late.
const CLAIM_MILLIS: i64 = 60_000;
/// Agents removed per sweep; a larger backlog is worked through in consecutive sweeps.
const SWEEP_BATCH: i64 = 100;
/// How long shutdown waits for revocations in flight before abandoning them (their claims
/// lapse, and another node or the next start takes them over).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Signals between the server and its background tasks.
#[derive(Debug)]
pub struct TaskSignals {
    kick: Notify,
    /// Sweeps started.
    started: AtomicU64,
    /// The number of the last sweep completed, and whether no revocation was in flight
    /// after it.
    sweeps: watch::Sender<(u64, bool)>,
    /// When this node last pruned the audit trail (milliseconds; 0: never).
    last_prune: std::sync::atomic::AtomicI64,
}

impl Default for TaskSignals {
    fn default() -> Self {
        Self {
            kick: Notify::new(),
            started: AtomicU64::new(0),
            sweeps: watch::channel((0, true)).0,
            last_prune: std::sync::atomic::AtomicI64::new(0),
        }
    }
}

impl TaskSignals {
    /// Wakes the reaper now (for example after the clock moved in a test) and waits until it
    /// has completed a sweep and every revocation it started has ended.
    pub async fn sweep_now(&self) {
        let mut done = self.sweeps.subscribe();
        // A sweep already running may have read the clock before the caller moved it; wait
        // for one that starts after this point.
        let before = self.started.load(Ordering::SeqCst);
        self.kick.notify_one();
        let _ = done.wait_for(|(n, idle)| *n > before && *idle).await;
    }

    /// Wakes the reaper without waiting (a lease was queued).
    pub(crate) fn kick(&self) {
        self.kick.notify_one();
    }
}

/// Revocations running on this node.
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<()>,
    /// The backend and lease of each running task.
    running: HashMap<tokio::task::Id, (String, LeaseId)>,
    /// The leases being revoked: one attempt per lease at a time on this node, even when its
    /// claim lapsed while the attempt ran (a stalled call, a clock that jumped) and it was
    /// claimed again.
    leases: HashSet<LeaseId>,
    per_backend: HashMap<String, usize>,
}

impl InFlight {
    fn room(&self, backend: &str, concurrency: usize) -> usize {
        concurrency.saturating_sub(self.per_backend.get(backend).copied().unwrap_or(0))
    }

    fn start(&mut self, state: &Engine, lease: creddy_store::RevocableLease) {
        if !self.leases.insert(lease.id.clone()) {
            tracing::debug!(lease = %lease.id, "claimed again while its attempt runs; left to it");
            return;
        }
        *self.per_backend.entry(lease.backend.clone()).or_default() += 1;
        let backend = lease.backend.clone();
        let lease_id = lease.id.clone();
        let state = state.clone();
        // Why the lease is due: its expiry, or a queued revocation (explicit, agent or
        // backend removal), or a retry.
        let reason = match lease.state {
            LeaseState::Active => "expired",
            LeaseState::Revoking => "queued",
            _ => "retry",
        };
        if lease.state == LeaseState::Active {
            let late = state.clock().now().as_millis() - lease.expires_at.as_millis();
            state.metrics().observe(
                crate::engine::metrics::REVOCATION_QUEUE,
                &[("backend", lease.backend.as_str())],
                Duration::from_millis(u64::try_from(late).unwrap_or(0)),
            );
        }
        let task = self.tasks.spawn(async move {
            if let Err(e) =
                crate::engine::revocation::revoke(&state, &lease, Actor::system(), reason, None)
                    .await
            {
                if e.code == crate::ErrorCode::AuditUnavailable {
                    state
                        .metrics()
                        .count(crate::engine::metrics::AUDIT_FAILURES, &[]);
                }
                tracing::error!(lease = %lease.id, error = ?e, "recording a revocation failed");
            }
        });
        self.running.insert(task.id(), (backend, lease_id));
    }

    /// Frees the slot of an ended task. A task that panicked leaves its lease claimed; the
    /// claim lapses and the lease is tried again.
    fn finished(&mut self, result: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let id = match result {
            Ok((id, ())) => id,
            Err(e) => {
                tracing::error!(error = %e, "a revocation task failed");
                e.id()
            }
        };
        if let Some((backend, lease)) = self.running.remove(&id) {
            self.leases.remove(&lease);
            if let Some(n) = self.per_backend.get_mut(&backend) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Takes note of every task that has ended.
    fn reap(&mut self) {
        while let Some(result) = self.tasks.try_join_next_with_id() {
            self.finished(result);
        }
    }

    async fn wind_down(mut self) {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

/// Runs the reaper until `shutdown` changes.
pub(crate) async fn reap_expired_agents(state: Engine, mut shutdown: watch::Receiver<bool>) {
    let mut in_flight = InFlight::default();
    // After a revocation ends only its backend's queue can have moved: the next pass claims
    // leases for the freed slots (and finishes drained backends) without the rest of a sweep.
    let mut only_leases = false;
    loop {
        in_flight.reap();
        let number = state.tasks().started.fetch_add(1, Ordering::SeqCst) + 1;
        let pass = if only_leases {
            revoke_and_drain(&state, &mut in_flight).await
        } else {
            sweep(&state, &mut in_flight).await
        };
        only_leases = false;
        let wait = match pass {
            Ok(()) => next_wait(&state).await,
            Err(e) => {
                tracing::error!(error = %e, "reaper: storage error; retrying");
                ERROR_BACKOFF
            }
        };
        let idle = in_flight.tasks.is_empty();
        state
            .tasks()
            .sweeps
            .send_modify(|(n, i)| (*n, *i) = (number, idle));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = state.tasks().kick.notified() => {}
            Some(result) = in_flight.tasks.join_next_with_id(), if !in_flight.tasks.is_empty() => {
                in_flight.finished(result);
                only_leases = true;
            }
            _ = shutdown.changed() => {
                in_flight.wind_down().await;
                return;
            }
        }
    }
}

async fn sweep(state: &Engine, in_flight: &mut InFlight) -> Result<(), creddy_store::StoreError> {
    expire_agents(state).await?;
    prune_audit(state).await?;
    crate::engine::enrollment::expire_lapsed(state).await?;
    crate::engine::oidc::retire_ended(state).await?;
    revoke_and_drain(state, in_flight).await
}

/// Starts the due revocations there is room for, then removes backends whose leases have all
/// ended.
async fn revoke_and_drain(
    state: &Engine,
    in_flight: &mut InFlight,
) -> Result<(), creddy_store::StoreError> {
    revoke_due_leases(state, in_flight).await?;
    for name in state.store().drained_backends().await? {
        finish_drain(state, &name, Actor::system()).await?;
    }
    Ok(())
}

/// Deletes a drained backend (`backend.removed`) and stops its plugin.
pub(crate) async fn finish_drain(
    state: &Engine,
    name: &str,
    actor: Actor,
) -> Result<(), creddy_store::StoreError> {
    let event = AuditEvent::new(Action::BackendRemoved, actor, state.clock().now())
        .about_lease(name, None)
        .with_details(json!({"stage": "removed"}));
    if state.store().delete_backend(name, &event).await? {
        tracing::info!(backend = %name, "backend drained and removed");
    }
    state.backends().remove(name).await;
    Ok(())
}

/// Claims due leases, per backend, up to the backend's free slots, and starts revoking them.
async fn revoke_due_leases(
    state: &Engine,
    in_flight: &mut InFlight,
) -> Result<(), creddy_store::StoreError> {
    let now = state.clock().now();
    for backend in state.store().due_backends(now).await? {
        let room = in_flight.room(&backend, state.settings().revocation.concurrency);
        if room == 0 {
            continue;
        }
        let limit = i64::try_from(room).unwrap_or(0);
        for lease in state
            .store()
            .claim_due_leases(now, CLAIM_MILLIS, &backend, limit)
            .await?
        {
            in_flight.start(state, lease);
        }
    }
    Ok(())
}

async fn expire_agents(state: &Engine) -> Result<(), creddy_store::StoreError> {
    let now = state.clock().now();
    for agent in state.store().expired_agents(now, SWEEP_BATCH).await? {
        let details = json!({"reason": "expired", "expired_at": agent.expires_at});
        remove_agent(state, &agent, details, now).await?;
    }
    remove_idle_agents(state, now).await
}

/// With `agents.inactivity_days`, removes agents unused that long (reason `inactive`); their
/// leases are revoked like those of any removed agent.
async fn remove_idle_agents(
    state: &Engine,
    now: creddy_core::Timestamp,
) -> Result<(), creddy_store::StoreError> {
    let days = state.settings().agents_inactivity_days;
    if days == 0 {
        return Ok(());
    }
    let before =
        creddy_core::Timestamp::from_millis(now.as_millis() - i64::from(days) * 86_400_000);
    for agent in state.store().idle_agents(before, SWEEP_BATCH).await? {
        let details = json!({"reason": "inactive", "last_used": agent.last_used,
            "inactivity_days": days});
        remove_agent(state, &agent, details, now).await?;
    }
    Ok(())
}

/// Removes `agent` for the reaper (`agent.deleted` with `details`); its open leases are
/// queued for revocation in the same transaction.
async fn remove_agent(
    state: &Engine,
    agent: &creddy_core::agent::Agent,
    details: serde_json::Value,
    now: creddy_core::Timestamp,
) -> Result<(), creddy_store::StoreError> {
    let reason = details["reason"].as_str().unwrap_or_default().to_owned();
    let event = AuditEvent::new(Action::AgentDeleted, Actor::system(), now)
        .about_agent(agent.id.as_str(), &agent.name)
        .with_details(details);
    if let Some(queued) = state.store().delete_agent(&agent.id, &event).await? {
        tracing::info!(agent = %agent.name, queued, %reason, "reaper removed an agent");
    }
    Ok(())
}

/// How often a node prunes the audit trail (with `audit.retention_days`).
const PRUNE_EVERY_MILLIS: i64 = 3_600_000;

/// With `audit.retention_days`, at most hourly: removes the records older than that, keeping
/// the chain verifiable from the recorded anchor (§13), with an `audit.pruned` event.
async fn prune_audit(state: &Engine) -> Result<(), creddy_store::StoreError> {
    let days = state.settings().audit_retention_days;
    let now = state.clock().now();
    let last = state.tasks().last_prune.load(Ordering::SeqCst);
    if days == 0 || now.as_millis() - last < PRUNE_EVERY_MILLIS {
        return Ok(());
    }
    state
        .tasks()
        .last_prune
        .store(now.as_millis(), Ordering::SeqCst);
    let before =
        creddy_core::Timestamp::from_millis(now.as_millis() - i64::from(days) * 86_400_000);
    let anchor = state
        .store()
        .prune_audit(before, |anchor, pruned| {
            AuditEvent::new(Action::AuditPruned, Actor::system(), now).with_details(json!({
                "through_seq": anchor.seq, "anchor_hash": anchor.hash, "events": pruned,
                "retention_days": days,
            }))
        })
        .await?;
    if let Some(anchor) = anchor {
        tracing::info!(through_seq = anchor.seq, days, "audit trail pruned");
    }
    Ok(())
}

async fn next_wait(state: &Engine) -> Duration {
    let now = state.clock().now();
    let max_idle = state.settings().reaper_max_idle;
    let (agents, leases) = (
        state.store().next_agent_expiry().await,
        state.store().next_lease_due().await,
    );
    match (agents, leases) {
        (Ok(a), Ok(l)) => match a.into_iter().chain(l).min() {
            // Wake exactly when the next lease falls due, so revocation starts on time.
            Some(at) if at > now => {
                Duration::from_millis(u64::try_from(at.as_millis() - now.as_millis()).unwrap_or(0))
                    .min(max_idle)
            }
            // Something is due but was not taken (its backend's slots are full): pace.
            Some(_) => RETRY_PACE.min(max_idle),
            None => max_idle,
        },
        _ => ERROR_BACKOFF,
    }
}

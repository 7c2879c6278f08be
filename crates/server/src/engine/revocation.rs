//! Revoking one lease's credential through its backend's plugin and recording the outcome.
//!
//! Used by the reaper's per-backend queues (expiry, queued revocations, retries) and by an
//! explicit revoke's one immediate attempt; the caller holds the lease's claim. One attempt
//! per call; a failed attempt is audited and rescheduled (backoff, `Retry-After`, the
//! backend's horizon, then daily). **No lease disappears silently**: a lease only ends
//! `revoked` when the upstream confirmed the deletion or had nothing to delete.

use creddy_core::audit::{Action, Actor, AuditEvent, Outcome};
use creddy_core::ids::LeaseId;
use creddy_core::lease::LeaseState;
use creddy_core::origin::Origin;
use creddy_plugin::host::HostError;
use creddy_plugin::protocol::AgentRef;
use creddy_store::{LeaseFilter, LeaseRecord, Queued, RevocableLease};
use serde_json::json;

use crate::engine::auth::Principal;
use crate::engine::error::EngineError;
use crate::engine::state::Engine;
use crate::engine::vend::external_id_context;

/// Revokes `lease` upstream and marks it `revoked` with a `credential.revoked` event; a
/// `pending` lease (an intent whose mint had an unknown outcome) is reconciled instead: once
/// the upstream confirms nothing of it remains, it ends `failed` with `credential.failed`.
/// `Ok(false)` means the upstream could not be asked or refused; the lease stays open.
pub(crate) async fn revoke(
    state: &Engine,
    lease: &RevocableLease,
    actor: Actor,
    reason: &str,
    context: Option<&Origin>,
) -> Result<bool, EngineError> {
    let live = state.backends().get(&lease.backend);
    let process = live.as_ref().and_then(|l| l.process.as_ref().ok());
    let external_id = lease
        .sealed_external_id
        .as_deref()
        .and_then(|s| {
            state
                .sealer()
                .open(&external_id_context(lease.id.as_str()), s)
                .ok()
        })
        .map(|p| String::from_utf8_lossy(&p).into_owned());
    let agent = AgentRef {
        id: lease.agent_id.clone(),
        name: lease.agent_name.clone(),
        scopes: vec![],
    };
    let outcome = match process {
        Some(p) => p
            .revoke_credential(external_id, lease.id.as_str(), agent)
            .await
            .map_err(Failure::from),
        None => Err(Failure {
            kind: "plugin_unavailable".to_owned(),
            message: "the backend's plugin is not running".to_owned(),
            retry_after: None,
            retryable: true,
        }),
    };
    let result = match outcome {
        Ok(result) => result,
        Err(failure) => {
            tracing::warn!(lease = %lease.id, backend = %lease.backend, message = %failure.message, "revocation attempt failed");
            let self_expiring =
                process.is_some_and(|p| p.started().hello.capabilities.self_expiring);
            schedule_retry(state, lease, &failure, self_expiring).await?;
            return Ok(false);
        }
    };
    let (ip, request_id) = context
        .map(|c| (c.ip.clone(), c.request_id.clone()))
        .unwrap_or_default();
    let (action, to_state, reason) = if lease.state == LeaseState::Pending {
        (Action::CredentialFailed, LeaseState::Failed, "reconciled")
    } else {
        (Action::CredentialRevoked, LeaseState::Revoked, reason)
    };
    let event = AuditEvent::new(action, actor, state.clock().now())
        .about_agent(&lease.agent_id, &lease.agent_name)
        .about_lease(&lease.backend, Some(lease.id.as_str()))
        .from_request(ip, request_id)
        .with_details(json!({"reason": reason, "already_gone": result.already_gone}));
    state
        .store()
        .settle_lease(&lease.id, to_state, state.clock().now(), &event)
        .await?;
    count(state, &lease.backend, to_state.as_str());
    tracing::info!(lease = %lease.id, backend = %lease.backend, reason, to_state = to_state.as_str(), "lease settled");
    Ok(true)
}

/// Why one attempt failed.
struct Failure {
    /// The plugin error kind's name, or `plugin_unavailable`.
    kind: String,
    /// For the log.
    message: String,
    /// Seconds the upstream asked to wait.
    retry_after: Option<u64>,
    /// False when retrying soon cannot help (the upstream refused the master key, say).
    retryable: bool,
}

impl From<HostError> for Failure {
    fn from(e: HostError) -> Self {
        let (kind, retry_after, retryable) = match &e {
            HostError::Plugin {
                kind,
                retry_after,
                retryable,
                ..
            } => (
                serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned)),
                *retry_after,
                *retryable,
            ),
            _ => (None, None, true),
        };
        Self {
            kind: kind.unwrap_or_else(|| "plugin_unavailable".to_owned()),
            message: e.to_string(),
            retry_after,
            retryable,
        }
    }
}

/// Seconds past a lease's expiry after which a self-expiring credential is surely dead
/// upstream: the plugin stamps the upstream expiry from its own clock, a moment after the
/// lease's, and clocks differ a little.
const EXPIRY_MARGIN: u64 = 60;

/// One day, the pace of retries for `irrevocable` leases.
const DAILY: u64 = 86_400;

/// The delay before attempt `n + 1` after `n` failures: `min(max, base × 2^(n−1))` times a
/// random factor in [0.5, 1.5].
fn backoff(failures: i64, base: u64, max: u64) -> u64 {
    let exponent = u32::try_from(failures.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let delay = base.saturating_mul(1u64 << exponent).min(max);
    let mut random = [0u8; 2];
    creddy_core::secret::fill_random(&mut random);
    let factor = 0.5 + f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX);
    // Delays are far below 2^52 seconds, so the float round trip is exact enough.
    ((delay as f64) * factor).round().max(1.0) as u64
}

/// Records a failed attempt: the next one is scheduled with backoff (never sooner than the
/// upstream's `Retry-After`) until the backend's horizon, then the lease becomes
/// `irrevocable` (retried daily, with an error in the log and an audit record) or, for a
/// self-expiring credential already past its expiry, `lapsed`. A failure that retrying soon
/// cannot cure (the upstream refused the master key, say) gives up at once.
async fn schedule_retry(
    state: &Engine,
    lease: &RevocableLease,
    failure: &Failure,
    self_expiring: bool,
) -> Result<(), EngineError> {
    let settings = &state.settings().revocation;
    let now = state.clock().now();
    let failures = lease.attempts + 1;
    let first_failure = lease.first_failed_at.unwrap_or(now);
    let past_horizon = !failure.retryable
        || now.seconds_since(first_failure) >= settings.horizon_of(&lease.backend);
    let (action, give_up, next) = if lease.state == LeaseState::Irrevocable {
        (
            Action::CredentialRevokeFailed,
            None,
            Some(now.plus_seconds(DAILY)),
        )
    } else if past_horizon && self_expiring && now >= lease.expires_at.plus_seconds(EXPIRY_MARGIN) {
        (Action::CredentialLapsed, Some(LeaseState::Lapsed), None)
    } else if past_horizon {
        tracing::error!(lease = %lease.id, backend = %lease.backend, failures, "credential could not be revoked within the horizon; it is now irrevocable and retried daily");
        (
            Action::CredentialIrrevocable,
            Some(LeaseState::Irrevocable),
            Some(now.plus_seconds(DAILY)),
        )
    } else {
        let delay = backoff(failures, settings.base_delay, settings.max_delay)
            .max(failure.retry_after.unwrap_or(0).min(settings.max_delay));
        (
            Action::CredentialRevokeFailed,
            None,
            Some(now.plus_seconds(delay)),
        )
    };
    let outcome = if action == Action::CredentialRevokeFailed {
        Outcome::Failure
    } else {
        Outcome::Denied
    };
    let event = AuditEvent::new(action, Actor::system(), now)
        .about_agent(&lease.agent_id, &lease.agent_name)
        .about_lease(&lease.backend, Some(lease.id.as_str()))
        .with_outcome(outcome)
        .with_details(
            json!({"attempt": failures, "error_kind": failure.kind, "next_attempt_at": next}),
        );
    state
        .store()
        .record_revoke_failure(&lease.id, now, &failure.kind, next, give_up, &event)
        .await?;
    count(
        state,
        &lease.backend,
        give_up.map_or("failed", LeaseState::as_str),
    );
    Ok(())
}

/// Counts one attempt's outcome in `creddy_revocations_total`.
fn count(state: &Engine, backend: &str, outcome: &str) {
    state.metrics().count(
        crate::engine::metrics::REVOCATIONS,
        &[("backend", backend), ("outcome", outcome)],
    );
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap_with_jitter() {
        for (failures, centre) in [(1, 10u64), (2, 20), (3, 40), (10, 3_600), (40, 3_600)] {
            for _ in 0..50 {
                let delay = backoff(failures, 10, 3_600);
                assert!(
                    delay >= centre / 2 && delay <= centre * 3 / 2,
                    "{failures}: {delay}"
                );
            }
        }
    }
}

/// The lease of that id, in any state (`None` also for text that is no lease id).
pub(crate) async fn find(state: &Engine, id: &str) -> Result<Option<LeaseRecord>, EngineError> {
    let Some(id) = LeaseId::parse(id) else {
        return Ok(None);
    };
    let filter = LeaseFilter {
        id: Some(id),
        states: LeaseState::ALL.to_vec(),
        ..LeaseFilter::default()
    };
    Ok(state.store().find_leases(&filter).await?.into_iter().next())
}

/// An agent revokes one of its own leases; another agent's answers like an unknown one.
pub(crate) async fn revoke_own(
    engine: &Engine,
    principal: &Principal,
    origin: &Origin,
    id: &str,
) -> Result<LeaseState, EngineError> {
    let agent = principal.clone().into_agent()?;
    let lease = find(engine, id)
        .await?
        .filter(|l| l.agent_id == agent.id.as_str())
        .ok_or_else(|| no_such_lease(id))?;
    revoke_explicitly(engine, principal, origin, lease).await
}

/// No lease of that id (or not the caller's).
pub(crate) fn no_such_lease(id: &str) -> EngineError {
    EngineError::not_found(format!("no credential with id '{id}'"))
        .with_remedy("list credentials with: creddy ls")
}

/// How long an explicit revoke holds its lease while it tries once (longer than the plugin's
/// revoke timeout, so the reaper does not start a second attempt meanwhile).
const EXPLICIT_CLAIM_MILLIS: i64 = 60_000;

/// An explicit revoke: queues the lease and, when this caller claimed it, tries once at once;
/// answers the lease's resulting state (`revoked`, or `revoking` while the reaper keeps
/// trying; an ended lease answers its state and changes nothing).
pub(crate) async fn revoke_explicitly(
    state: &Engine,
    principal: &Principal,
    origin: &Origin,
    lease: LeaseRecord,
) -> Result<LeaseState, EngineError> {
    let now = state.clock().now();
    let current = match state
        .store()
        .queue_revocation(&lease.id, now, EXPLICIT_CLAIM_MILLIS)
        .await?
    {
        Queued::Missing => return Err(no_such_lease(lease.id.as_str())),
        Queued::State(current) => current,
        Queued::Claimed(claimed) => {
            let revoked =
                revoke(state, &claimed, principal.actor(), "explicit", Some(origin)).await?;
            if revoked {
                LeaseState::Revoked
            } else {
                state.tasks().kick();
                LeaseState::Revoking
            }
        }
    };
    if current == LeaseState::Revoking {
        state.tasks().kick();
    }
    Ok(current)
}

/// What an admin's revoke did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminRevoke {
    /// The lease's state afterwards.
    State(LeaseState),
    /// An `irrevocable` lease is tried again at once (it stays `irrevocable` until that
    /// attempt succeeds).
    RetryQueued,
}

/// An admin revokes any lease (`admin:tokens:write`). On an `irrevocable` lease it asks for
/// one more attempt now, or with `force` stops the retries: the lease becomes `forgotten`,
/// audited with the admin's reason.
pub(crate) async fn admin_revoke(
    state: &Engine,
    principal: &Principal,
    origin: &Origin,
    id: &str,
    force: bool,
    reason: Option<String>,
) -> Result<AdminRevoke, EngineError> {
    principal.require_admin("admin:tokens:write")?;
    let lease = find(state, id).await?.ok_or_else(|| no_such_lease(id))?;
    if lease.state == LeaseState::Irrevocable {
        if force {
            return forget(state, principal, origin, lease, reason).await;
        }
        // Without force: one more attempt now rather than at the daily retry.
        if state
            .store()
            .retry_irrevocable_now(&lease.id, state.clock().now())
            .await?
        {
            tracing::info!(lease = %id, "an admin asked for a new revocation attempt of an irrevocable credential");
            state.tasks().kick();
        }
        return Ok(AdminRevoke::RetryQueued);
    }
    revoke_explicitly(state, principal, origin, lease)
        .await
        .map(AdminRevoke::State)
}

/// Stops the retries of an irrevocable lease: it becomes `forgotten`, audited with the
/// admin's reason.
async fn forget(
    state: &Engine,
    principal: &Principal,
    origin: &Origin,
    lease: LeaseRecord,
    reason: Option<String>,
) -> Result<AdminRevoke, EngineError> {
    let reason = reason.unwrap_or_default();
    crate::engine::error::check_reason(&reason)?;
    let event = AuditEvent::new(
        Action::CredentialForgotten,
        principal.actor(),
        state.clock().now(),
    )
    .about_agent(&lease.agent_id, &lease.agent_name)
    .about_lease(&lease.backend, Some(lease.id.as_str()))
    .from_request(origin.ip.clone(), origin.request_id.clone())
    .with_outcome(Outcome::Success)
    .with_details(json!({"reason": reason, "attempts": lease.attempts}));
    let forgotten = state
        .store()
        .forget_lease(&lease.id, &format!("forgotten: {reason}"), &event)
        .await?;
    let current = if forgotten {
        tracing::warn!(lease = %lease.id, backend = %lease.backend, "an admin stopped the revocation retries of an irrevocable credential");
        LeaseState::Forgotten
    } else {
        state
            .store()
            .lease_state(&lease.id)
            .await?
            .unwrap_or(lease.state)
    };
    Ok(AdminRevoke::State(current))
}

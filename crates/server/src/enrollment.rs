//! Enrollment and amendments (§7, §8): checking what an untrusted caller asks for, the policy
//! decision with its limits counted from stored state, and the agent an approval creates.
//!
//! Requests come from unauthenticated callers, so refusals name the offending scope but never
//! list the configured backends.

use creddy_core::Timestamp;
use creddy_core::agent::NewAgent;
use creddy_core::audit::{Action, Actor, AuditEvent, Outcome};
use creddy_core::enrollment::{EnrollmentKind, EnrollmentStatus};
use creddy_core::names::AgentName;
use creddy_core::policy::{Policy, Verdict};
use creddy_core::scope::{Grants, Scope};
use serde_json::json;

use crate::error::{EngineError, ErrorCode};
use crate::state::AppState;

/// The most scopes one request may name.
pub(crate) const MAX_REQUESTED: usize = 64;

/// Checks requested scopes: at least one, each in the grammar, none an admin scope, each
/// naming a configured backend (or `*`) and accepted by that backend's plugin.
pub(crate) async fn requested_scopes(
    state: &AppState,
    raw: &[String],
) -> Result<Vec<Scope>, EngineError> {
    if raw.is_empty() {
        return Err(EngineError::invalid_request("request at least one scope")
            .with_remedy("for example: --can daytona"));
    }
    if raw.len() > MAX_REQUESTED {
        return Err(EngineError::invalid_request(format!(
            "too many scopes ({}); at most {MAX_REQUESTED} per request",
            raw.len()
        )));
    }
    let mut scopes = Vec::with_capacity(raw.len());
    for text in raw {
        let scope = Scope::parse(text)
            .map_err(|e| EngineError::new(ErrorCode::InvalidScope, e.to_string()))?;
        if scope.is_admin() {
            return Err(EngineError::new(
                ErrorCode::InvalidScope,
                format!("'{scope}' is an admin scope, which only an admin grants"),
            )
            .with_remedy("request credential scopes; an admin may add admin scopes on approval (creddy approve ID --can …)"));
        }
        if scope.as_str() != "*" {
            check_supported(state, &scope).await?;
        }
        scopes.push(scope);
    }
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

/// The scope names a configured backend whose plugin accepts it.
async fn check_supported(state: &AppState, scope: &Scope) -> Result<(), EngineError> {
    let unknown = || {
        EngineError::new(
            ErrorCode::UnknownBackend,
            format!("scope '{scope}' names no backend of this server"),
        )
        .with_remedy("check the scope with the server's admin")
    };
    let live = state.backends().get(scope.backend()).ok_or_else(unknown)?;
    let process = live.process.as_ref().map_err(|_| unknown())?;
    let pattern = match scope.as_str().split_once(':') {
        Some((_, rest)) => format!("{}:{rest}", live.plugin),
        None => live.plugin.clone(),
    };
    if !process.match_scope(&pattern).await?.matches {
        return Err(EngineError::new(
            ErrorCode::InvalidScope,
            format!("scope '{scope}' is not supported by its backend"),
        )
        .with_remedy("check the scope with the server's admin"));
    }
    Ok(())
}

/// What the policies say, with their limits counted.
pub(crate) struct Decided {
    /// The governing policy.
    pub(crate) policy: Option<Policy>,
    /// Approve, pending (a person decides) or rejected, with the reason.
    pub(crate) verdict: Verdict,
}

impl Decided {
    /// The `policy.decision` event.
    pub(crate) fn event(&self, now: Timestamp, name: &str, id: &str) -> AuditEvent {
        let (outcome, text, reason) = match &self.verdict {
            Verdict::Approve => (Outcome::Success, "approved", None),
            Verdict::Pending(r) => (Outcome::Success, "pending", Some(r.as_str())),
            Verdict::Rejected(r) => (Outcome::Denied, "rejected", Some(r.as_str())),
        };
        AuditEvent::new(Action::PolicyDecision, Actor::system(), now)
            .with_outcome(outcome)
            .with_details(json!({
                "request": id,
                "name": name,
                "policy": self.policy.as_ref().map(|p| p.name.as_str()),
                "outcome": text,
                "reason": reason,
            }))
    }
}

/// Evaluates a request by `name` for `scopes` under `policy_name` (an amendment's agent's
/// policy) or, without one, the first policy matching the name; counts the limits.
pub(crate) async fn decide(
    state: &AppState,
    name: &str,
    scopes: &[Scope],
    policy_name: Option<&str>,
    now: Timestamp,
) -> Result<Decided, EngineError> {
    let policies = state.policies();
    let (policy, verdict) = match policy_name {
        Some(named) => match policies.named(named) {
            Some(p) => (Some(p.clone()), p.judge(scopes)),
            None => (
                None,
                Verdict::Pending(format!(
                    "policy '{named}' is no longer configured; an admin decides"
                )),
            ),
        },
        None => {
            let decision = policies.evaluate(name, scopes);
            (decision.policy.cloned(), decision.verdict)
        }
    };
    let verdict = match (&policy, verdict) {
        (Some(p), Verdict::Approve) => match limits_reached(state, p, now).await? {
            Some(reason) => Verdict::Pending(reason),
            None => Verdict::Approve,
        },
        (_, other) => other,
    };
    Ok(Decided { policy, verdict })
}

/// Step 5: the policy's `max_agents` and `rate`, counted from stored state.
async fn limits_reached(
    state: &AppState,
    policy: &Policy,
    now: Timestamp,
) -> Result<Option<String>, EngineError> {
    let agents = match policy.limits.max_agents {
        Some(_) => state.store().count_agents_of_policy(&policy.name).await?,
        None => 0,
    };
    let approvals = match policy.limits.rate {
        Some(rate) => {
            let since = Timestamp::from_millis(
                now.as_millis() - i64::try_from(rate.window_seconds * 1000).unwrap_or(i64::MAX),
            );
            state
                .store()
                .count_policy_approvals_since(&policy.name, since)
                .await?
        }
        None => 0,
    };
    Ok(policy.limit_reached(agents, approvals))
}

/// The policy that governs a new agent of that name (admin creation or approval), after
/// checking its `max_agents` (409 `policy_limit`).
pub(crate) async fn admitting_policy(
    state: &AppState,
    name: &str,
) -> Result<Option<Policy>, EngineError> {
    let policies = state.policies();
    let Some(policy) = policies.policies().iter().find(|p| p.governs(name)) else {
        return Ok(None);
    };
    if let Some(max) = policy.limits.max_agents
        && state.store().count_agents_of_policy(&policy.name).await? >= max
    {
        return Err(EngineError::new(
            ErrorCode::PolicyLimit,
            format!(
                "policy '{}' already governs {max} agents, its limits.max_agents",
                policy.name
            ),
        )
        .with_remedy(
            "remove an agent of that policy, or raise its limit in the server's configuration",
        ));
    }
    Ok(Some(policy.clone()))
}

/// A new agent admitted under `policy`: its lifetime is the policy's `max_agent_lifetime`,
/// which an admin-given lifetime may only shorten.
pub(crate) fn admitted_agent(
    name: AgentName,
    scopes: Grants,
    requested_lifetime: Option<creddy_core::Duration>,
    policy: Option<&Policy>,
    now: Timestamp,
) -> (NewAgent, creddy_core::agent::AgentSecrets) {
    let cap = policy.and_then(Policy::max_agent_lifetime);
    let lifetime = match (requested_lifetime, cap) {
        (Some(r), Some(c)) => Some(if r.as_seconds() <= c.as_seconds() {
            r
        } else {
            c
        }),
        (r, c) => r.or(c),
    };
    let (mut agent, secrets) = NewAgent::prepare(name, scopes, lifetime, now);
    agent.policy = policy.map(|p| p.name.clone());
    (agent, secrets)
}

/// Closes requests whose deadline passed: undecided ones expire; approved enrollments that
/// nobody picked up expire and their agent is removed (reason `unclaimed`).
pub(crate) async fn expire_lapsed(state: &AppState) -> Result<(), creddy_store::StoreError> {
    let now = state.clock().now();
    for request in state.store().lapsed_enrollments(now, 100).await? {
        let mut expired = AuditEvent::new(Action::EnrollmentExpired, Actor::system(), now)
            .with_details(json!({"request": request.id, "name": request.name, "type": request.kind, "was": request.status}));
        if let Some(agent) = &request.agent_id {
            expired = expired.about_agent(agent, &request.name);
        }
        let mut events = vec![expired];
        if request.status == EnrollmentStatus::Approved
            && request.kind == EnrollmentKind::Enroll
            && let Some(agent) = &request.agent_id
        {
            events.push(
                AuditEvent::new(Action::AgentDeleted, Actor::system(), now)
                    .about_agent(agent, &request.name)
                    .with_details(json!({"reason": "unclaimed", "request": request.id})),
            );
        }
        if state
            .store()
            .close_enrollment(
                &request.id,
                EnrollmentStatus::Expired,
                None,
                "system",
                now,
                &events,
            )
            .await?
        {
            tracing::info!(request = %request.id, name = %request.name, was = %request.status, "request expired");
        }
    }
    Ok(())
}

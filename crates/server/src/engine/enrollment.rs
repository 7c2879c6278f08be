//! Enrollment and amendments (§7, §8): checking what an untrusted caller asks for, the policy
//! decision with its limits counted from stored state, and the agent an approval creates.
//!
//! Requests come from unauthenticated callers, so refusals name the offending scope but never
//! list the configured backends.

use creddy_core::Timestamp;
use creddy_core::agent::{Agent, AgentSecrets, NewAgent};
use creddy_core::audit::{Action, Actor, AuditEvent, Outcome};
use creddy_core::enrollment::{EnrollmentKind, EnrollmentStatus};
use creddy_core::ids::{AgentId, EnrollmentId};
use creddy_core::names::AgentName;
use creddy_core::origin::Origin;
use creddy_core::policy::{Policy, Verdict};
use creddy_core::scope::{Grants, Scope};
use creddy_core::secret::{SecretToken, TokenKind};
use creddy_store::{Enrollment, NewEnrollment, StoreError};
use serde_json::json;

use crate::engine::auth::Principal;
use crate::engine::error::{EngineError, ErrorCode};
use crate::engine::state::Engine;

/// The most scopes one request may name.
pub(crate) const MAX_REQUESTED: usize = 64;

/// Checks requested scopes: at least one, each in the grammar, none an admin scope, each
/// naming a configured backend (or `*`) and accepted by that backend's plugin.
pub(crate) async fn requested_scopes(
    state: &Engine,
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
async fn check_supported(state: &Engine, scope: &Scope) -> Result<(), EngineError> {
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
    state: &Engine,
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
    state: &Engine,
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
    state: &Engine,
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
pub(crate) async fn expire_lapsed(state: &Engine) -> Result<(), creddy_store::StoreError> {
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

/// A name already used by an agent or an open enrollment.
pub(crate) fn name_taken(name: &str) -> EngineError {
    EngineError::new(
        ErrorCode::NameTaken,
        format!("the name '{name}' is already used by an agent or an open enrollment"),
    )
    .with_remedy(format!(
        "enroll under another name (--name); if this machine already is '{name}', keep using its agent config (creddy status); an admin can remove the old agent (creddy agent rm {name})"
    ))
}

/// The events of an approval that creates `agent`.
pub(crate) fn approval_events(
    agent: &creddy_core::agent::NewAgent,
    request: &str,
    approver: Actor,
    now: Timestamp,
) -> Vec<AuditEvent> {
    vec![
        AuditEvent::new(Action::EnrollmentApproved, approver.clone(), now)
            .about_agent(agent.id.as_str(), agent.name.as_str())
            .with_details(json!({"request": request, "scopes": agent.scopes.to_strings(), "policy": agent.policy})),
        AuditEvent::new(Action::AgentCreated, approver, now)
            .about_agent(agent.id.as_str(), agent.name.as_str())
            .with_details(json!({
                "scopes": agent.scopes.to_strings(),
                "expires_at": agent.expires_at,
                "client_id": agent.client_id,
                "policy": agent.policy,
                "request": request,
            })),
    ]
}

/// An enrollment request as the caller sent it.
#[derive(Debug)]
pub(crate) struct EnrollRequest {
    /// The agent name asked for.
    pub(crate) name: String,
    /// The scopes asked for.
    pub(crate) scopes: Vec<String>,
    /// The local admin token, when a local admin enrolls a machine and approves at once.
    pub(crate) admin_token: Option<String>,
}

/// Credentials handed to an enrolled agent, once.
#[derive(Debug)]
pub(crate) struct Pickup {
    /// The request, `enr_…`.
    pub(crate) request: String,
    /// The agent's id.
    pub(crate) agent_id: String,
    /// The agent's name.
    pub(crate) name: String,
    /// The agent's scopes.
    pub(crate) scopes: Vec<String>,
    /// Its OIDC client id.
    pub(crate) client_id: String,
    /// Its vend token and client secret, generated now and stored only as hashes.
    pub(crate) secrets: AgentSecrets,
    /// The end of its lifetime.
    pub(crate) expires_at: Option<Timestamp>,
    /// The policy that admitted it.
    pub(crate) policy: Option<String>,
}

/// What an enrollment request came to.
#[derive(Debug)]
pub(crate) enum Requested {
    /// A policy refused it.
    Rejected {
        /// The request.
        id: String,
        /// The policy's reason.
        reason: String,
    },
    /// It waits for a person or a policy; the caller polls with the secret.
    Pending {
        /// The request.
        id: String,
        /// The agent name.
        name: String,
        /// The poll secret (only its hash is stored).
        secret: SecretToken,
        /// The decision deadline.
        expires_at: Timestamp,
    },
    /// Approved at once (a policy or the local admin) and picked up in the same step.
    Admitted(Box<Pickup>),
}

/// `POST /v1/enroll`: checks the request, asks the policies (unless the local admin's token
/// came with it), and stores the request with its events in one transaction; an approval
/// creates the agent and hands its credentials out at once.
pub(crate) async fn request(
    state: &Engine,
    origin: &Origin,
    body: EnrollRequest,
) -> Result<Requested, EngineError> {
    let now = state.clock().now();
    let caller = origin.ip.clone().unwrap_or_default();
    state
        .enroll_limiter()
        .admit(&caller, now, "enrollment requests from this address")?;
    let name = AgentName::parse(&body.name).map_err(|e| {
        EngineError::invalid_request(e.to_string()).with_remedy("pass a valid --name")
    })?;
    let scopes = requested_scopes(state, &body.scopes).await?;
    let scope_texts: Vec<String> = scopes.iter().map(ToString::to_string).collect();
    let by_admin = body
        .admin_token
        .as_deref()
        .is_some_and(|t| state.is_admin_token(t));
    let id = EnrollmentId::generate(now);
    let decided = if by_admin {
        None
    } else {
        Some(decide(state, name.as_str(), &scopes, None, now).await?)
    };
    let policy = decided.as_ref().and_then(|d| d.policy.clone());
    let verdict = decided
        .as_ref()
        .map_or(Verdict::Approve, |d| d.verdict.clone());
    let requested = AuditEvent::new(Action::EnrollmentRequested, Actor::anonymous(), now)
        .from_request(origin.ip.clone(), origin.request_id.clone())
        .with_details(json!({"request": id, "name": name.as_str(), "scopes": scope_texts}));
    let mut events = vec![requested];
    events.extend(
        decided
            .as_ref()
            .map(|d| d.event(now, name.as_str(), id.as_str())),
    );
    let mut new = NewEnrollment {
        id: id.clone(),
        kind: EnrollmentKind::Enroll,
        name: name.as_str().to_owned(),
        agent_id: None,
        scopes: scope_texts.clone(),
        status: EnrollmentStatus::Pending,
        policy: policy.as_ref().map(|p| p.name.clone()),
        reason: None,
        ip: origin.ip.clone(),
        secret_hash: None,
        created_at: now,
        expires_at: now.plus_seconds(state.settings().enrollment.pending_ttl),
        decided_by: None,
    };
    let max_pending = state.settings().enrollment.max_pending;
    let stored = |new: NewEnrollment,
                  agent: Option<creddy_core::agent::NewAgent>,
                  events: Vec<AuditEvent>| {
        let state = state.clone();
        async move {
            state
                .store()
                .request_enrollment(&new, agent.as_ref(), max_pending, &events)
                .await
                .map_err(|e| match e {
                    StoreError::NameTaken => name_taken(&new.name),
                    StoreError::Conflict(m) => EngineError::new(ErrorCode::RateLimited, m)
                        .with_remedy("retry later, once an admin has decided on waiting requests")
                        .with_retry_after(60),
                    other => other.into(),
                })
        }
    };
    match verdict {
        Verdict::Rejected(reason) => {
            new.status = EnrollmentStatus::Rejected;
            new.reason = Some(reason.clone());
            new.decided_by = Some("policy");
            events.push(
                AuditEvent::new(Action::EnrollmentRejected, Actor::system(), now)
                    .with_outcome(Outcome::Denied)
                    .with_details(json!({"request": id, "name": name.as_str(), "reason": reason})),
            );
            stored(new, None, events).await?;
            tracing::info!(request = %id, name = %name, "enrollment rejected by policy");
            Ok(Requested::Rejected {
                id: id.to_string(),
                reason,
            })
        }
        Verdict::Pending(reason) => {
            let secret = SecretToken::generate(TokenKind::EnrollmentSecret);
            new.secret_hash = Some(secret.hash());
            new.reason = Some(reason);
            let expires_at = new.expires_at;
            stored(new, None, events).await?;
            tracing::info!(request = %id, name = %name, "enrollment pending");
            Ok(Requested::Pending {
                id: id.to_string(),
                name: name.as_str().to_owned(),
                secret,
                expires_at,
            })
        }
        Verdict::Approve => {
            let policy = match &policy {
                Some(p) => Some(p.clone()),
                None if by_admin => admitting_policy(state, name.as_str()).await?,
                None => None,
            };
            let grants = Grants::from_scopes(scopes);
            let (mut agent, secrets) = admitted_agent(name, grants, None, policy.as_ref(), now);
            agent.client_secret_hash = state.sealer().client_secret_hash(&secrets.client_secret);
            new.status = EnrollmentStatus::Claimed;
            new.policy = policy.as_ref().map(|p| p.name.clone());
            new.decided_by = Some(if by_admin { "local_admin" } else { "policy" });
            let approver = if by_admin {
                Actor::local_admin()
            } else {
                Actor::system()
            };
            events.extend(approval_events(&agent, id.as_str(), approver, now));
            events.push(
                AuditEvent::new(
                    Action::EnrollmentClaimed,
                    Actor::agent(agent.id.as_str(), agent.name.as_str()),
                    now,
                )
                .about_agent(agent.id.as_str(), agent.name.as_str())
                .with_details(json!({"request": id})),
            );
            let pickup = Pickup {
                request: id.to_string(),
                agent_id: agent.id.to_string(),
                name: agent.name.as_str().to_owned(),
                scopes: agent.scopes.to_strings(),
                client_id: agent.client_id.clone(),
                secrets,
                expires_at: agent.expires_at,
                policy: new.policy.clone(),
            };
            stored(new, Some(agent), events).await?;
            tracing::info!(request = %id, "enrollment approved at once");
            Ok(Requested::Admitted(Box::new(pickup)))
        }
    }
}

/// Generates the agent's credentials and hands them out, once.
/// Picks up an approved enrollment's credentials: generated now, their hashes stored with the
/// claim in one transaction, so they are handed out once.
pub(crate) async fn pick_up(
    state: &Engine,
    request: &Enrollment,
    now: Timestamp,
) -> Result<Pickup, EngineError> {
    let agent_id = request.agent_id.clone().unwrap_or_default();
    let secrets = AgentSecrets {
        token: SecretToken::generate(TokenKind::Vend),
        client_secret: SecretToken::generate(TokenKind::ClientSecret),
    };
    let event = AuditEvent::new(
        Action::EnrollmentClaimed,
        Actor::agent(&agent_id, &request.name),
        now,
    )
    .about_agent(&agent_id, &request.name)
    .with_details(json!({"request": request.id}));
    let claimed = state
        .store()
        .claim_enrollment(
            &request.id,
            &secrets.token.hash(),
            &state.sealer().client_secret_hash(&secrets.client_secret),
            now,
            &event,
        )
        .await?;
    if !claimed {
        return Err(EngineError::new(
            ErrorCode::EnrollmentClaimed,
            "the credentials of this enrollment were already picked up",
        ));
    }
    let agent = state
        .store()
        .find_agent_by_name(&request.name)
        .await?
        .ok_or_else(|| EngineError::not_found("the approved agent no longer exists"))?;
    tracing::info!(request = %request.id, agent = %agent.name, "enrollment picked up");
    Ok(Pickup {
        request: request.id.to_string(),
        agent_id: agent.id.to_string(),
        name: agent.name.clone(),
        scopes: agent.scopes.to_strings(),
        client_id: agent.client_id.clone(),
        secrets,
        expires_at: agent.expires_at,
        policy: agent.policy.clone(),
    })
}

/// No request of that id.
pub(crate) fn no_such_request(id: &str) -> EngineError {
    EngineError::not_found(format!("no request with id '{id}'"))
        .with_remedy("list waiting requests with: creddy pending")
}

/// A request that is still waiting for a decision.
async fn open_request(state: &Engine, id: &str) -> Result<Enrollment, EngineError> {
    let typed = EnrollmentId::parse(id).ok_or_else(|| no_such_request(id))?;
    let request = state
        .store()
        .find_enrollment(&typed)
        .await?
        .ok_or_else(|| no_such_request(id))?;
    if request.status != EnrollmentStatus::Pending {
        return Err(EngineError::new(
            ErrorCode::Conflict,
            format!("request {id} is already {}", request.status),
        ));
    }
    Ok(request)
}

/// An agent never decides on its own amendment, whatever admin scopes it holds.
fn refuse_own_amendment(principal: &Principal, request: &Enrollment) -> Result<(), EngineError> {
    if request.kind == EnrollmentKind::Amendment
        && principal.agent_id().is_some()
        && principal.agent_id() == request.agent_id.as_deref()
    {
        return Err(EngineError::forbidden(format!(
            "request {} is this agent's own amendment; an agent cannot decide on it",
            request.id
        ))
        .with_remedy("another admin, or the local admin, must approve or reject it"));
    }
    Ok(())
}

/// What an approval did.
#[derive(Debug)]
pub(crate) struct Approved {
    /// An enrollment or an amendment.
    pub(crate) kind: EnrollmentKind,
    /// The agent created or amended.
    pub(crate) agent_id: String,
    /// Its name.
    pub(crate) name: String,
    /// Its scopes now.
    pub(crate) scopes: Vec<String>,
}

/// Approves a waiting request, optionally with other scopes: the principal may grant only
/// what its own grants cover and never decides its own amendment. An enrollment creates the
/// agent (credentials at pickup); an amendment merges the scopes into the agent's.
pub(crate) async fn approve(
    state: &Engine,
    principal: &Principal,
    origin: &Origin,
    id: &str,
    scopes: Option<Vec<String>>,
) -> Result<Approved, EngineError> {
    principal.require_admin("admin:enrollments:write")?;
    let request = open_request(state, id).await?;
    refuse_own_amendment(principal, &request)?;
    let chosen = scopes.unwrap_or_else(|| request.scopes.clone());
    if chosen.is_empty() || chosen.len() > crate::engine::enrollment::MAX_REQUESTED {
        return Err(EngineError::invalid_request("approve with 1 to 64 scopes"));
    }
    let grants = Grants::parse(&chosen)
        .map_err(|e| EngineError::new(ErrorCode::InvalidScope, e.to_string()))?;
    principal.require_grantable(&grants)?;
    let now = state.clock().now();
    let actor = principal.actor();
    let decided_by = principal.decider();
    let (agent_id, final_scopes) = if request.kind == EnrollmentKind::Amendment {
        let agent_id = request.agent_id.clone().unwrap_or_default();
        let added = grants.to_strings();
        let request_id = id.to_owned();
        let origin = origin.clone();
        let merged =
            state
                .store()
                .approve_amendment(
                    &request.id,
                    &AgentId::from_stored(agent_id.clone()),
                    &added,
                    &decided_by,
                    now,
                    |merged| {
                        vec![AuditEvent::new(Action::AmendmentApproved, actor, now)
                    .about_agent(&agent_id, &request.name)
                    .from_request(origin.ip, origin.request_id)
                    .with_details(json!({"request": request_id, "added": added, "scopes": merged}))]
                    },
                )
                .await?;
        (agent_id, merged)
    } else {
        let name = AgentName::parse(&request.name)
            .map_err(|e| EngineError::new(ErrorCode::Internal, e.to_string()))?;
        let policy = admitting_policy(state, name.as_str()).await?;
        let (agent, _unused_until_pickup) =
            admitted_agent(name, grants, None, policy.as_ref(), now);
        let mut events = approval_events(&agent, id, actor, now);
        if let Some(first) = events.first_mut() {
            *first = first
                .clone()
                .from_request(origin.ip.clone(), origin.request_id.clone());
        }
        let pickup_by = now.plus_seconds(state.settings().enrollment.pickup_ttl);
        state
            .store()
            .approve_enrollment(&request.id, &agent, &decided_by, pickup_by, &events)
            .await
            .map_err(|e| match e {
                StoreError::NameTaken => name_taken(agent.name.as_str()),
                other => other.into(),
            })?;
        (agent.id.to_string(), agent.scopes.to_strings())
    };
    tracing::info!(request = %id, agent = %request.name, "request approved");
    Ok(Approved {
        kind: request.kind,
        agent_id,
        name: request.name,
        scopes: final_scopes,
    })
}

/// Rejects a waiting request with a reason (bounded, `error::check_reason`), audited.
pub(crate) async fn reject(
    state: &Engine,
    principal: &Principal,
    origin: &Origin,
    id: &str,
    reason: Option<String>,
) -> Result<(), EngineError> {
    principal.require_admin("admin:enrollments:write")?;
    let request = open_request(state, id).await?;
    refuse_own_amendment(principal, &request)?;
    let reason = reason.unwrap_or_else(|| "rejected by an admin".to_owned());
    crate::engine::error::check_reason(&reason)?;
    let now = state.clock().now();
    let action = if request.kind == EnrollmentKind::Amendment {
        Action::AmendmentRejected
    } else {
        Action::EnrollmentRejected
    };
    let event = AuditEvent::new(action, principal.actor(), now)
        .from_request(origin.ip.clone(), origin.request_id.clone())
        .with_outcome(Outcome::Denied)
        .with_details(json!({"request": id, "name": request.name, "reason": reason}));
    if !state
        .store()
        .close_enrollment(
            &request.id,
            EnrollmentStatus::Rejected,
            Some(&reason),
            &principal.decider(),
            now,
            &[event],
        )
        .await?
    {
        return Err(EngineError::new(
            ErrorCode::Conflict,
            format!("request {id} was already decided"),
        ));
    }
    tracing::info!(request = %id, "request rejected");
    Ok(())
}

/// What a scope request came to.
#[derive(Debug)]
pub(crate) enum Amended {
    /// A policy refused it.
    Rejected {
        /// The request.
        id: String,
        /// The policy's reason.
        reason: String,
    },
    /// It waits for an admin.
    Pending {
        /// The request.
        id: String,
    },
    /// A policy approved it; the agent's scopes now.
    Approved {
        /// The request.
        id: String,
        /// Every scope the agent holds now.
        scopes: Vec<String>,
    },
}

/// An agent asks for more scopes (rate-limited per agent, bounded open requests per agent);
/// the policies decide as for an enrollment.
pub(crate) async fn amend(
    state: &Engine,
    agent: &Agent,
    origin: &Origin,
    scopes: &[String],
) -> Result<Amended, EngineError> {
    if let Some(trust) = &agent.trust {
        return Err(EngineError::forbidden(format!(
            "agent '{}' is federated by trust '{trust}': its scopes come from the trust",
            agent.name
        ))
        .with_remedy("change the scopes of the [[trust]] table in the server's configuration"));
    }
    state.request_limiter().admit(
        agent.id.as_str(),
        state.clock().now(),
        "scope requests from this agent",
    )?;
    let scopes = requested_scopes(state, scopes).await?;
    let texts: Vec<String> = scopes.iter().map(ToString::to_string).collect();
    let now = state.clock().now();
    let id = EnrollmentId::generate(now);
    let decided = decide(state, &agent.name, &scopes, agent.policy.as_deref(), now).await?;
    let actor = Actor::agent(agent.id.as_str(), &agent.name);
    let mut events = vec![
        AuditEvent::new(Action::AmendmentRequested, actor, now)
            .about_agent(agent.id.as_str(), &agent.name)
            .from_request(origin.ip.clone(), origin.request_id.clone())
            .with_details(json!({"request": id, "scopes": texts})),
        decided.event(now, &agent.name, id.as_str()),
    ];
    let (status, reason) = match &decided.verdict {
        Verdict::Rejected(r) => (EnrollmentStatus::Rejected, Some(r.clone())),
        Verdict::Pending(r) => (EnrollmentStatus::Pending, Some(r.clone())),
        Verdict::Approve => (EnrollmentStatus::Pending, None),
    };
    if let Verdict::Rejected(r) = &decided.verdict {
        events.push(
            AuditEvent::new(Action::AmendmentRejected, Actor::system(), now)
                .about_agent(agent.id.as_str(), &agent.name)
                .with_outcome(Outcome::Denied)
                .with_details(json!({"request": id, "reason": r})),
        );
    }
    let new = NewEnrollment {
        id: id.clone(),
        kind: EnrollmentKind::Amendment,
        name: agent.name.clone(),
        agent_id: Some(agent.id.to_string()),
        scopes: texts.clone(),
        status,
        policy: decided
            .policy
            .as_ref()
            .map(|p| p.name.clone())
            .or(agent.policy.clone()),
        reason: reason.clone(),
        ip: origin.ip.clone(),
        secret_hash: None,
        created_at: now,
        expires_at: now.plus_seconds(state.settings().enrollment.pending_ttl),
        decided_by: (status == EnrollmentStatus::Rejected).then_some("policy"),
    };
    state
        .store()
        .request_enrollment(
            &new,
            None,
            state.settings().enrollment.max_open_amendments,
            &events,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => EngineError::rate_limited(m, 60).with_remedy(
                "wait until an admin has decided on this agent's waiting requests (creddy status lists them)",
            ),
            other => other.into(),
        })?;
    match decided.verdict {
        Verdict::Rejected(reason) => Ok(Amended::Rejected {
            id: id.to_string(),
            reason,
        }),
        Verdict::Pending(_) => Ok(Amended::Pending { id: id.to_string() }),
        Verdict::Approve => {
            let policy = new.policy.clone();
            let all = state
                .store()
                .approve_amendment(&id, &agent.id, &texts, "policy", now, |all| {
                    vec![
                        AuditEvent::new(Action::AmendmentApproved, Actor::system(), now)
                            .about_agent(agent.id.as_str(), &agent.name)
                            .with_details(json!({"request": id, "added": texts, "scopes": all, "policy": policy})),
                    ]
                })
                .await?;
            Ok(Amended::Approved {
                id: id.to_string(),
                scopes: all,
            })
        }
    }
}

/// An enrollment's fate, as its requester polls it.
#[derive(Debug)]
pub(crate) enum Polled {
    /// Still waiting.
    Pending {
        /// The request.
        id: String,
        /// The agent name.
        name: String,
        /// The decision deadline.
        expires_at: Timestamp,
    },
    /// Approved: the credentials, handed out now and never again.
    PickedUp(Box<Pickup>),
    /// Refused.
    Rejected {
        /// The request.
        id: String,
        /// Why.
        reason: Option<String>,
    },
    /// Undecided, or not picked up, in time.
    Expired {
        /// The request.
        id: String,
    },
}

/// The fate of the enrollment whose poll secret is `secret`; an approved one's credentials
/// are generated and handed out on the first poll after the approval (410 afterwards).
pub(crate) async fn poll(engine: &Engine, secret: Option<&str>) -> Result<Polled, EngineError> {
    let unknown = || {
        EngineError::not_found("no enrollment with that secret")
            .with_remedy("enroll again: creddy enroll --name NAME --can SCOPE")
    };
    let secret = secret
        .and_then(|s| SecretToken::parse(TokenKind::EnrollmentSecret, s))
        .ok_or_else(unknown)?;
    let request = engine
        .store()
        .find_enrollment_by_secret(&secret.hash())
        .await?
        .ok_or_else(unknown)?;
    let now = engine.clock().now();
    let lapsed = request.expires_at <= now;
    let id = request.id.to_string();
    Ok(match request.status {
        EnrollmentStatus::Pending if !lapsed => Polled::Pending {
            id,
            name: request.name,
            expires_at: request.expires_at,
        },
        EnrollmentStatus::Approved if !lapsed => {
            Polled::PickedUp(Box::new(pick_up(engine, &request, now).await?))
        }
        EnrollmentStatus::Claimed => {
            return Err(EngineError::new(
                ErrorCode::EnrollmentClaimed,
                "the credentials of this enrollment were already picked up",
            )
            .with_remedy("they are handed out once; if they were lost, enroll again under another name or ask an admin"));
        }
        EnrollmentStatus::Rejected => Polled::Rejected {
            id,
            reason: request.reason,
        },
        _ => Polled::Expired { id },
    })
}

/// One of `agent`'s own scope requests; another agent's, or an enrollment, is not found.
pub(crate) async fn amendment_of(
    engine: &Engine,
    agent: &Agent,
    id: &str,
) -> Result<Enrollment, EngineError> {
    let typed = EnrollmentId::parse(id).ok_or_else(|| no_such_request(id))?;
    engine
        .store()
        .find_enrollment(&typed)
        .await?
        .filter(|r| {
            r.kind == EnrollmentKind::Amendment && r.agent_id.as_deref() == Some(agent.id.as_str())
        })
        .ok_or_else(|| no_such_request(id))
}

/// Requests waiting for a decision (`admin:enrollments:read`), oldest first.
pub(crate) async fn pending(
    engine: &Engine,
    principal: &Principal,
) -> Result<Vec<Enrollment>, EngineError> {
    principal.require_admin("admin:enrollments:read")?;
    Ok(engine.store().pending_enrollments().await?)
}

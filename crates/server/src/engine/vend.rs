//! Issuing a credential: authorise, size, intend, mint, commit.
//!
//! **A credential is returned to an agent only after its lease is durable**: the lease is
//! recorded `pending` before the plugin is called, and the credential leaves this module only
//! after the lease is `active` and its `credential.issued` event is committed. If that commit
//! fails, the new credential is revoked at once. If the plugin call timed out or the plugin
//! died mid-call, the lease stays `pending` for reconciliation, since a credential may exist.
//!
//! **Deny by default**: every requested scope must be covered by one of the agent's grants
//! and accepted by the plugin's `match_scope`.

use std::collections::BTreeMap;

use creddy_core::agent::Agent;
use creddy_core::audit::{Action, AuditEvent, Outcome};
use creddy_core::ids::LeaseId;
use creddy_core::origin::Origin;
use creddy_core::scope::Scope;
use creddy_core::secret::Secret;
use creddy_core::ttl::TtlInputs;
use creddy_core::{Duration, Timestamp};
use creddy_plugin::host::{HostError, PluginProcess};
use creddy_plugin::protocol::{AgentRef, Credential, EnvSource, GetCredentialParams};
use creddy_store::{Intent, NewLease};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::engine::error::{EngineError, ErrorCode};
use crate::engine::state::Engine;

/// The most scopes one request may name.
pub const MAX_REQUESTED_SCOPES: usize = 16;

/// The context under which a lease's revocation handle is sealed.
pub fn external_id_context(lease_id: &str) -> String {
    format!("lease-external-id:{lease_id}")
}

/// What the agent asked for (the API's request: a TTL and narrower scopes).
pub(crate) use creddy_api::credentials::VendRequest;

/// The issued credential, for the agent.
#[derive(Debug)]
pub(crate) struct Issued {
    /// The lease.
    pub(crate) id: String,
    /// The backend.
    pub(crate) backend: String,
    /// The credential.
    pub(crate) token: Secret<String>,
    /// Its end.
    pub(crate) expires_at: Timestamp,
    /// Its lifetime, as a duration (`1h`).
    pub(crate) ttl: String,
    /// Its lifetime in seconds.
    pub(crate) ttl_seconds: u64,
    /// Its scopes.
    pub(crate) scopes: Vec<String>,
    /// What the plugin reports about it.
    pub(crate) metadata: BTreeMap<String, String>,
    /// Environment variables for a program that uses it.
    pub(crate) env: BTreeMap<String, Secret<String>>,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// `scope` with its first segment (the backend's name) replaced by the plugin's name.
fn for_plugin(scope: &str, plugin: &str) -> String {
    match scope.split_once(':') {
        Some((_, rest)) => format!("{plugin}:{rest}"),
        None => plugin.to_owned(),
    }
}

/// The agent's grants that concern `backend`, as scopes of that backend (`*` becomes the
/// backend; a trailing `:*` is dropped).
fn default_scopes(agent: &Agent, backend: &str) -> Vec<String> {
    let mut scopes: Vec<String> = agent
        .scopes
        .as_slice()
        .iter()
        .filter_map(|grant| match grant.as_str() {
            "*" => Some(backend.to_owned()),
            g if grant.backend() == backend => Some(g.strip_suffix(":*").unwrap_or(g).to_owned()),
            _ => None,
        })
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

/// The grant `<default>:*` from which the default scope `default` was made, if the agent
/// holds it.
fn verbatim_grant(agent: &Agent, default: &str) -> Option<String> {
    let grant = format!("{default}:*");
    agent
        .scopes
        .as_slice()
        .iter()
        .any(|g| g.as_str() == grant)
        .then_some(grant)
}

/// The scopes of an authorised request.
struct Authorised {
    /// As the agent asked (backend-named), for the lease and the response.
    requested: Vec<String>,
    /// The plugin's normalised forms, plugin-named, for `get_credential`.
    for_plugin: Vec<String>,
    /// The agent's grants for this backend, plugin-named.
    grants: Vec<String>,
}

/// Checks each requested scope: grammar, backend, a covering grant, the plugin's consent.
async fn authorise(
    agent: &Agent,
    backend: &str,
    plugin: &str,
    process: &PluginProcess,
    requested: Vec<String>,
) -> Result<Authorised, EngineError> {
    if requested.len() > MAX_REQUESTED_SCOPES {
        return Err(EngineError::invalid_request(format!(
            "too many scopes ({}); at most {MAX_REQUESTED_SCOPES} per request",
            requested.len()
        )));
    }
    let grants = default_scopes(agent, backend);
    let defaulted = requested.is_empty();
    let requested = if defaulted { grants.clone() } else { requested };
    if requested.is_empty() {
        return Err(EngineError::new(
            ErrorCode::ScopeDenied,
            format!(
                "agent '{}' holds no scope for backend '{backend}'",
                agent.name
            ),
        )
        .with_remedy(format!(
            "ask an admin for a '{backend}' scope (creddy request --can {backend})"
        )));
    }
    let mut for_plugin_scopes = Vec::new();
    let mut chosen = Vec::new();
    for asked in &requested {
        let scope = Scope::parse(asked)
            .map_err(|e| EngineError::new(ErrorCode::InvalidScope, e.to_string()))?;
        if scope.backend() != backend {
            return Err(EngineError::new(
                ErrorCode::InvalidScope,
                format!("scope '{scope}' is not a scope of backend '{backend}'"),
            ));
        }
        if !agent.scopes.covers(&scope) {
            return Err(EngineError::new(
                ErrorCode::ScopeDenied,
                format!("agent '{}' holds no grant covering '{scope}'", agent.name),
            )
            .with_remedy("request it with: creddy request --can SCOPE"));
        }
        let mut text = asked.clone();
        let mut verdict = process.match_scope(&for_plugin(&text, plugin)).await?;
        // A default scope whose `:*` was dropped may mean nothing to the plugin
        // (`daytona:org:*` → `daytona:org`); then the grant itself is asked for, which covers
        // itself and which the plugin defines (`daytona:org:*` acts as `daytona`, §10.3).
        if defaulted
            && !verdict.matches
            && let Some(grant) = verbatim_grant(agent, &text)
        {
            verdict = process.match_scope(&for_plugin(&grant, plugin)).await?;
            text = grant;
        }
        if !verdict.matches {
            return Err(EngineError::new(
                ErrorCode::InvalidScope,
                format!("backend '{backend}' does not support the scope '{text}'"),
            )
            .with_remedy(format!(
                "see the scopes of its plugin: creddy plugin info {plugin}"
            )));
        }
        for_plugin_scopes.push(verdict.normalized);
        chosen.push(text);
    }
    Ok(Authorised {
        requested: chosen,
        for_plugin: for_plugin_scopes,
        grants: grants.iter().map(|g| for_plugin(g, plugin)).collect(),
    })
}

/// The TTL for the request, by the rules of [`creddy_core::ttl`].
fn choose_ttl(
    state: &Engine,
    agent: &Agent,
    backend: &str,
    process: &PluginProcess,
    requested: Option<&str>,
    now: Timestamp,
) -> Result<u64, EngineError> {
    let invalid = |message: String| {
        EngineError::new(ErrorCode::InvalidTtl, message)
            .with_remedy("use a duration such as 30m, 1h or 2h30m within the allowed range")
    };
    let requested = requested
        .map(|t| Duration::parse(t).map_err(|e| invalid(format!("invalid TTL: {e}"))))
        .transpose()?;
    let constraints = process.started().constraints;
    let ttl = &state.settings().ttl;
    let inputs = TtlInputs {
        plugin_min: constraints.min_ttl,
        plugin_max: constraints.max_ttl,
        plugin_default: constraints.default_ttl,
        server_min: ttl.min,
        server_max: ttl.max_for(backend),
        server_default: ttl.default,
        policy_max: agent.policy.as_ref().and_then(|name| {
            let policies = state.policies();
            let max = policies
                .named(name)
                .and_then(creddy_core::policy::Policy::max_ttl)?;
            Some((name.clone(), max))
        }),
        agent_remaining: agent.expires_at.map(|at| at.seconds_since(now)),
        trust_max: trust_max(state, agent)?,
    };
    inputs
        .range()
        .choose(requested, backend)
        .map_err(|e| invalid(e.to_string()))
}

/// The `max_ttl` of the trust that admitted a federated agent (§18); a trust no longer in
/// the configuration admits nothing more, so its agents can no longer vend.
fn trust_max(state: &Engine, agent: &Agent) -> Result<Option<(String, u64)>, EngineError> {
    let Some(name) = &agent.trust else {
        return Ok(None);
    };
    let trusts = state.trusts();
    let trust = trusts
        .all()
        .iter()
        .find(|t| t.name == *name)
        .ok_or_else(|| {
            EngineError::forbidden(format!(
            "agent '{}' was admitted by trust '{name}', which the configuration no longer holds",
            agent.name
        ))
        .with_remedy("restore the [[trust]] table, or give the workload an agent of its own")
        })?;
    Ok(Some((trust.name.clone(), trust.max_ttl)))
}

/// Records `credential.denied` for a vend refused by a rule (scope, TTL, quota, backend,
/// organisation): the requested scopes and TTL, the code and message (which never hold a
/// secret). Rate-limit refusals are not recorded one by one, so a flood cannot fill the
/// trail; a failure to record is logged and does not change the answer.
async fn record_denial(
    state: &Engine,
    agent: &Agent,
    backend: &str,
    asked: &VendRequest,
    refusal: &EngineError,
    context: &Origin,
) {
    let recorded = matches!(
        refusal.code,
        ErrorCode::ScopeDenied
            | ErrorCode::InvalidScope
            | ErrorCode::InvalidTtl
            | ErrorCode::QuotaExceeded
            | ErrorCode::OrgNotConfigured
            | ErrorCode::BackendNotFound
            | ErrorCode::UnknownBackend
    );
    if !recorded {
        return;
    }
    let event = AuditEvent::new(
        Action::CredentialDenied,
        creddy_core::audit::Actor::agent(agent.id.as_str(), &agent.name),
        state.clock().now(),
    )
    .about_agent(agent.id.as_str(), &agent.name)
    .about_lease(backend, None)
    .with_outcome(Outcome::Denied)
    .from_request(context.ip.clone(), context.request_id.clone())
    .with_details(json!({
        "scopes": asked.scopes,
        "ttl": asked.ttl,
        "code": refusal.code,
        "reason": refusal.message,
    }));
    if let Err(e) = state.store().record_event(&event).await {
        tracing::warn!(error = %e, "credential.denied could not be recorded");
    }
}

/// Issues a credential of `backend` to `agent`.
/// [`vend`], with what every vend leaves behind: a refusal's audit record and the issue
/// metrics (duration, and the outcome: `success`, `denied` for a refusal of the request,
/// `failure` otherwise) of a configured backend.
pub(crate) async fn vend_recorded(
    engine: &Engine,
    agent: &Agent,
    backend: &str,
    request: VendRequest,
    origin: &Origin,
) -> Result<Issued, EngineError> {
    let started = std::time::Instant::now();
    let asked = request.clone();
    let issued = vend(engine, agent, backend, request, origin.clone()).await;
    if let Err(refusal) = &issued {
        record_denial(engine, agent, backend, &asked, refusal, origin).await;
    }
    if engine.backends().get(backend).is_some() {
        let outcome = match &issued {
            Ok(_) => "success",
            Err(e) if e.code.is_refusal() => "denied",
            Err(_) => "failure",
        };
        engine.metrics().observe(
            crate::engine::metrics::ISSUE_DURATION,
            &[("backend", backend)],
            started.elapsed(),
        );
        engine.metrics().count(
            crate::engine::metrics::CREDENTIALS_ISSUED,
            &[("backend", backend), ("outcome", outcome)],
        );
    }
    issued
}

pub(crate) async fn vend(
    state: &Engine,
    agent: &Agent,
    backend: &str,
    request: VendRequest,
    context: Origin,
) -> Result<Issued, EngineError> {
    state.vend_limiter().admit(
        agent.id.as_str(),
        state.clock().now(),
        "credential requests from this agent",
    )?;
    let live = state.backends().get(backend).ok_or_else(|| {
        EngineError::new(
            ErrorCode::BackendNotFound,
            format!("no backend named '{backend}'"),
        )
        .with_remedy("check the name; an admin lists backends with: creddy backend ls")
    })?;
    let process = live.process.as_ref().map_err(|reason| {
        tracing::error!(%backend, %reason, "vend refused: backend not available");
        EngineError::new(
            ErrorCode::PluginUnavailable,
            format!("backend '{backend}' is not available"),
        )
        .with_remedy("retry later; an admin can check creddy backend ls and the server log")
    })?;
    let scopes = authorise(agent, backend, &live.plugin, process, request.scopes).await?;
    let now = state.clock().now();
    let ttl = choose_ttl(state, agent, backend, process, request.ttl.as_deref(), now)?;
    let lease_id = LeaseId::generate(now);
    let lease = NewLease {
        id: lease_id.clone(),
        agent_id: agent.id.to_string(),
        agent_name: agent.name.clone(),
        backend: backend.to_owned(),
        scopes: scopes.requested.clone(),
        ttl_seconds: ttl,
        created_at: now,
        expires_at: now.plus_seconds(ttl),
    };
    match state
        .store()
        .create_lease(&lease, state.settings().max_active_leases_per_agent)
        .await?
    {
        Intent::Recorded => {}
        Intent::QuotaReached(open) => {
            return Err(EngineError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "agent '{}' already holds {open} open credentials, the most allowed",
                    agent.name
                ),
            )
            .with_retry_after(60)
            .with_remedy(
                "revoke credentials you no longer need (creddy revoke ID) or wait for them to expire",
            ));
        }
        Intent::AgentGone => {
            return Err(EngineError::unauthorized(format!(
                "agent '{}' was removed",
                agent.name
            )));
        }
        Intent::BackendUnavailable => {
            return Err(EngineError::new(
                ErrorCode::BackendNotFound,
                format!("backend '{backend}' is being removed"),
            )
            .with_remedy("an admin lists backends with: creddy backend ls"));
        }
    }
    let params = GetCredentialParams {
        agent: AgentRef {
            id: agent.id.to_string(),
            name: agent.name.clone(),
            scopes: scopes.grants,
        },
        scopes: scopes.for_plugin,
        ttl,
        lease_id: lease_id.to_string(),
        parameters: BTreeMap::new(),
    };
    let credential = match process.get_credential(&params).await {
        Ok(c) => c,
        Err(e) => return Err(record_failure(state, agent, &lease, &context, e).await),
    };
    commit(state, agent, &lease, credential, process, &context).await
}

/// Records a failed mint (unless a credential may exist) and maps the error.
async fn record_failure(
    state: &Engine,
    agent: &Agent,
    lease: &NewLease,
    context: &Origin,
    error: HostError,
) -> EngineError {
    let credential_may_exist = matches!(
        error,
        HostError::Timeout { .. } | HostError::Unavailable(_) | HostError::Protocol(_)
    );
    if credential_may_exist {
        tracing::warn!(lease = %lease.id, %error, "mint outcome unknown; the lease stays pending for reconciliation");
        return error.into();
    }
    let kind = match &error {
        HostError::Plugin { kind, .. } => serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned)),
        _ => None,
    };
    let event = AuditEvent::new(
        Action::CredentialFailed,
        creddy_core::audit::Actor::agent(agent.id.as_str(), &agent.name),
        state.clock().now(),
    )
    .about_agent(agent.id.as_str(), &agent.name)
    .about_lease(&lease.backend, Some(lease.id.as_str()))
    .with_outcome(Outcome::Failure)
    .from_request(context.ip.clone(), context.request_id.clone())
    .with_details(json!({"scopes": lease.scopes, "ttl": lease.ttl_seconds, "error_kind": kind}));
    if let Err(e) = state
        .store()
        .fail_lease(&lease.id, kind.as_deref().unwrap_or("error"), &event)
        .await
    {
        return e.into();
    }
    error.into()
}

/// Commits the lease, then hands out the credential; revokes it if the commit fails.
async fn commit(
    state: &Engine,
    agent: &Agent,
    lease: &NewLease,
    credential: Credential,
    process: &PluginProcess,
    context: &Origin,
) -> Result<Issued, EngineError> {
    let now = state.clock().now();
    let expires_at = Timestamp::parse_rfc3339(&credential.expires_at)
        .filter(|t| *t < lease.expires_at)
        .unwrap_or(lease.expires_at);
    let ttl_seconds = expires_at.seconds_since(lease.created_at).max(1);
    let value_sha256 = sha256_hex(credential.value.expose());
    let sealed = credential.external_id.as_deref().map(|id| {
        state
            .sealer()
            .seal(&external_id_context(lease.id.as_str()), id.as_bytes())
    });
    let mut event = AuditEvent::new(
        Action::CredentialIssued,
        creddy_core::audit::Actor::agent(agent.id.as_str(), &agent.name),
        now,
    )
    .about_agent(agent.id.as_str(), &agent.name)
    .about_lease(&lease.backend, Some(lease.id.as_str()))
    .from_request(context.ip.clone(), context.request_id.clone())
    .with_details(json!({
        "scopes": lease.scopes,
        "ttl": ttl_seconds,
        "expires_at": expires_at,
        "value_sha256": value_sha256,
        "external_id_sha256": credential.external_id.as_deref().map(sha256_hex),
    }));
    if let Some(workload) = &agent.workload {
        event.details["workload"] = (**workload).clone();
    }
    if let Err(e) = state
        .store()
        .activate_lease(
            &lease.id,
            sealed.as_deref(),
            &value_sha256,
            expires_at,
            &event,
        )
        .await
    {
        tracing::error!(lease = %lease.id, error = %e, "could not commit an issued credential; revoking it");
        let agent_ref = AgentRef {
            id: agent.id.to_string(),
            name: agent.name.clone(),
            scopes: vec![],
        };
        if let Err(revoke) = process
            .revoke_credential(credential.external_id.clone(), lease.id.as_str(), agent_ref)
            .await
        {
            tracing::error!(lease = %lease.id, error = %revoke, "revoking the uncommitted credential failed; the pending lease will be reconciled");
        }
        return Err(e.into());
    }
    tracing::info!(lease = %lease.id, backend = %lease.backend, agent = %agent.name, ttl = ttl_seconds, "credential issued");
    let env = credential
        .env
        .iter()
        .filter_map(|var| {
            let value = match var.source {
                EnvSource::Value => Some(credential.value.expose().clone()),
                EnvSource::Metadata => var
                    .key
                    .as_ref()
                    .and_then(|k| credential.metadata.get(k).cloned()),
            };
            value.map(|v| (var.name.clone(), Secret::new(v)))
        })
        .collect();
    Ok(Issued {
        id: lease.id.to_string(),
        backend: lease.backend.clone(),
        ttl: Duration::from_seconds(ttl_seconds)
            .map(|d| d.to_string())
            .unwrap_or_default(),
        ttl_seconds,
        expires_at,
        scopes: lease.scopes.clone(),
        metadata: credential.metadata.clone(),
        env,
        token: credential.value,
    })
}

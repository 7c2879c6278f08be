//! The token exchange (§18, RFC 8693): a job's OIDC token for a creddy access token, with
//! no creddy secret.
//!
//! The subject token must be admitted by a `[[trust]]` ([`crate::engine::federation`]); its
//! federated agent is then created or refreshed (named by the trust's template, granted the
//! trust's scopes, living at least the access token's life plus `max_ttl` so that what it
//! vends may run its full TTL) in one transaction with `agent.federated`, and an access
//! token narrowed to the requested scope is signed as for client credentials, carrying the
//! workload (trust, `iss`, `sub`, bound claims). Every refusal is audited as `auth.failed`
//! with the trust and the claim that failed, never the token.

use creddy_core::Duration;
use creddy_core::agent::NewAgent;
use creddy_core::audit::{Action, Actor, AuditEvent, Outcome};
use creddy_core::origin::Origin;
use serde_json::{Value, json};

use crate::engine::error::EngineError;
use crate::engine::federation::Admission;
use crate::engine::state::Engine;
use crate::engine::tokens::{self, Asked, Refusal, Tokens};

/// `grant_type` of a token exchange.
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The subject token types accepted.
const SUBJECT_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];
/// `issued_token_type` of the answer.
pub(crate) const ISSUED_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A token exchange request.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// The job's OIDC token.
    pub(crate) subject_token: String,
    /// Its type.
    pub(crate) subject_token_type: Option<String>,
    /// Space-separated scopes to narrow the access token to.
    pub(crate) scope: Option<String>,
    /// The access token's audience; the issuer when absent.
    pub(crate) audience: Option<String>,
}

/// Why no token was issued, as RFC 6749 and 8693 name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExchangeRefusal {
    /// The request itself is wrong (`invalid_request`).
    InvalidRequest(&'static str),
    /// The subject token is refused (`invalid_grant`): what failed, and the remedy.
    InvalidGrant(String),
    /// As for client credentials (scope, rate limit, expiry).
    Token(Refusal),
}

/// Exchanges the job's token for an access token of its federated agent, or says why not.
pub(crate) async fn exchange(
    engine: &Engine,
    origin: &Origin,
    request: Exchange,
) -> Result<Result<Tokens, ExchangeRefusal>, EngineError> {
    if !request
        .subject_token_type
        .as_deref()
        .is_some_and(|t| SUBJECT_TYPES.contains(&t))
    {
        return Ok(Err(ExchangeRefusal::InvalidRequest(
            "subject_token_type must be urn:ietf:params:oauth:token-type:jwt or …:id_token",
        )));
    }
    let trusts = engine.trusts();
    let now = engine.clock().now();
    let admission = match engine
        .federation()
        .admit(&trusts, &request.subject_token, now)
        .await
    {
        Ok(admission) => admission,
        Err(refusal) => {
            let details = json!({
                "grant": "token-exchange",
                "trust": refusal.trust(),
                "claim": refusal.claim(),
                "reason": refusal.to_string(),
            });
            engine
                .record_auth_failure_with(origin.ip.clone(), details)
                .await;
            return Ok(Err(ExchangeRefusal::InvalidGrant(refusal.to_string())));
        }
    };
    let trust = &admission.trust;
    let workload = workload(&admission);
    let Some(agent) = federate(engine, origin, &admission, &workload).await? else {
        let problem = format!(
            "trust '{}': the agent name '{}' belongs to an agent this trust did not admit; change the trust's agent template",
            trust.name, admission.agent
        );
        let details = json!({"grant": "token-exchange", "trust": trust.name, "claim": "agent",
            "reason": problem});
        engine
            .record_auth_failure_with(origin.ip.clone(), details)
            .await;
        return Ok(Err(ExchangeRefusal::InvalidGrant(problem)));
    };
    let asked = Asked {
        scope: request.scope.as_deref(),
        audience: request.audience.as_deref(),
    };
    if let Err(limited) = tokens::within_rate(engine, &agent) {
        return Ok(Err(ExchangeRefusal::Token(limited)));
    }
    let (tokens, event) = match tokens::sign_for(
        engine,
        origin,
        &agent,
        &asked,
        trust.token_ttl,
        Some(&workload),
    )? {
        Ok(signed) => signed,
        Err(refusal) => return Ok(Err(ExchangeRefusal::Token(refusal))),
    };
    tokens::record_issued(engine, &event, None).await?;
    Ok(Ok(tokens))
}

/// The workload an admission stands for, as the access token and the audit carry it.
fn workload(admission: &Admission) -> Value {
    json!({
        "trust": admission.trust.name,
        "iss": admission.issuer,
        "sub": admission.subject,
        "claims": admission.claims,
    })
}

/// Creates or refreshes the admission's federated agent (once more if a concurrent exchange
/// created it first); `None` when its name belongs to an agent the trust did not admit.
async fn federate(
    engine: &Engine,
    origin: &Origin,
    admission: &Admission,
    workload: &Value,
) -> Result<Option<creddy_core::agent::Agent>, EngineError> {
    let trust = &admission.trust;
    let now = engine.clock().now();
    let lifetime = Duration::from_seconds(trust.token_ttl.saturating_add(trust.max_ttl));
    for _ in 0..2 {
        let (mut new, _unused_secrets) =
            NewAgent::prepare(admission.agent.clone(), trust.scopes.clone(), lifetime, now);
        new.trust = Some(trust.name.clone());
        let event = AuditEvent::new(Action::AgentFederated, Actor::system(), now)
            .with_outcome(Outcome::Success)
            .from_request(origin.ip.clone(), origin.request_id.clone())
            .with_details(workload.clone());
        match engine.store().federate_agent(&new, &event).await {
            Ok(agent) => return Ok(Some(agent)),
            Err(creddy_store::StoreError::NameTaken) => {
                // A concurrent first exchange may have created it: read it as it is now.
                if engine
                    .store()
                    .find_agent_by_name(admission.agent.as_str())
                    .await?
                    .is_some_and(|a| a.trust.as_deref() == Some(trust.name.as_str()))
                {
                    continue;
                }
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

//! Who is calling: a bearer token turned into a [`Principal`] (front ends read it from
//! where they carry it; HTTP from `Authorization: Bearer`, in `http::auth`).
//!
//! The token is the local admin token (`cka_…`, all admin scopes), an agent's vend token
//! (`ckr_…`) or an OIDC access token. Tokens are looked up by their SHA-256 and the stored
//! hash is compared in constant time. An agent past its lifetime is refused at once, before
//! the background task gets round to removing it.

use creddy_core::agent::Agent;
use creddy_core::audit::Actor;
use creddy_core::scope::{Grants, Scope};
use creddy_core::secret::{SecretToken, TokenKind};

use crate::engine::error::{EngineError, ErrorCode};
use crate::engine::state::Engine;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    /// The holder of this node's local admin token.
    LocalAdmin,
    /// An agent, authenticated by its vend token.
    Agent(Agent),
}

impl Principal {
    /// The audit actor for this caller.
    pub(crate) fn actor(&self) -> Actor {
        match self {
            Principal::LocalAdmin => Actor::local_admin(),
            Principal::Agent(a) => Actor::agent(a.id.as_str(), &a.name),
        }
    }

    /// Succeeds when the caller holds the admin scope `needed` (the local admin holds all).
    pub(crate) fn require_admin(&self, needed: &'static str) -> Result<(), EngineError> {
        let allowed = match self {
            Principal::LocalAdmin => true,
            Principal::Agent(agent) => {
                Scope::parse(needed).is_ok_and(|scope| agent.scopes.covers(&scope))
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(
                EngineError::forbidden(format!("this route needs the admin scope '{needed}'"))
                    .with_remedy(format!(
                        "use the local admin token, or an agent granted '{needed}' by an admin"
                    )),
            )
        }
    }

    /// Succeeds when the caller may grant every scope of `granted`: the local admin may
    /// grant anything, an agent only scopes that its own grants cover (through the one
    /// matcher, the granted pattern read as a requested scope). So `admin:agents:write`
    /// cannot mint `admin:*`, nor `daytona` mint `*`.
    pub(crate) fn require_grantable(&self, granted: &Grants) -> Result<(), EngineError> {
        let Principal::Agent(agent) = self else {
            return Ok(());
        };
        let beyond: Vec<&str> = granted
            .as_slice()
            .iter()
            .filter(|scope| !agent.scopes.covers(scope))
            .map(Scope::as_str)
            .collect();
        if beyond.is_empty() {
            return Ok(());
        }
        Err(EngineError::forbidden(format!(
            "agent '{}' cannot grant scopes it does not hold itself: {}",
            agent.name,
            beyond.join(", ")
        ))
        .with_remedy("ask the local admin, or an agent whose grants cover these scopes"))
    }

    /// The agent's id, when the caller is an agent.
    pub(crate) fn agent_id(&self) -> Option<&str> {
        match self {
            Principal::LocalAdmin => None,
            Principal::Agent(agent) => Some(agent.id.as_str()),
        }
    }

    /// Who decided, as recorded on a request: `local_admin` or the agent's id.
    pub(crate) fn decider(&self) -> String {
        self.agent_id().unwrap_or("local_admin").to_owned()
    }

    /// The agent behind the call, for agent routes; the admin token is not an agent.
    pub(crate) fn into_agent(self) -> Result<Agent, EngineError> {
        match self {
            Principal::Agent(agent) => Ok(agent),
            Principal::LocalAdmin => Err(EngineError::forbidden(
                "this route is for agents; the admin token is not an agent",
            )
            .with_remedy("call it with an agent's vend token (CREDDY_TOKEN)")),
        }
    }
}

/// The refusal of a bearer credential that is unknown, revoked or malformed.
pub(crate) fn token_rejected() -> EngineError {
    EngineError::unauthorized("the bearer token is unknown, revoked or malformed")
        .with_remedy("check CREDDY_TOKEN or CREDDY_ADMIN_TOKEN; an agent whose token was lost must be re-created or re-enrolled")
}

/// The caller holding `token`: the local admin token, an agent's vend token, or an OIDC
/// access token (a JWT).
pub(crate) async fn authenticate(state: &Engine, token: &str) -> Result<Principal, EngineError> {
    if token.split('.').count() == 3 {
        return authenticate_jwt(state, token).await.map(Principal::Agent);
    }
    match TokenKind::of(token) {
        Some(TokenKind::Admin) if state.is_admin_token(token) => Ok(Principal::LocalAdmin),
        Some(TokenKind::Vend) => {
            let token = SecretToken::parse(TokenKind::Vend, token).ok_or_else(token_rejected)?;
            authenticate_agent(state, &token)
                .await
                .map(Principal::Agent)
        }
        _ => Err(token_rejected()),
    }
}

/// An OIDC access token: it must pass every check of [`crate::engine::oidc::Keys::verify`], name an
/// agent that still exists and has not expired; the agent's scopes are narrowed to the
/// token's.
async fn authenticate_jwt(state: &Engine, token: &str) -> Result<Agent, EngineError> {
    let claims = state.keys().verify(state, token).await.map_err(|refusal| {
        tracing::info!(reason = <&str>::from(refusal), "access token refused");
        token_rejected()
    })?;
    let id = claims["agent_id"].as_str().unwrap_or_default();
    let mut agent = state
        .store()
        .find_agent_by_id(id)
        .await?
        .ok_or_else(token_rejected)?;
    check_lifetime(state, &agent)?;
    agent.scopes = narrowed_to_token(&agent.scopes, &claims["scopes"]);
    if agent.trust.is_some() {
        agent.workload = claims.get("workload").cloned().map(Box::new);
    }
    Ok(agent)
}

/// What an access token lets its agent do: the token's scopes that some grant the agent holds
/// now still covers (through the one matcher). A token narrowed to
/// `daytona:workspaces:read` on a `daytona` agent acts as `daytona:workspaces:read`; a grant
/// removed since issuance is gone from the token too.
fn narrowed_to_token(current: &Grants, token_scopes: &serde_json::Value) -> Grants {
    let narrowed: Vec<Scope> = token_scopes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .filter_map(|s| Scope::parse(s).ok())
        .filter(|s| current.covers(s))
        .collect();
    Grants::from_scopes(narrowed)
}

fn check_lifetime(state: &Engine, agent: &Agent) -> Result<(), EngineError> {
    let now = state.clock().now();
    if agent.is_expired(now) {
        return Err(EngineError::new(
            ErrorCode::AgentExpired,
            format!(
                "agent '{}' expired at {}",
                agent.name,
                agent.expires_at.unwrap_or(now)
            ),
        )
        .with_remedy("ask an admin for a new agent, or enroll again"));
    }
    Ok(())
}

async fn authenticate_agent(state: &Engine, token: &SecretToken) -> Result<Agent, EngineError> {
    let presented = token.hash();
    let (mut agent, stored) = state
        .store()
        .find_agent_by_token_hash(&presented)
        .await?
        .ok_or_else(token_rejected)?;
    if !stored.matches(&presented) {
        return Err(token_rejected());
    }
    check_lifetime(state, &agent)?;
    let now = state.clock().now();
    // The store records use at most once a minute; an agent read as used within the minute
    // needs no write at all (a busy agent's requests would otherwise each take the write
    // lock for nothing).
    let recently = agent
        .last_used
        .is_some_and(|at| now.as_millis() - at.as_millis() < creddy_store::TOUCH_EVERY_MILLIS);
    if !recently && state.store().touch_agent(&agent.id, now).await? {
        agent.last_used = Some(now);
    }
    Ok(agent)
}

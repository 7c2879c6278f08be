//! The token endpoint's decisions (§11): who the client is (its client id and secret, or its
//! name or id and vend token, hashes compared in constant time), whether it may have a token
//! now (expiry, rate limit), which scopes the token carries (narrowed through the one
//! matcher), and the signed access and ID tokens, each issue audited. The wire (forms, HTTP
//! Basic, RFC 6749 error bodies) stays in the HTTP layer.

use creddy_core::agent::Agent;
use creddy_core::audit::{Action, Actor, AuditEvent};
use creddy_core::origin::Origin;
use creddy_core::scope::Scope;
use creddy_core::secret::{SecretToken, TokenHash, TokenKind};
use serde_json::json;

use crate::engine::clients::Client;
use crate::engine::error::{EngineError, ErrorCode};
use crate::engine::state::Engine;

/// The most scopes one token request may name.
const MAX_REQUESTED_SCOPES: usize = 64;

/// A client-credentials grant.
#[derive(Debug)]
pub(crate) struct Grant {
    /// The client id, or the agent's name or id.
    pub(crate) client_id: String,
    /// The client secret, or the agent's vend token.
    pub(crate) secret: String,
    /// Space-separated scopes to narrow the token to (and `openid`).
    pub(crate) scope: Option<String>,
    /// The audience; the issuer when absent.
    pub(crate) audience: Option<String>,
}

/// Signed tokens for the client.
#[derive(Debug)]
pub(crate) struct Tokens {
    /// The access token (`typ: at+jwt`).
    pub(crate) access_token: String,
    /// The ID token.
    pub(crate) id_token: String,
    /// Seconds until they expire.
    pub(crate) expires_in: u64,
    /// The scopes granted, space-separated.
    pub(crate) scope: String,
}

/// Why no token was issued, as RFC 6749 names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Unknown client, wrong secret, or an expired agent.
    InvalidClient,
    /// A requested scope is malformed or not granted (the description says which).
    InvalidScope(&'static str),
    /// Too many token requests from this client: retry after this many seconds.
    RateLimited(u64),
}

/// Issues tokens for `grant`, or says why not; store and signing failures are errors.
///
/// A client authenticated from the cache is checked where its event is written: if the agent
/// changed or went away since it was cached, nothing is written, the entry is dropped, and
/// the grant is decided again from the store.
pub(crate) async fn issue(
    engine: &Engine,
    origin: &Origin,
    grant: Grant,
) -> Result<Result<Tokens, Refusal>, EngineError> {
    let mut counted = false;
    for from_cache in [true, false] {
        let Some(client) =
            authenticate_client(engine, &grant.client_id, &grant.secret, from_cache).await?
        else {
            engine
                .record_auth_failure(origin.ip.clone(), "client")
                .await;
            return Ok(Err(Refusal::InvalidClient));
        };
        // A request decided again from the store counts once against the rate.
        if !counted {
            counted = true;
            if let Err(limited) = within_rate(engine, &client.agent) {
                return Ok(Err(limited));
            }
        }
        let ttl = engine.settings().oidc.token_ttl;
        let asked = Asked {
            scope: grant.scope.as_deref(),
            audience: grant.audience.as_deref(),
        };
        let (tokens, event) = match sign_for(engine, origin, &client.agent, &asked, ttl, None)? {
            Ok(signed) => signed,
            // A refusal decided on a cached copy (a scope it lacked, an expiry) is decided
            // again on the agent as stored.
            Err(Refusal::InvalidScope(_) | Refusal::InvalidClient) if client.cached => {
                engine.clients().forget(&client.agent.client_id);
                continue;
            }
            Err(refusal) => return Ok(Err(refusal)),
        };
        if record_issued(engine, &event, client.version.as_ref()).await? {
            return Ok(Ok(tokens));
        }
        engine.clients().forget(&client.agent.client_id);
    }
    Err(EngineError::new(
        ErrorCode::Conflict,
        "the client changed while its token was being issued",
    )
    .with_remedy("retry the request"))
}

/// What a token request asks for: scopes to narrow to, an audience.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Asked<'a> {
    /// Space-separated scopes (and `openid`).
    pub(crate) scope: Option<&'a str>,
    /// The audience; the issuer when absent.
    pub(crate) audience: Option<&'a str>,
}

/// The signed tokens for `agent`, valid `ttl` seconds (never past the agent's end), and
/// their `token.issued` event, or why not (expiry, scopes; the caller counts the request
/// against the rate once: [`within_rate`]). `workload` is the federated identity the tokens
/// were exchanged for (§18), carried in the access token as `workload` so that what is done
/// with it can be traced to the job.
pub(crate) fn sign_for(
    engine: &Engine,
    origin: &Origin,
    agent: &Agent,
    asked: &Asked<'_>,
    ttl: u64,
    workload: Option<&serde_json::Value>,
) -> Result<Result<(Tokens, AuditEvent), Refusal>, EngineError> {
    let now = engine.clock().now();
    if agent.is_expired(now) {
        return Ok(Err(Refusal::InvalidClient));
    }
    let (granted, openid) = match narrowed(agent, asked.scope) {
        Ok(narrowed) => narrowed,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let issuer = engine.issuer().to_owned();
    let audience = asked.audience.unwrap_or(&issuer).to_owned();
    // A token never outlives its agent.
    let iat = now.as_millis() / 1000;
    let mut exp = iat + i64::try_from(ttl).unwrap_or(3_600);
    if let Some(end) = agent.expires_at {
        exp = exp.min(end.as_millis() / 1000);
    }
    let ttl = u64::try_from(exp - iat).unwrap_or(0);
    let mut jti = [0u8; 16];
    creddy_core::secret::fill_random(&mut jti);
    let jti = hex::encode(jti);
    let mut scope_text = granted.join(" ");
    if openid {
        scope_text = format!("openid {scope_text}").trim().to_owned();
    }
    let mut claims = json!({
        "iss": issuer, "sub": agent.id.as_str(), "aud": audience, "exp": exp, "iat": iat, "nbf": iat,
        "jti": jti, "client_id": agent.client_id, "agent_id": agent.id.as_str(), "agent_name": agent.name,
        "scope": scope_text, "scopes": granted,
    });
    if let Some(workload) = workload {
        claims["workload"] = workload.clone();
    }
    let id_claims = json!({
        "iss": issuer, "sub": agent.id.as_str(), "aud": audience, "exp": exp, "iat": iat,
        "auth_time": iat, "client_id": agent.client_id, "agent_id": agent.id.as_str(),
        "agent_name": agent.name,
    });
    let (Some(access_token), Some(id_token)) = (
        engine.keys().sign(&claims, "at+jwt"),
        engine.keys().sign(&id_claims, "JWT"),
    ) else {
        return Err(
            EngineError::new(ErrorCode::Internal, "no signing key is available")
                .with_remedy("retry later; the server log has the cause"),
        );
    };
    let mut event = AuditEvent::new(
        Action::TokenIssued,
        Actor::agent(agent.id.as_str(), &agent.name),
        now,
    )
    .about_agent(agent.id.as_str(), &agent.name)
    .from_request(origin.ip.clone(), origin.request_id.clone())
    .with_details(
        json!({"jti": jti, "scope": scope_text, "audience": audience, "expires_in": ttl}),
    );
    if let Some(workload) = workload {
        event.details["workload"] = workload.clone();
    }
    let tokens = Tokens {
        access_token,
        id_token,
        expires_in: ttl,
        scope: scope_text,
    };
    Ok(Ok((tokens, event)))
}

/// Counts one token request of `agent` against `limits.token_per_client`.
pub(crate) fn within_rate(engine: &Engine, agent: &Agent) -> Result<(), Refusal> {
    engine
        .token_limiter()
        .check(agent.id.as_str(), engine.clock().now())
        .map_err(Refusal::RateLimited)
}

/// Records a `token.issued` event and counts the token; with `version`, only if the agent
/// row still holds it (says whether it was recorded).
pub(crate) async fn record_issued(
    engine: &Engine,
    event: &AuditEvent,
    version: Option<&creddy_store::AgentVersion>,
) -> Result<bool, EngineError> {
    let recorded = match version {
        Some(version) => engine
            .store()
            .record_event_if_agent_is(event, version)
            .await?
            .is_some(),
        None => {
            engine.store().record_event(event).await?;
            true
        }
    };
    if recorded {
        engine
            .metrics()
            .count(crate::engine::metrics::TOKENS_ISSUED, &[]);
    }
    Ok(recorded)
}

/// The scopes a token for `agent` carries: all its grants when none are asked for, else
/// those asked for, each covered by a grant; and whether `openid` was asked for.
fn narrowed(agent: &Agent, asked: Option<&str>) -> Result<(Vec<String>, bool), Refusal> {
    let Some(asked) = asked.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok((agent.scopes.to_strings(), false));
    };
    let (mut granted, mut openid) = (Vec::new(), false);
    for item in asked.split_whitespace().take(MAX_REQUESTED_SCOPES) {
        if item == "openid" {
            openid = true;
            continue;
        }
        let scope = Scope::parse(item)
            .map_err(|_| Refusal::InvalidScope("a requested scope is malformed"))?;
        if !agent.scopes.covers(&scope) {
            return Err(Refusal::InvalidScope(
                "a requested scope is not granted to this client",
            ));
        }
        granted.push(item.to_owned());
    }
    Ok((granted, openid))
}

/// The agent whose client credentials these are: its client id and client secret (from the
/// cache when `from_cache` and it is there, else from the store, then cached), or its name or
/// id and vend token (always from the store). Hashes are compared in constant time.
async fn authenticate_client(
    engine: &Engine,
    id: &str,
    secret: &str,
    from_cache: bool,
) -> Result<Option<Authenticated>, EngineError> {
    if let Some(given) = SecretToken::parse(TokenKind::ClientSecret, secret) {
        let presented = engine.sealer().client_secret_hash(&given);
        if from_cache
            && let Some(client) = engine.clients().get(id)
            && client.secret_hash.matches(&presented)
        {
            return Ok(Some(Authenticated {
                agent: client.agent,
                version: Some(client.version),
                cached: true,
            }));
        }
        let Some((agent, stored, version)) =
            engine.store().find_agent_version_by_client_id(id).await?
        else {
            engine.clients().forget(id);
            return Ok(None);
        };
        if !stored.matches(&presented) {
            return Ok(None);
        }
        engine.clients().put(Client {
            agent: agent.clone(),
            secret_hash: stored,
            version: version.clone(),
        });
        return Ok(Some(Authenticated {
            agent,
            version: Some(version),
            cached: false,
        }));
    }
    if let Some(given) = SecretToken::parse(TokenKind::Vend, secret) {
        let presented: TokenHash = given.hash();
        if let Some((agent, stored)) = engine.store().find_agent_by_token_hash(&presented).await? {
            let named = agent.id.as_str() == id || agent.name.eq_ignore_ascii_case(id);
            return Ok(
                (named && stored.matches(&presented)).then_some(Authenticated {
                    agent,
                    version: None,
                    cached: false,
                }),
            );
        }
    }
    Ok(None)
}

/// An authenticated client: the agent, and the version it was read at when it may have come
/// from the cache (the token's event is then written only if it still holds).
struct Authenticated {
    agent: Agent,
    version: Option<creddy_store::AgentVersion>,
    /// Whether it came from the cache (a refusal is then decided again from the store).
    cached: bool,
}

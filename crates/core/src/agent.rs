//! Agents: the programs that hold scopes and ask for credentials.

use serde::Serialize;

use crate::ids::{AgentId, new_client_id};
use crate::names::AgentName;
use crate::scope::Grants;
use crate::secret::{SecretToken, TokenHash, TokenKind};
use crate::{Duration, Timestamp};

/// An agent as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Agent {
    /// `ag_<ULID>`.
    pub id: AgentId,
    /// The name as given at creation.
    pub name: String,
    /// What the agent may request.
    pub scopes: Grants,
    /// The policy that admitted the agent, if any.
    pub policy: Option<String>,
    /// The OIDC client id.
    pub client_id: String,
    /// When the agent was created.
    pub created_at: Timestamp,
    /// When the agent last authenticated (recorded at most once a minute).
    pub last_used: Option<Timestamp>,
    /// When the agent's lifetime ends, if it has one.
    pub expires_at: Option<Timestamp>,
    /// The `[[trust]]` that admitted it, for a federated agent (§18): it has no secret of
    /// its own and exists through its platform's tokens.
    pub trust: Option<String>,
    /// For a request made with an access token exchanged for a workload's token (§18): the
    /// workload it stands for (trust, `iss`, `sub`, bound claims), as the token carries it.
    /// Never stored; what is vended with it records it.
    pub workload: Option<Box<serde_json::Value>>,
}

impl Agent {
    /// True when the agent's lifetime has ended at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// What it takes to create an agent; the secrets themselves are returned once by
/// [`NewAgent::prepare`] and only their hashes are kept here.
#[derive(Debug, Clone)]
pub struct NewAgent {
    /// The new id.
    pub id: AgentId,
    /// The validated name.
    pub name: AgentName,
    /// The granted scopes.
    pub scopes: Grants,
    /// The admitting policy.
    pub policy: Option<String>,
    /// The OIDC client id.
    pub client_id: String,
    /// SHA-256 of the vend token.
    pub token_hash: TokenHash,
    /// SHA-256 of the OIDC client secret.
    pub client_secret_hash: TokenHash,
    /// Creation time.
    pub created_at: Timestamp,
    /// End of the agent's lifetime.
    pub expires_at: Option<Timestamp>,
    /// The admitting trust, for a federated agent.
    pub trust: Option<String>,
}

/// The secrets handed to a new agent exactly once.
#[derive(Debug)]
pub struct AgentSecrets {
    /// The vend token, `ckr_…`.
    pub token: SecretToken,
    /// The OIDC client secret, `cks_…`.
    pub client_secret: SecretToken,
}

impl NewAgent {
    /// Generates the id and the secrets for a new agent.
    pub fn prepare(
        name: AgentName,
        scopes: Grants,
        lifetime: Option<Duration>,
        now: Timestamp,
    ) -> (Self, AgentSecrets) {
        let secrets = AgentSecrets {
            token: SecretToken::generate(TokenKind::Vend),
            client_secret: SecretToken::generate(TokenKind::ClientSecret),
        };
        let agent = Self {
            id: AgentId::generate(now),
            name,
            scopes,
            policy: None,
            client_id: new_client_id(),
            token_hash: secrets.token.hash(),
            client_secret_hash: secrets.client_secret.hash(),
            created_at: now,
            expires_at: lifetime.map(|d| now.plus_seconds(d.as_seconds())),
            trust: None,
        };
        (agent, secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_agents_keep_only_hashes_and_expire_after_their_lifetime() {
        let now = Timestamp::from_millis(10_000);
        let name = AgentName::parse("ci").expect("valid");
        let lifetime = Duration::parse("4h").ok();
        let (agent, secrets) = NewAgent::prepare(name, Grants::default(), lifetime, now);
        assert!(agent.token_hash.matches(&secrets.token.hash()));
        assert!(
            agent
                .client_secret_hash
                .matches(&secrets.client_secret.hash())
        );
        assert_eq!(agent.expires_at, Some(now.plus_seconds(4 * 3600)));
        let stored = Agent {
            id: agent.id,
            name: "ci".into(),
            scopes: agent.scopes,
            policy: None,
            client_id: agent.client_id,
            created_at: now,
            last_used: None,
            expires_at: agent.expires_at,
            trust: None,
            workload: None,
        };
        assert!(!stored.is_expired(now.plus_seconds(4 * 3600 - 1)));
        assert!(stored.is_expired(now.plus_seconds(4 * 3600)));
    }
}

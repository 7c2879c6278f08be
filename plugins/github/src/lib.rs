//! The GitHub plugin (§19): mints a GitHub App installation token per lease, narrowed to the
//! repositories and permissions its scopes name, and deletes it when the lease ends.
//!
//! - [`config`]: the backend's configuration and its checks.
//! - [`app_jwt`]: the App's private key and the RS256 JWT it authenticates with.
//! - [`scopes`]: scope forms and the one token a set of them becomes.
//! - [`client`]: GitHub's API (`GET /app`, installations, access tokens), error mapping.
//!
//! The token is also its own revocation handle (`DELETE /installation/token` authenticates
//! with it): the host keeps the handle sealed at rest and hands it back only to revoke.

pub mod app_jwt;
pub mod client;
pub mod config;
pub mod scopes;

use std::collections::BTreeMap;

use creddy_core::secret::Secret;
use creddy_core::{Clock, SystemClock};
use creddy_plugin::protocol::{
    Capabilities, ConfigField, Constraints, Credential, EnvSource, EnvVar, ErrorKind,
    GetCredentialParams, MatchScopeResult, PluginInfo, RevokeParams, RevokeResult, ScopeInfo,
};
use creddy_plugin::sdk::{Plugin, PluginError};
use serde_json::Value;

use crate::client::GithubClient;
use crate::config::GithubConfig;

/// The plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct Github;

/// A configured GitHub backend.
#[derive(Debug)]
pub struct Backend {
    config: GithubConfig,
    client: GithubClient,
    /// Installations found by owner (lower case), so that a vend costs one GitHub call; an
    /// entry GitHub no longer knows is dropped at the mint that finds it gone.
    installations: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl Backend {
    fn app_jwt(&self) -> String {
        let now = SystemClock.now().as_millis() / 1000;
        self.config.key.jwt(&self.config.app_id, now)
    }

    /// The installation that mints for `plan`.
    async fn installation(&self, jwt: &str, plan: &scopes::Plan) -> Result<u64, PluginError> {
        if let Some(id) = self.config.installation_id {
            return Ok(id);
        }
        let Some(owner) = &plan.owner else {
            return Err(PluginError::new(
                ErrorKind::OrgNotConfigured,
                "the plain 'github' scope needs the backend's installation_id",
            )
            .with_remedy("ask for github:OWNER/REPO or github:OWNER/*, or set installation_id on the backend"));
        };
        let key = owner.to_ascii_lowercase();
        if let Some(id) = self.known_installations().get(&key) {
            return Ok(*id);
        }
        let repo = plan
            .repositories
            .as_ref()
            .and_then(|names| names.first())
            .map(String::as_str);
        let id = self.client.installation_of(jwt, owner, repo).await?;
        self.known_installations().insert(key, id);
        Ok(id)
    }

    fn known_installations(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u64>> {
        self.installations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Mints for `plan`: the installation that minted and the token; a found installation
    /// that GitHub no longer knows is forgotten.
    async fn mint(
        &self,
        jwt: &str,
        plan: &scopes::Plan,
    ) -> Result<(u64, client::Minted), PluginError> {
        let installation = self.installation(jwt, plan).await?;
        let minted = self.client.mint(jwt, installation, plan).await;
        if let Err(e) = &minted
            && e.kind == ErrorKind::UpstreamNotFound
        {
            self.known_installations()
                .retain(|_, id| *id != installation);
        }
        minted.map(|minted| (installation, minted))
    }
}

impl Plugin for Github {
    type Backend = Backend;

    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "github".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "GitHub App installation tokens for chosen repositories".into(),
            min_creddy_version: "0.1.0".into(),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            revoke: true,
            self_expiring: true,
        }
    }

    fn scopes(&self) -> Vec<ScopeInfo> {
        scopes::descriptions()
    }

    fn config_schema(&self) -> Vec<ConfigField> {
        config::schema()
    }

    fn constraints(&self) -> Constraints {
        Constraints {
            min_ttl: Some(60),
            max_ttl: Some(3_600),
            default_ttl: Some(600),
            description: "GitHub installation tokens live at most 1 hour".into(),
        }
    }

    async fn configure(
        &self,
        backend: &str,
        config: Secret<Value>,
    ) -> Result<Backend, PluginError> {
        let config = GithubConfig::from_value(backend, config.expose())?;
        let client = GithubClient::new(&config.base_url)?;
        Ok(Backend {
            config,
            client,
            installations: std::sync::Mutex::default(),
        })
    }

    async fn validate(&self, backend: &Backend) -> Result<Vec<String>, PluginError> {
        let jwt = backend.app_jwt();
        backend.client.check_app(&jwt).await?;
        let mut warnings = Vec::new();
        if let Some(id) = backend.config.installation_id {
            // Minting nothing but metadata proves the installation exists and is the App's.
            let plan = scopes::Plan {
                owner: None,
                repositories: None,
                permissions: [("metadata".to_owned(), scopes::Level::Read)].into(),
            };
            let minted = backend.client.mint(&jwt, id, &plan).await?;
            if backend.client.delete(minted.token.expose()).await.is_err() {
                warnings
                    .push("the check token could not be deleted; it expires within an hour".into());
            }
        }
        Ok(warnings)
    }

    async fn get_credential(
        &self,
        backend: &Backend,
        request: GetCredentialParams,
    ) -> Result<Credential, PluginError> {
        let plan = scopes::plan(&request.scopes, &backend.config.default_permissions)?;
        let jwt = backend.app_jwt();
        let (installation, minted) = backend.mint(&jwt, &plan).await?;
        let mut metadata = BTreeMap::new();
        metadata.insert("api_url".to_owned(), backend.config.base_url.clone());
        metadata.insert("git_host".to_owned(), backend.config.git_host());
        metadata.insert("installation_id".to_owned(), installation.to_string());
        metadata.insert("repositories".to_owned(), plan.repositories_text());
        metadata.insert("permissions".to_owned(), plan.permissions_text());
        let handle = minted.token.expose().clone();
        Ok(Credential {
            value: minted.token,
            expires_at: minted.expires_at,
            external_id: Some(handle),
            metadata,
            env: ["GH_TOKEN", "GITHUB_TOKEN"]
                .into_iter()
                .map(|name| EnvVar {
                    name: name.into(),
                    source: EnvSource::Value,
                    key: None,
                })
                .collect(),
        })
    }

    async fn revoke_credential(
        &self,
        backend: &Backend,
        request: RevokeParams,
    ) -> Result<RevokeResult, PluginError> {
        let Some(token) = request.external_id else {
            // A token minted just before a crash, before its handle was recorded: GitHub
            // offers no way to find it but itself, and it expires within the hour.
            eprintln!(
                "lease {}: no token to delete (minted before a crash); GitHub expires it within an hour",
                request.lease_id
            );
            return Ok(RevokeResult {
                revoked: true,
                already_gone: true,
            });
        };
        let already_gone = backend.client.delete(&token).await?;
        Ok(RevokeResult {
            revoked: true,
            already_gone,
        })
    }

    fn match_scope(&self, scope: &str) -> MatchScopeResult {
        MatchScopeResult {
            matches: scopes::parse(scope).is_some(),
            normalized: scope.to_owned(),
        }
    }
}

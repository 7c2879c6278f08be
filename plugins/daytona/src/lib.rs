//! The Daytona plugin: mints a Daytona API key per lease, scoped by the requested scopes, with
//! Daytona's own `expiresAt` set to the lease's expiry, and deletes it on revocation.
//!
//! - [`config`]: the backend's configuration and its checks.
//! - [`scopes`]: scope forms, their permissions and the organisation rule.
//! - [`client`]: Daytona's API (`POST`/`DELETE /api-keys`), error mapping, no redirects.

pub mod client;
pub mod config;
pub mod scopes;

use creddy_core::secret::Secret;
use creddy_core::{Clock, SystemClock};
use creddy_plugin::protocol::{
    Capabilities, ConfigField, Constraints, Credential, EnvSource, EnvVar, GetCredentialParams,
    MatchScopeResult, PluginInfo, RevokeParams, RevokeResult, ScopeInfo,
};
use creddy_plugin::sdk::{Plugin, PluginError};
use serde_json::Value;

use crate::client::DaytonaClient;
use crate::config::DaytonaConfig;

/// The plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct Daytona;

/// A configured Daytona backend.
#[derive(Debug)]
pub struct Backend {
    config: DaytonaConfig,
    client: DaytonaClient,
}

/// The key name for a lease: `<prefix>-<agent slug>-<lease ULID>`.
pub fn key_name(prefix: &str, agent_name: &str, lease_id: &str) -> String {
    let mut slug = String::new();
    for c in agent_name.to_ascii_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(32).collect();
    let slug = slug.trim_end_matches('-');
    let ulid = lease_id
        .strip_prefix("cred_")
        .unwrap_or(lease_id)
        .to_ascii_lowercase();
    [prefix, slug, &ulid]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("-")
}

impl Plugin for Daytona {
    type Backend = Backend;

    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "daytona".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Ephemeral Daytona API keys".into(),
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
            max_ttl: Some(86_400),
            default_ttl: Some(600),
            description: "Daytona keys live from 1 minute to 24 hours".into(),
        }
    }

    async fn configure(
        &self,
        backend: &str,
        config: Secret<Value>,
    ) -> Result<Backend, PluginError> {
        let config = DaytonaConfig::from_value(backend, config.expose())?;
        let client = DaytonaClient::new(&config)?;
        Ok(Backend { config, client })
    }

    async fn validate(&self, backend: &Backend) -> Result<Vec<String>, PluginError> {
        let mut warnings = backend.config.warnings();
        let mut suffix = [0u8; 4];
        creddy_core::secret::fill_random(&mut suffix);
        let name = format!(
            "{}-validate-{}",
            backend.config.key_prefix,
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let expires = SystemClock.now().plus_seconds(60);
        backend.client.create_key(&name, &[], expires).await?;
        if backend.client.delete_key(&name).await.is_err() {
            warnings.push("key deletion not permitted; keys will rely on expiresAt".into());
        }
        Ok(warnings)
    }

    async fn get_credential(
        &self,
        backend: &Backend,
        request: GetCredentialParams,
    ) -> Result<Credential, PluginError> {
        let permissions = scopes::permissions(&request.scopes, &backend.config)?;
        let name = key_name(
            &backend.config.key_prefix,
            &request.agent.name,
            &request.lease_id,
        );
        let expires = SystemClock.now().plus_seconds(request.ttl);
        let created = backend
            .client
            .create_key(&name, &permissions, expires)
            .await?;
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("key_name".to_owned(), name.clone());
        metadata.insert("api_url".to_owned(), backend.config.base_url.clone());
        if let Some(org) = &backend.config.organization_id {
            metadata.insert("organization_id".to_owned(), org.clone());
        }
        metadata.insert("permissions".to_owned(), permissions.join(","));
        Ok(Credential {
            value: created.value,
            expires_at: client::millis_rfc3339(expires),
            external_id: Some(name),
            metadata,
            env: vec![
                EnvVar {
                    name: "DAYTONA_API_KEY".into(),
                    source: EnvSource::Value,
                    key: None,
                },
                EnvVar {
                    name: "DAYTONA_API_URL".into(),
                    source: EnvSource::Metadata,
                    key: Some("api_url".into()),
                },
            ],
        })
    }

    async fn revoke_credential(
        &self,
        backend: &Backend,
        request: RevokeParams,
    ) -> Result<RevokeResult, PluginError> {
        let name = request.external_id.unwrap_or_else(|| {
            key_name(
                &backend.config.key_prefix,
                &request.agent.name,
                &request.lease_id,
            )
        });
        let already_gone = backend.client.delete_key(&name).await?;
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

    fn proxy_policy(&self) -> Option<creddy_plugin::route_policy::RoutePolicy> {
        Some(scopes::route_policy())
    }

    /// The API at `base_url`; toolboxes on Daytona's hosts or the API's own host (a
    /// self-hosted Daytona); the master key only for `master` injection.
    async fn proxy_target(
        &self,
        backend: &Backend,
        inject: creddy_plugin::protocol::Inject,
    ) -> Result<creddy_plugin::protocol::ProxyTarget, PluginError> {
        let config = &backend.config;
        let own_host = reqwest::Url::parse(&config.base_url).ok().and_then(|url| {
            let host = url.host_str()?.to_owned();
            Some(url.port().map_or(host.clone(), |p| format!("{host}:{p}")))
        });
        Ok(creddy_plugin::protocol::ProxyTarget {
            base_url: config.base_url.clone(),
            toolbox_hosts: std::iter::once("*.daytona.io".to_owned())
                .chain(own_host)
                .collect(),
            credential: (inject == creddy_plugin::protocol::Inject::Master)
                .then(|| config.api_key.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::key_name;

    #[test]
    fn key_names_are_traceable_and_safe() {
        assert_eq!(
            key_name("creddy", "ci-agent", "cred_01JF8Z6Q2K3M4N5P6R7S8T9V0W"),
            "creddy-ci-agent-01jf8z6q2k3m4n5p6r7s8t9v0w"
        );
        assert_eq!(
            key_name("creddy", "My_Agent..v2", "cred_01x"),
            "creddy-my-agent-v2-01x"
        );
        let long = key_name("p", &"a".repeat(50), "cred_1");
        assert_eq!(long, format!("p-{}-1", "a".repeat(32)));
        assert_eq!(key_name("p", "---", "cred_1"), "p-1");
    }
}

//! The Daytona backend's configuration (§10.1 of the specification).

use creddy_core::secret::Secret;
use creddy_plugin::protocol::{ConfigField, FieldType};
use creddy_plugin::sdk::PluginError;
use serde_json::Value;

/// The default API base.
pub const DEFAULT_BASE_URL: &str = "https://app.daytona.io/api";
/// What the plain `daytona` scope grants by default.
pub const DEFAULT_DELEGATED: [&str; 8] = [
    "write:sandboxes",
    "delete:sandboxes",
    "write:snapshots",
    "delete:snapshots",
    "write:volumes",
    "delete:volumes",
    "write:registries",
    "delete:registries",
];

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct DaytonaConfig {
    /// The backend's name (for messages).
    pub backend: String,
    /// The master key.
    pub api_key: Secret<String>,
    /// The API base, without a trailing `/`.
    pub base_url: String,
    /// The master key's organisation.
    pub organization_id: Option<String>,
    /// What the plain scope grants.
    pub delegated_permissions: Vec<String>,
    /// Prefix of minted key names.
    pub key_prefix: String,
}

/// The configuration fields.
pub fn schema() -> Vec<ConfigField> {
    let field = ConfigField::new;
    vec![
        field(
            "api_key",
            FieldType::Secret,
            "Daytona API key used to mint agent keys",
            true,
            None,
        ),
        field(
            "base_url",
            FieldType::String,
            "Daytona API base URL",
            false,
            Some(DEFAULT_BASE_URL.into()),
        ),
        field(
            "organization_id",
            FieldType::String,
            "Organization ID of the API key",
            false,
            None,
        ),
        field(
            "delegated_permissions",
            FieldType::Array,
            "Permissions granted by the plain 'daytona' scope",
            false,
            Some(DEFAULT_DELEGATED.join(",")),
        ),
        field(
            "key_prefix",
            FieldType::String,
            "Prefix of minted key names",
            false,
            Some("creddy".into()),
        ),
    ]
}

fn invalid(message: impl Into<String>) -> PluginError {
    PluginError::invalid_config(message)
}

impl DaytonaConfig {
    /// Checks a configuration object (defaults applied by the host).
    pub fn from_value(backend: &str, config: &Value) -> Result<Self, PluginError> {
        let text = |key: &str| creddy_plugin::sdk::config_text(config, key);
        let api_key = text("api_key").ok_or_else(|| {
            invalid("api_key is empty")
                .with_remedy("give the Daytona API key that may create API keys")
        })?;
        let base_url = text("base_url")
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/')
            .to_owned();
        let parsed = reqwest::Url::parse(&base_url).map_err(|_| {
            invalid(format!("base_url '{base_url}' is not a URL"))
                .with_remedy("use e.g. https://app.daytona.io/api")
        })?;
        // Credentials in the URL would travel in every error message and log line that
        // names the URL; the master key goes in api_key only. The URL is not echoed here.
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(
                "base_url must not hold a user name or password (the part before '@')",
            )
            .with_remedy("give the URL without credentials, e.g. https://daytona.internal/api; the key goes in api_key"));
        }
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid(format!(
                "base_url '{base_url}' must be an http:// or https:// URL with a host"
            )));
        }
        let delegated: Vec<String> = match config.get("delegated_permissions") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(list)) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => DEFAULT_DELEGATED.iter().map(|p| (*p).to_owned()).collect(),
        };
        if let Some(managing) = delegated.iter().find(|p| p.starts_with("manage:")) {
            return Err(invalid(format!(
                "delegated_permissions may not contain '{managing}': creddy never delegates manage:* permissions"
            )));
        }
        let key_prefix = text("key_prefix").unwrap_or("creddy").to_owned();
        let prefix_ok = (1..=16).contains(&key_prefix.len())
            && key_prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !prefix_ok {
            return Err(invalid(format!(
                "key_prefix '{key_prefix}' must be 1 to 16 of a-z, 0-9 and '-'"
            )));
        }
        Ok(Self {
            backend: backend.to_owned(),
            api_key: Secret::new(api_key.to_owned()),
            base_url,
            organization_id: text("organization_id").map(str::to_owned),
            delegated_permissions: delegated,
            key_prefix,
        })
    }

    /// Problems that do not stop the backend from working.
    pub fn warnings(&self) -> Vec<String> {
        let url = reqwest::Url::parse(&self.base_url).ok();
        let plain_remote = url.as_ref().is_some_and(|u| {
            let host = u.host_str().unwrap_or_default().trim_matches(['[', ']']);
            u.scheme() == "http"
                && host != "localhost"
                && !host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if plain_remote {
            vec![format!(
                "base_url {} uses plain http:// to a remote host; the master key travels unencrypted",
                self.base_url
            )]
        } else {
            vec![]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configurations_are_checked_with_a_reason() {
        let ok = DaytonaConfig::from_value(
            "daytona",
            &json!({"api_key": "k", "base_url": "https://app.daytona.io/api/"}),
        )
        .expect("valid");
        assert_eq!(ok.base_url, "https://app.daytona.io/api");
        assert_eq!(ok.delegated_permissions.len(), 8);
        assert!(!format!("{ok:?}").contains("\"k\""));
        let cases = [
            (json!({"api_key": ""}), "api_key is empty"),
            (
                json!({"api_key": "k", "base_url": "ftp://x"}),
                "http:// or https://",
            ),
            (
                json!({"api_key": "k", "base_url": "not a url"}),
                "is not a URL",
            ),
            (
                json!({"api_key": "k", "base_url": "http://svc:hunter2@daytona.internal/api"}),
                "must not hold a user name or password",
            ),
            (
                json!({"api_key": "k", "base_url": "https://svc@daytona.internal/api"}),
                "must not hold a user name or password",
            ),
            (
                json!({"api_key": "k", "delegated_permissions": ["manage:api_keys"]}),
                "never delegates manage",
            ),
            (
                json!({"api_key": "k", "key_prefix": "Bad_Prefix"}),
                "key_prefix",
            ),
        ];
        for (config, reason) in cases {
            let err = DaytonaConfig::from_value("daytona", &config).expect_err(reason);
            assert!(err.message.contains(reason), "{}", err.message);
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
    }

    #[test]
    fn plain_http_to_a_remote_host_is_a_warning() {
        let remote = DaytonaConfig::from_value(
            "d",
            &json!({"api_key": "k", "base_url": "http://daytona.internal/api"}),
        )
        .expect("valid");
        assert_eq!(remote.warnings().len(), 1);
        let local = DaytonaConfig::from_value(
            "d",
            &json!({"api_key": "k", "base_url": "http://127.0.0.1:3000/api"}),
        )
        .expect("valid");
        assert!(local.warnings().is_empty());
    }
}

//! The GitHub backend's configuration (§19).

use creddy_plugin::protocol::{ConfigField, FieldType};
use creddy_plugin::sdk::PluginError;
use serde_json::Value;

use crate::app_jwt::AppKey;
use crate::scopes::{Permissions, parse_permission};

/// GitHub's API.
pub const DEFAULT_BASE_URL: &str = "https://api.github.com";
/// What a scope that names no permission gets.
pub const DEFAULT_PERMISSIONS: [&str; 4] = [
    "contents:write",
    "pull_requests:write",
    "issues:write",
    "metadata:read",
];

/// A checked configuration.
#[derive(Debug)]
pub struct GithubConfig {
    /// The backend's name (for messages).
    pub backend: String,
    /// The App's id (the JWT's `iss`).
    pub app_id: String,
    /// The App's private key (its `Debug` is redacted).
    pub key: AppKey,
    /// The installation to mint from; found from the owner a scope names when absent.
    pub installation_id: Option<u64>,
    /// The API base, without a trailing `/` (`https://HOST/api/v3` for GitHub Enterprise
    /// Server).
    pub base_url: String,
    /// What a scope that names no permission gets.
    pub default_permissions: Permissions,
    /// Where git reaches the repositories: `https://github.com` for GitHub's API,
    /// `https://HOST` for GitHub Enterprise Server's `https://HOST/api/v3`, unless given.
    pub git_url: String,
}

/// The configuration fields.
pub fn schema() -> Vec<ConfigField> {
    let field = ConfigField::new;
    vec![
        field(
            "app_id",
            FieldType::String,
            "The GitHub App's id (its settings page, 'App ID')",
            true,
            None,
        ),
        field(
            "private_key",
            FieldType::Secret,
            "The App's private key, PEM (--set-file private_key=app.pem)",
            true,
            None,
        ),
        field(
            "installation_id",
            FieldType::Int,
            "The installation to mint from (default: found from the repository's owner)",
            false,
            None,
        ),
        field(
            "base_url",
            FieldType::String,
            "GitHub's API (GitHub Enterprise Server: https://HOST/api/v3)",
            false,
            Some(DEFAULT_BASE_URL.into()),
        ),
        field(
            "git_url",
            FieldType::String,
            "Where git reaches the repositories (default: from base_url, https://github.com for GitHub)",
            false,
            None,
        ),
        field(
            "default_permissions",
            FieldType::Array,
            "Permissions of a scope that names none",
            false,
            Some(DEFAULT_PERMISSIONS.join(",")),
        ),
    ]
}

fn invalid(message: impl Into<String>) -> PluginError {
    PluginError::invalid_config(message)
}

impl GithubConfig {
    /// Checks a configuration object (defaults applied by the host).
    pub fn from_value(backend: &str, config: &Value) -> Result<Self, PluginError> {
        let text = |key: &str| creddy_plugin::sdk::config_text(config, key);
        let app_id = text("app_id")
            .filter(|id| id.len() <= 32 && id.chars().all(|c| c.is_ascii_alphanumeric()))
            .ok_or_else(|| {
                invalid("app_id must be the App's id (digits, or its client id)")
                    .with_remedy("copy 'App ID' from the App's settings page on GitHub")
            })?
            .to_owned();
        let pem = text("private_key").ok_or_else(|| {
            invalid("private_key is empty")
                .with_remedy("give the App's private key file: --set-file private_key=app.pem")
        })?;
        let key = AppKey::from_pem(pem).map_err(invalid)?;
        let installation_id = match config.get("installation_id") {
            None | Some(Value::Null) => None,
            Some(value) => Some(value.as_u64().filter(|id| *id > 0).ok_or_else(|| {
                invalid("installation_id must be a positive number")
                    .with_remedy("copy it from the installation's URL (…/settings/installations/ID), or leave it out")
            })?),
        };
        let base_url = check_base_url(text("base_url").unwrap_or(DEFAULT_BASE_URL))?;
        let default_permissions = permissions(config.get("default_permissions"))?;
        let git_url = match text("git_url") {
            Some(url) => check_url("git_url", url)?,
            None => git_url_of(&base_url),
        };
        Ok(Self {
            backend: backend.to_owned(),
            app_id,
            key,
            installation_id,
            base_url,
            default_permissions,
            git_url,
        })
    }

    /// The `host[:port]` git names in its credential requests for these repositories.
    pub fn git_host(&self) -> String {
        reqwest::Url::parse(&self.git_url)
            .ok()
            .map(|url| match (url.host_str(), url.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (Some(host), None) => host.to_owned(),
                _ => String::new(),
            })
            .unwrap_or_default()
    }
}

/// Git's URL for an API base: `https://github.com` for `https://api.github.com`, the host for
/// GitHub Enterprise Server's `https://HOST/api/v3`, else the base itself.
fn git_url_of(base_url: &str) -> String {
    if base_url == DEFAULT_BASE_URL {
        return "https://github.com".to_owned();
    }
    base_url
        .strip_suffix("/api/v3")
        .unwrap_or(base_url)
        .to_owned()
}

/// `https://host[/path]` (or `http://` to a loopback host, for tests and local proxies), no
/// credentials, query or fragment.
fn check_base_url(input: &str) -> Result<String, PluginError> {
    check_url("base_url", input)
}

fn check_url(field: &str, input: &str) -> Result<String, PluginError> {
    let base = input.trim_end_matches('/').to_owned();
    let parsed = reqwest::Url::parse(&base).map_err(|_| {
        invalid(format!("{field} '{base}' is not a URL")).with_remedy(
            "use https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server",
        )
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(format!(
            "{field} must not hold a user name or password (the part before '@')"
        ))
        .with_remedy("give the URL alone; the App's key goes in private_key"));
    }
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let scheme_ok = parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback);
    if !scheme_ok
        || parsed.host_str().is_none()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return Err(invalid(format!(
            "{field} '{base}' must be an https:// URL with a host and no query (http:// only to a loopback host)"
        ))
        .with_remedy("use https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server"));
    }
    Ok(base)
}

/// `default_permissions`: a list, or one comma-separated string, of `PERMISSION[:LEVEL]`.
fn permissions(value: Option<&Value>) -> Result<Permissions, PluginError> {
    let items: Vec<String> = match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(list)) => list.split(',').map(str::to_owned).collect(),
        _ => DEFAULT_PERMISSIONS
            .iter()
            .map(|p| (*p).to_owned())
            .collect(),
    };
    let mut out = Permissions::new();
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        let (name, level) = parse_permission(item).ok_or_else(|| {
            invalid(format!(
                "default_permissions: '{item}' is not a repository permission with level read or write"
            ))
            .with_remedy("use names such as contents:write, pull_requests:write, issues:read")
        })?;
        out.insert(name, level);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_reaches_github_or_the_enterprise_host_unless_told() {
        assert_eq!(git_url_of(DEFAULT_BASE_URL), "https://github.com");
        assert_eq!(
            git_url_of("https://ghe.example.com/api/v3"),
            "https://ghe.example.com"
        );
        assert_eq!(git_url_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert!(check_url("git_url", "ftp://x").is_err());
    }
}

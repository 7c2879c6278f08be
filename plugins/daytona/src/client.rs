//! Daytona's API, as far as the plugin needs it: create and delete API keys.
//!
//! The master key is sent only to `base_url`; redirects are never followed; every call times
//! out after 30 seconds; a 429 is retried once after its `Retry-After` when that is short.
//! Daytona's answers are reduced to the plugin's mapped messages (§10.5): raw bodies never
//! travel further.

use std::time::Duration;

use creddy_core::Timestamp;
use creddy_core::secret::Secret;
use creddy_plugin::protocol::ErrorKind;
use creddy_plugin::sdk::PluginError;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::config::DaytonaConfig;

/// The timeout of every call.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `Retry-After` waited for before retrying once.
const MAX_RETRY_WAIT: u64 = 10;

/// RFC 3339 UTC with milliseconds, as Daytona writes times.
pub fn millis_rfc3339(t: Timestamp) -> String {
    let text = t.to_rfc3339();
    match text.strip_suffix('Z') {
        Some(base) if !base.contains('.') => format!("{base}.000Z"),
        _ => text,
    }
}

/// A client bound to one backend's base URL and master key.
#[derive(Debug)]
pub struct DaytonaClient {
    http: reqwest::Client,
    base: reqwest::Url,
    base_text: String,
    api_key: Secret<String>,
    organization_id: Option<String>,
}

/// A created key.
#[derive(Debug, Deserialize)]
pub struct CreatedKey {
    /// The secret value, `dtn_…`.
    pub value: Secret<String>,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    message: Option<serde_json::Value>,
}

impl DaytonaClient {
    /// A client for the configured backend.
    pub fn new(config: &DaytonaConfig) -> Result<Self, PluginError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("creddy-daytona/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                PluginError::new(ErrorKind::InternalError, format!("cannot set up HTTP: {e}"))
            })?;
        let base = reqwest::Url::parse(&format!("{}/", config.base_url))
            .map_err(|_| PluginError::new(ErrorKind::InvalidConfig, "base_url is not a URL"))?;
        Ok(Self {
            http,
            base,
            base_text: config.base_url.clone(),
            api_key: config.api_key.clone(),
            organization_id: config.organization_id.clone(),
        })
    }

    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, PluginError> {
        let mut retried = false;
        loop {
            let mut request = self
                .http
                .request(method.clone(), self.url(segments))
                .bearer_auth(self.api_key.expose())
                .header("X-Daytona-Source", "creddy");
            if let Some(org) = &self.organization_id {
                request = request.header("X-Daytona-Organization-ID", org);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|_| self.unavailable())?;
            if response.status() == StatusCode::TOO_MANY_REQUESTS && !retried {
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if let Some(seconds) = wait.filter(|s| *s <= MAX_RETRY_WAIT) {
                    tokio::time::sleep(Duration::from_secs(seconds)).await;
                    retried = true;
                    continue;
                }
            }
            return Ok(response);
        }
    }

    fn unavailable(&self) -> PluginError {
        PluginError::new(
            ErrorKind::UpstreamUnavailable,
            format!("Daytona unavailable at {}", self.base_text),
        )
        .with_remedy("check base_url and the network")
    }

    /// Maps a refusal to the plugin's error kinds and messages.
    async fn refusal(&self, response: reqwest::Response, org_route: bool) -> PluginError {
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let message = response
            .json::<Envelope>()
            .await
            .ok()
            .and_then(|e| e.message)
            .map(|m| {
                m.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| m.to_string())
            })
            .map(|m| m.chars().take(300).collect::<String>())
            .unwrap_or_default();
        match status.as_u16() {
            401 => PluginError::new(ErrorKind::UpstreamAuth, "invalid API key")
                .with_remedy("use a valid, unexpired Daytona key that may create API keys; replace the backend (backend rm, backend add)"),
            403 if message == "Invalid authentication context" => org_not_found(),
            404 if org_route => org_not_found(),
            403 => PluginError::new(ErrorKind::UpstreamPermission, format!("permission denied: {message}"))
                .with_remedy("grant the master key those permissions (and manage:api_keys) or narrow delegated_permissions"),
            400 | 409 => PluginError::new(ErrorKind::UpstreamRejected, format!("Daytona rejected the request: {message}")),
            429 => {
                let error = PluginError::new(ErrorKind::UpstreamRateLimited, "Daytona rate limit reached");
                match retry_after {
                    Some(s) => error.with_remedy(format!("retry after {s} seconds")).with_retry_after(s),
                    None => error.with_remedy("retry later"),
                }
            }
            300..=399 => PluginError::new(ErrorKind::UpstreamUnavailable, format!("Daytona at {} answered with a redirect, which is not followed", self.base_text))
                .with_remedy("set base_url to the final API URL"),
            _ => self.unavailable(),
        }
    }

    /// `POST /api-keys`; 201 gives the key.
    pub async fn create_key(
        &self,
        name: &str,
        permissions: &[String],
        expires: Timestamp,
    ) -> Result<CreatedKey, PluginError> {
        let body =
            json!({"name": name, "permissions": permissions, "expiresAt": millis_rfc3339(expires)});
        let response = self.send(Method::POST, &["api-keys"], Some(&body)).await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refusal(response, true).await);
        }
        response.json::<CreatedKey>().await.map_err(|_| {
            PluginError::new(
                ErrorKind::UpstreamRejected,
                "Daytona's answer to creating a key had no key value",
            )
        })
    }

    /// `DELETE /api-keys/{name}`; returns whether the key was already gone. Every failure is
    /// retryable: the lease engine tries again.
    pub async fn delete_key(&self, name: &str) -> Result<bool, PluginError> {
        let response = self.send(Method::DELETE, &["api-keys", name], None).await?;
        match response.status().as_u16() {
            200 | 204 => Ok(false),
            404 => Ok(true),
            _ => Err(self.refusal(response, false).await.retryable(true)),
        }
    }
}

fn org_not_found() -> PluginError {
    PluginError::new(ErrorKind::UpstreamNotFound, "organization not found")
        .with_remedy("make organization_id match the organisation ID exactly (case-sensitive) and use a key of that organisation")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Anything that logs with `{:?}` (a tracing field, a panic message) must not reveal the
    /// master key or a minted key.
    #[test]
    fn neither_the_client_nor_a_created_key_prints_its_secret() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let master = "dtn_master_key_that_must_never_print";
        let config = DaytonaConfig::from_value("daytona", &json!({"api_key": master}))
            .expect("valid configuration");
        let client = DaytonaClient::new(&config).expect("client");
        let created: CreatedKey =
            serde_json::from_value(json!({"value": "dtn_minted_value_that_must_never_print"}))
                .expect("created key");
        for shown in [
            format!("{config:?}"),
            format!("{client:?}"),
            format!("{created:?}"),
        ] {
            assert!(!shown.contains("must_never_print"), "{shown}");
        }
        assert!(created.value.expose().ends_with("must_never_print"));
    }
}

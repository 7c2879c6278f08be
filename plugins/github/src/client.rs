//! GitHub's REST API, as far as the plugin needs it: `GET /app`, finding an installation,
//! minting an installation token and deleting one.
//!
//! Calls go only to `base_url`; redirects are never followed; every call times out after
//! 30 seconds. GitHub's answers are reduced to the plugin's mapped messages with remedies:
//! bodies never travel further than GitHub's own one-line `message`, cut to 200 characters.

use std::time::Duration;

use creddy_core::secret::Secret;
use creddy_plugin::protocol::ErrorKind;
use creddy_plugin::sdk::PluginError;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::scopes::Plan;

/// The timeout of every call.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The API version asked for.
const API_VERSION: &str = "2022-11-28";

/// A client bound to one backend's API base.
#[derive(Debug)]
pub struct GithubClient {
    http: reqwest::Client,
    base: reqwest::Url,
    base_text: String,
}

/// A minted installation token.
#[derive(Debug, Deserialize)]
pub struct Minted {
    /// The token, `ghs_…`.
    pub token: Secret<String>,
    /// When GitHub expires it (RFC 3339).
    pub expires_at: String,
}

/// What a call was about, for its error messages.
#[derive(Debug, Clone, Copy)]
enum Call<'a> {
    App,
    Installation(&'a str),
    Mint(u64),
    Delete,
}

#[derive(Debug, Deserialize)]
struct Installation {
    id: u64,
}

#[derive(Debug, Deserialize)]
struct GithubError {
    message: Option<String>,
}

impl GithubClient {
    /// A client for `base_url` (checked by the configuration).
    pub fn new(base_url: &str) -> Result<Self, PluginError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("creddy-github/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                PluginError::new(ErrorKind::InternalError, format!("cannot set up HTTP: {e}"))
            })?;
        let base = reqwest::Url::parse(&format!("{base_url}/"))
            .map_err(|_| PluginError::new(ErrorKind::InvalidConfig, "base_url is not a URL"))?;
        Ok(Self {
            http,
            base,
            base_text: base_url.to_owned(),
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
        bearer: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, PluginError> {
        let mut request = self
            .http
            .request(method, self.url(segments))
            .bearer_auth(bearer)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.map_err(|_| self.unavailable())
    }

    fn unavailable(&self) -> PluginError {
        PluginError::new(
            ErrorKind::UpstreamUnavailable,
            format!("GitHub unavailable at {}", self.base_text),
        )
        .with_remedy("check base_url and the network; retry later")
    }

    /// `GET /app` as the App: checks its id and key.
    pub async fn check_app(&self, app_jwt: &str) -> Result<(), PluginError> {
        let response = self.send(Method::GET, &["app"], app_jwt, None).await?;
        if response.status() == StatusCode::OK {
            return Ok(());
        }
        Err(self.refusal(response, Call::App).await)
    }

    /// The installation of `owner`: by the repository when one is named
    /// (`GET /repos/{owner}/{repo}/installation`), else the organisation's, else the user's.
    pub async fn installation_of(
        &self,
        app_jwt: &str,
        owner: &str,
        repo: Option<&str>,
    ) -> Result<u64, PluginError> {
        let routes: Vec<Vec<&str>> = match repo {
            Some(repo) => vec![vec!["repos", owner, repo, "installation"]],
            None => vec![
                vec!["orgs", owner, "installation"],
                vec!["users", owner, "installation"],
            ],
        };
        let mut last = None;
        for route in &routes {
            let response = self.send(Method::GET, route, app_jwt, None).await?;
            if response.status() == StatusCode::OK {
                let found: Installation = response.json().await.map_err(|_| {
                    PluginError::new(
                        ErrorKind::UpstreamRejected,
                        "GitHub's answer about the installation had no id",
                    )
                })?;
                return Ok(found.id);
            }
            let error = self.refusal(response, Call::Installation(owner)).await;
            if error.kind != ErrorKind::UpstreamNotFound {
                return Err(error);
            }
            last = Some(error);
        }
        Err(last.unwrap_or_else(|| installation_not_found(owner)))
    }

    /// `POST /app/installations/{id}/access_tokens` with the plan's repositories and
    /// permissions.
    pub async fn mint(
        &self,
        app_jwt: &str,
        installation: u64,
        plan: &Plan,
    ) -> Result<Minted, PluginError> {
        let permissions: serde_json::Map<String, Value> = plan
            .permissions
            .iter()
            .map(|(name, level)| (name.clone(), json!(level.as_str())))
            .collect();
        let mut body = json!({ "permissions": permissions });
        if let Some(repositories) = &plan.repositories {
            body["repositories"] = json!(repositories);
        }
        let id = installation.to_string();
        let response = self
            .send(
                Method::POST,
                &["app", "installations", &id, "access_tokens"],
                app_jwt,
                Some(&body),
            )
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refusal(response, Call::Mint(installation)).await);
        }
        response.json::<Minted>().await.map_err(|_| {
            PluginError::new(
                ErrorKind::UpstreamRejected,
                "GitHub's answer to minting a token had no token",
            )
        })
    }

    /// `DELETE /installation/token` with the token itself; returns whether it was already
    /// gone (401: expired or deleted). Every other failure is retryable.
    pub async fn delete(&self, token: &str) -> Result<bool, PluginError> {
        let response = self
            .send(Method::DELETE, &["installation", "token"], token, None)
            .await?;
        match response.status().as_u16() {
            204 | 200 => Ok(false),
            401 => Ok(true),
            _ => Err(self.refusal(response, Call::Delete).await.retryable(true)),
        }
    }

    /// Maps GitHub's refusal to the plugin's kinds, messages and remedies.
    async fn refusal(&self, response: reqwest::Response, call: Call<'_>) -> PluginError {
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let rate_limited = header("x-ratelimit-remaining") == Some(0)
            || status == StatusCode::TOO_MANY_REQUESTS
            || header("retry-after").is_some();
        let retry_after = header("retry-after").or_else(|| {
            let reset = header("x-ratelimit-reset")?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Some(reset.saturating_sub(now).max(1))
        });
        let message = response
            .json::<GithubError>()
            .await
            .ok()
            .and_then(|e| e.message)
            .map(|m| withheld_if_secret(&m))
            .unwrap_or_default();
        let lower = message.to_ascii_lowercase();
        match (status.as_u16(), call) {
            (403 | 429, _) if rate_limited => {
                let error = PluginError::new(
                    ErrorKind::UpstreamRateLimited,
                    "GitHub's rate limit for the App is reached",
                );
                match retry_after {
                    Some(s) => error
                        .with_remedy(format!("retry after {s} seconds"))
                        .with_retry_after(s),
                    None => error.with_remedy("retry later"),
                }
            }
            (401, _) => PluginError::new(
                ErrorKind::UpstreamAuth,
                format!("invalid GitHub App credentials: GitHub answered '{message}'"),
            )
            .with_remedy("check app_id and private_key (the App's current private key, from its settings page); replace the backend (backend rm, backend add)"),
            (404, Call::Installation(owner)) => installation_not_found(owner),
            (404, Call::Mint(id)) => PluginError::new(
                ErrorKind::UpstreamNotFound,
                format!("installation not found: the App has no installation {id}"),
            )
            .with_remedy("check installation_id, or leave it out to find the installation from the repository's owner"),
            (422, _) if lower.contains("repositor") => PluginError::new(
                ErrorKind::UpstreamRejected,
                format!("repository not in the installation: {message}"),
            )
            .with_remedy("add the repository to the App's installation (owner settings → GitHub Apps → Configure → Repository access)"),
            (422, _) if lower.contains("permission") => PluginError::new(
                ErrorKind::UpstreamPermission,
                format!("permission not granted to the App: {message}"),
            )
            .with_remedy("give the App that permission (its settings → Permissions) and accept the change on the installation, or ask for less"),
            (403, _) => PluginError::new(
                ErrorKind::UpstreamPermission,
                format!("GitHub refused: {message}"),
            )
            .with_remedy("check the App's permissions and the installation's repository access"),
            (400 | 404 | 409 | 422, _) => PluginError::new(
                ErrorKind::UpstreamRejected,
                format!("GitHub rejected the request: {message}"),
            ),
            (300..=399, _) => PluginError::new(
                ErrorKind::UpstreamUnavailable,
                format!(
                    "GitHub at {} answered with a redirect, which is not followed",
                    self.base_text
                ),
            )
            .with_remedy("set base_url to the final API URL (GitHub Enterprise Server: https://HOST/api/v3)"),
            _ => self.unavailable(),
        }
    }
}

/// GitHub's one-line message, cut to 200 characters; withheld when it holds something that
/// looks like a credential (an upstream that reflects the App JWT or a token it was sent).
fn withheld_if_secret(message: &str) -> String {
    let looks_secret = ["eyJ", "ghs_", "ghp_", "github_pat_", "-----BEGIN"]
        .iter()
        .any(|marker| message.contains(marker));
    if looks_secret {
        return "(its message is withheld: it held a credential)".to_owned();
    }
    message.chars().take(200).collect()
}

fn installation_not_found(owner: &str) -> PluginError {
    PluginError::new(
        ErrorKind::UpstreamNotFound,
        format!("installation not found: the App is not installed on '{owner}'"),
    )
    .with_remedy(format!(
        "install the App on {owner} (the App's public page → Install), or set installation_id"
    ))
}

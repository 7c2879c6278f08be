//! Workload identity for agent commands (§18): `--oidc SOURCE` / `CREDDY_OIDC` names where
//! the job's OIDC token comes from, and the CLI exchanges it at the server's token endpoint
//! for an access token, with no creddy secret anywhere.
//!
//! Sources: `github-actions` (the runner's ID-token endpoint: `ACTIONS_ID_TOKEN_REQUEST_URL`
//! plus `&audience=`, with `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answering
//! `{"value"}`), `file:PATH` (read at each use, for Kubernetes projected tokens, which the
//! kubelet rotates) and `env:VAR`. The audience asked for is `CREDDY_OIDC_AUDIENCE`, by
//! default `creddy`. Under GitHub Actions (`GITHUB_ACTIONS=true`) a secret printed by
//! `creddy get` is first registered with the runner's log masking.

use std::time::Duration;

use crate::failure::{EXIT_AUTH, Failure, Result};

/// The audience asked for when `CREDDY_OIDC_AUDIENCE` is not set.
const DEFAULT_AUDIENCE: &str = "creddy";
/// The largest token read from any source.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Where the job's token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The GitHub Actions runner's ID-token endpoint.
    GithubActions,
    /// A file, read at each use.
    File(std::path::PathBuf),
    /// An environment variable.
    Env(String),
}

impl Source {
    /// Parses `--oidc` / `CREDDY_OIDC`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            Failure::usage(format!("invalid OIDC source '{text}'"))
                .hint("use --oidc github-actions, --oidc file:PATH or --oidc env:VAR")
        };
        if text == "github-actions" {
            return Ok(Self::GithubActions);
        }
        match text.split_once(':') {
            Some(("file", path)) if !path.is_empty() => Ok(Self::File(path.into())),
            Some(("env", var)) if !var.is_empty() => Ok(Self::Env(var.to_owned())),
            _ => Err(bad()),
        }
    }
}

/// The audience to ask the platform for.
pub fn audience() -> String {
    std::env::var("CREDDY_OIDC_AUDIENCE")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned())
}

/// The job's token from `source`.
pub async fn subject_token(source: &Source) -> Result<String> {
    let token = match source {
        Source::GithubActions => github_actions_token(&audience()).await?,
        Source::File(path) => read_file_capped(path).map_err(|e| {
            Failure::new(
                EXIT_AUTH,
                format!("cannot read the OIDC token file {}: {e}", path.display()),
            )
            .hint("for Kubernetes, mount a projected service account token with audience creddy at that path")
        })?,
        Source::Env(var) => std::env::var(var).map_err(|_| {
            Failure::new(EXIT_AUTH, format!("the OIDC token variable {var} is not set"))
                .hint(format!("set {var} to the job's OIDC token, or use another --oidc source"))
        })?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
        return Err(Failure::new(
            EXIT_AUTH,
            "the OIDC token is not a JWT (three dot-separated parts, at most 16 KiB)",
        )
        .hint("check the --oidc source"));
    }
    Ok(token)
}

/// A token file's text, read no further than one byte past the largest token (a path such
/// as `/dev/zero` cannot fill memory; the excess is refused as not a JWT).
fn read_file_capped(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_TOKEN_BYTES as u64 + 1)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Asks the GitHub Actions runner for an ID token for `audience`.
async fn github_actions_token(audience: &str) -> Result<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(url), Some(token)) = (
        var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) else {
        return Err(Failure::new(
            EXIT_AUTH,
            "GitHub Actions gave this job no ID token (ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set)",
        )
        .hint("give the job `permissions: id-token: write` in the workflow"));
    };
    let mut url = reqwest::Url::parse(&url)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http"))
        .ok_or_else(|| {
            Failure::new(
                EXIT_AUTH,
                "ACTIONS_ID_TOKEN_REQUEST_URL is not an http(s) URL",
            )
        })?;
    url.query_pairs_mut().append_pair("audience", audience);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Failure::new(EXIT_AUTH, format!("cannot set up HTTP: {e}")))?;
    let unavailable = |why: String| {
        Failure::new(EXIT_AUTH, format!("the runner's ID-token endpoint {why}"))
            .hint("retry the job; check `permissions: id-token: write`")
    };
    let response = http
        .get(url)
        .header("Authorization", format!("bearer {token}"))
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|e| unavailable(format!("could not be reached: {}", e.without_url())))?;
    if !response.status().is_success() {
        return Err(unavailable(format!("answered {}", response.status())));
    }
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| unavailable(format!("failed: {}", e.without_url())))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_TOKEN_BYTES * 2 {
            return Err(unavailable("answered more than 32 KiB".into()));
        }
    }
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["value"].as_str().map(str::to_owned))
        .ok_or_else(|| unavailable("answered no token (no \"value\")".into()))
}

/// Under GitHub Actions, registers `secret` with the runner's log masking (on stderr, so
/// stdout stays the secret alone).
pub fn mask_for_github_actions(secret: &str) {
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") && !secret.is_empty() {
        for line in secret.lines().filter(|l| !l.trim().is_empty()) {
            eprintln!("::add-mask::{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_read_from_their_names() {
        assert_eq!(
            Source::parse("github-actions").ok(),
            Some(Source::GithubActions)
        );
        assert_eq!(
            Source::parse("file:/var/run/secrets/tokens/creddy").ok(),
            Some(Source::File("/var/run/secrets/tokens/creddy".into()))
        );
        assert_eq!(
            Source::parse("env:CI_JOB_JWT").ok(),
            Some(Source::Env("CI_JOB_JWT".into()))
        );
        for bad in ["gitlab", "file:", "env:", ""] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_endless_token_file_is_read_no_further_than_the_cap() {
        let refused = subject_token(&Source::File("/dev/zero".into()))
            .await
            .expect_err("not a token");
        assert!(
            refused.message.contains("is not a JWT"),
            "{}",
            refused.message
        );
    }
}

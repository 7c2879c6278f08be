//! A typed HTTP client for the creddy API.
//!
//! Redirects are never followed (a bearer token must not travel to a host the user did not
//! name), every call has a timeout, and API errors become [`Failure`]s with the server's
//! message and remedy and the documented exit code.

use std::time::Duration;

use creddy_api::ErrorBody;
use creddy_api::oidc::{OAuthError, TokenResponse};
use creddy_core::secret::Secret;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::failure::{EXIT_AUTH, EXIT_CONNECT, EXIT_OTHER, EXIT_USAGE, Failure, Result};

/// A bearer token held by the CLI; never printed by `Debug`.
#[derive(Debug, Clone)]
pub struct Bearer(Secret<String>);

impl Bearer {
    /// Wraps a token.
    pub fn new(token: String) -> Self {
        Self(Secret::new(token.trim().to_owned()))
    }

    /// The token itself, for the one place that must send it in a body (a local
    /// enrollment approved by the admin token).
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// A connection to one server.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    bearer: Option<Bearer>,
    debug: bool,
}

/// Parses and checks a server URL: http or https with a host.
pub fn parse_server_url(text: &str) -> Result<Url> {
    let bad = || {
        Failure::usage(format!("invalid server URL '{text}'"))
            .hint("use http://HOST:PORT or https://HOST, e.g. http://127.0.0.1:8400")
    };
    let url = Url::parse(text.trim_end_matches('/')).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad());
    }
    Ok(url)
}

/// True when the URL's host is this machine (`localhost`, 127.0.0.0/8 or `::1`).
pub fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Client {
    /// A client for `base`, authenticating with `bearer` when given; `debug` traces each
    /// call (method, URL, status; never headers) on stderr.
    pub fn new(base: Url, bearer: Option<Bearer>, global: &crate::cli::Global) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("creddy/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &global.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                Failure::usage(format!(
                    "cannot read the CA certificate {}: {e}",
                    path.display()
                ))
            })?;
            let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Failure::usage(format!("{} is not a PEM certificate: {e}", path.display()))
            })?;
            builder = builder.add_root_certificate(ca);
        }
        let http = builder
            .build()
            .map_err(|e| Failure::new(EXIT_OTHER, format!("cannot set up HTTP: {e}")))?;
        Ok(Self {
            http,
            base,
            bearer,
            debug: global.debug,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The URL of `segments` under the base, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `GET`, decoding JSON.
    pub async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        self.call(Method::GET, segments, None::<&()>).await
    }

    /// `GET` with query parameters, decoding JSON.
    pub async fn get_with_query<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T> {
        let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = self
            .send_with_query(Method::GET, segments, &pairs, None::<&()>)
            .await?;
        response.json().await.map_err(|e| {
            Failure::new(
                EXIT_OTHER,
                format!("unexpected answer from {}: {e}", self.base),
            )
        })
    }

    /// `GET` with one extra header (the enrollment poll secret), decoding JSON.
    pub async fn get_with_header<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        header: (&str, &str),
    ) -> Result<T> {
        let response = self
            .send_full(Method::GET, segments, &[], Some(header), None::<&()>)
            .await?;
        response.json().await.map_err(|e| {
            Failure::new(
                EXIT_OTHER,
                format!("unexpected answer from {}: {e}", self.base),
            )
        })
    }

    /// `POST` with a JSON body, decoding JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<T> {
        self.call(Method::POST, segments, Some(body)).await
    }

    /// An OIDC access token for client credentials (`POST /oauth/token`, HTTP Basic).
    pub async fn client_credentials_token(&self, id: &str, secret: &str) -> Result<String> {
        let refusal = match self
            .token_endpoint(
                "grant_type=client_credentials".to_owned(),
                Some((id, secret)),
            )
            .await?
        {
            Ok(token) => return Ok(token),
            Err(refusal) => refusal,
        };
        Err(Failure::new(
            EXIT_AUTH,
            format!(
                "the server refused the client credentials ({})",
                refusal.map_or_else(|| "no access token".to_owned(), |r| r.error)
            ),
        )
        .hint("check CREDDY_CLIENT_ID and CREDDY_CLIENT_SECRET, or the agent config"))
    }

    /// Exchanges a workload's OIDC token for an access token (§18, RFC 8693).
    pub async fn exchange_token(&self, subject_token: &str) -> Result<String> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            )
            .append_pair("subject_token", subject_token)
            .append_pair("subject_token_type", "urn:ietf:params:oauth:token-type:jwt")
            .finish();
        let refusal = match self.token_endpoint(body, None).await? {
            Ok(token) => return Ok(token),
            Err(refusal) => refusal,
        };
        let why = refusal.map_or_else(
            || "no access token".to_owned(),
            |r| format!("{}: {}", r.error, r.error_description),
        );
        Err(Failure::new(
            EXIT_AUTH,
            format!("the server refused the workload's OIDC token ({why})"),
        )
        .hint("the message names the trust and the claim; fix the job, or the server's [[trust]] table"))
    }

    /// `POST /oauth/token` with a form `body` (and HTTP Basic when given): the access
    /// token, or the server's refusal.
    async fn token_endpoint(
        &self,
        body: String,
        basic: Option<(&str, &str)>,
    ) -> Result<std::result::Result<String, Option<OAuthError>>> {
        let mut request = self
            .http
            .post(self.url(&["oauth", "token"]))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let succeeded = response.status().is_success();
        let body = response.bytes().await.unwrap_or_default();
        if succeeded && let Ok(answer) = serde_json::from_slice::<TokenResponse>(&body) {
            return Ok(Ok(answer.access_token.expose().clone()));
        }
        Ok(Err(serde_json::from_slice::<OAuthError>(&body).ok()))
    }

    /// `POST` with a JSON body, ignoring the answer's body (204).
    pub async fn post_no_content<B: Serialize>(&self, segments: &[&str], body: &B) -> Result<()> {
        self.send(Method::POST, segments, Some(body))
            .await
            .map(drop)
    }

    /// `DELETE`, ignoring any body.
    pub async fn delete(&self, segments: &[&str]) -> Result<()> {
        self.delete_json_with_query::<serde::de::IgnoredAny>(segments, &[])
            .await
            .map(drop)
    }

    /// `DELETE`, decoding a JSON answer.
    pub async fn delete_json<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        self.call(Method::DELETE, segments, None::<&()>).await
    }

    /// `DELETE` with query parameters; the JSON answer, or `None` when there is no body
    /// (204).
    pub async fn delete_json_with_query<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Option<T>> {
        let response = self
            .send_with_query(Method::DELETE, segments, query, None::<&()>)
            .await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        response.json().await.map(Some).map_err(|e| {
            Failure::new(
                EXIT_OTHER,
                format!("unexpected answer from {}: {e}", self.base),
            )
        })
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T> {
        let response = self.send(method, segments, body).await?;
        response.json().await.map_err(|e| {
            Failure::new(
                EXIT_OTHER,
                format!("unexpected answer from {}: {e}", self.base),
            )
        })
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<reqwest::Response> {
        self.send_with_query(method, segments, &[], body).await
    }

    async fn send_with_query<B: Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<reqwest::Response> {
        self.send_full(method, segments, query, None, body).await
    }

    async fn send_full<B: Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        header: Option<(&str, &str)>,
        body: Option<&B>,
    ) -> Result<reqwest::Response> {
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        if self.debug {
            eprintln!("debug: {method} {url}");
        }
        let mut request = self.http.request(method, url);
        if let Some(bearer) = &self.bearer {
            request = request.bearer_auth(bearer.expose());
        }
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if self.debug {
            let id = response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            eprintln!("debug: {status} (request id {id})");
        }
        if status.is_success() {
            return Ok(response);
        }
        if status.is_redirection() {
            return Err(Failure::new(
                EXIT_OTHER,
                format!(
                    "{} answered with a redirect ({status}), which creddy does not follow",
                    self.base
                ),
            )
            .hint("pass the server's final URL with --server"));
        }
        let body: Option<ErrorBody> = response.json().await.ok();
        Err(api_failure(status, body))
    }

    fn unreachable(&self, e: &reqwest::Error) -> Failure {
        let what = if e.is_timeout() {
            "timed out talking to"
        } else {
            "cannot connect to"
        };
        Failure::new(EXIT_CONNECT, format!("{what} the creddy server at {}", self.base)).hint(
            "check that the server is running (creddy server) and that --server or CREDDY_URL names it",
        )
    }
}

/// Maps an API error to a failure with the documented exit code.
fn api_failure(status: StatusCode, body: Option<ErrorBody>) -> Failure {
    let exit = match status.as_u16() {
        400 | 413 | 415 => EXIT_USAGE,
        401 | 403 => EXIT_AUTH,
        _ => EXIT_OTHER,
    };
    match body {
        Some(body) => {
            let mut failure = Failure::new(exit, body.error);
            failure.hint = body.remedy;
            failure.api_code = Some(body.code);
            failure
        }
        None => Failure::new(exit, format!("the server answered {status}")),
    }
}

//! A small JSON client for API tests: every call returns the status, the headers and the
//! body parsed as JSON (or `Null`), so assertions read like the API reference.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// One answer from the server.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON, or `Null` when empty or not JSON.
    pub body: Value,
    /// The raw body text.
    pub text: String,
}

impl Answer {
    /// The error `code` of an error body.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// The error message of an error body.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }

    /// The remedy of an error body.
    pub fn remedy(&self) -> &str {
        self.body["remedy"].as_str().unwrap_or_default()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A client for one server.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// Configures a backend `name` of the scriptable test plugin, with its upstream master
    /// key and the directory of its fake upstream.
    pub async fn add_test_backend(
        &self,
        admin: &str,
        name: &str,
        api_key: &str,
        state_dir: &std::path::Path,
    ) -> Answer {
        let body = serde_json::json!({"type": "test", "name": name,
            "config": {"api_key": api_key, "state_dir": state_dir}});
        self.post("/v1/admin/backends", admin, body).await
    }

    /// Creates agent `name` with `scopes` as `admin` (which must succeed) and returns the
    /// answer's body: the agent with its token and OIDC credentials.
    pub async fn create_agent(&self, admin: &str, name: &str, scopes: &[&str]) -> Value {
        let created = self
            .post(
                "/v1/admin/agents",
                admin,
                serde_json::json!({"name": name, "scopes": scopes}),
            )
            .await;
        assert_eq!(
            created.status,
            reqwest::StatusCode::OK,
            "creating agent {name}: {}",
            created.text
        );
        created.body
    }

    /// A client for the server at `base`.
    pub fn new(base: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("http client: {e}"));
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.finish(request).await
    }

    /// Sends a prepared request.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        self.finish(request).await
    }

    /// A request builder for custom bodies and headers.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    async fn finish(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    /// `GET path` with a token.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// `POST path` with a token and a JSON body.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// `DELETE path` with a token.
    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.call(Method::DELETE, path, Some(token), None).await
    }
}

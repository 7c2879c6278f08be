//! A GitHub stand-in for the GitHub plugin's tests (§19), written from GitHub's REST API
//! description: the one part of that flow that cannot be reached from here.
//!
//! It serves, on 127.0.0.1, what the plugin and a repository client use:
//!
//! - as the App (an RS256 JWT signed with the App's key: `iss` its id, `exp` in the future
//!   and at most 10 minutes after `iat`): `GET /app`, `GET /repos/{o}/{r}/installation`,
//!   `GET /orgs/{o}/installation`, `GET /users/{u}/installation`, `GET /app/installations/{id}`
//!   and `POST /app/installations/{id}/access_tokens` (201; `repositories` must be in the
//!   installation, `permissions` within what it was granted, else GitHub's 422 messages);
//! - as an installation token (`Authorization: token|Bearer`, or HTTP Basic with the token as
//!   the password, as git sends it): `DELETE /installation/token` (204), `GET /repos/{o}/{r}`
//!   and `GET|PUT /repos/{o}/{r}/contents/{path}`, each enforcing the token's repositories,
//!   permissions (`metadata`, `contents` read or write) and expiry (1 hour);
//! - GitHub's error bodies (`{"message", "documentation_url", "status"}`) and messages: `Bad
//!   credentials`, `Not Found`, `Resource not accessible by integration`, the 422s above, and
//!   a rate limit (403 with `x-ratelimit-remaining: 0` and `retry-after`) switched on by
//!   [`GithubStandin::set_rate_limited`].
//!
//! Time is the injected clock's, so tests move it instead of waiting. Every request is logged
//! with who made it (the App, a token's installation, or nobody), never the credential.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use creddy_core::Clock;
use serde_json::{Value, json};

/// A repository's owner, name and files (path, content).
pub type RepositoryFiles = (String, String, Vec<(String, Vec<u8>)>);

/// How long an installation token lives.
pub const TOKEN_LIFETIME_SECONDS: i64 = 3_600;
/// The longest App JWT GitHub accepts (`exp - iat`), with its one minute of drift.
const MAX_JWT_SECONDS: i64 = 660;

/// A permission's level, as GitHub writes it.
pub type Permissions = BTreeMap<String, String>;

/// An App: its id and its private key (PKCS#1 PEM, as GitHub hands it out).
#[derive(Clone)]
pub struct App {
    /// The App id.
    pub id: u64,
    /// The private key, PEM.
    pub private_key_pem: String,
    public: ring::rsa::PublicKeyComponents<Vec<u8>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "App({})", self.id)
    }
}

/// An installation of the App on an account.
#[derive(Debug, Clone)]
struct Installation {
    id: u64,
    account: String,
    /// `None`: every repository of the account.
    repositories: Option<BTreeSet<String>>,
    permissions: Permissions,
}

#[derive(Debug, Clone)]
struct Repository {
    id: u64,
    owner: String,
    name: String,
    files: BTreeMap<String, Vec<u8>>,
}

/// A minted installation token, as the stand-in knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The installation that minted it.
    pub installation: u64,
    /// Its repositories (`owner/name`); `None` for every repository of the installation.
    pub repositories: Option<BTreeSet<String>>,
    /// Its permissions.
    pub permissions: Permissions,
    /// When it expires (seconds since the epoch).
    pub expires_at: i64,
    /// Whether it was deleted.
    pub revoked: bool,
}

/// One request, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path.
    pub path: String,
    /// `app`, `installation N`, or `anonymous`.
    pub caller: String,
    /// The status answered.
    pub status: u16,
}

#[derive(Default)]
struct Hub {
    app: Option<App>,
    installations: BTreeMap<u64, Installation>,
    repositories: BTreeMap<String, Repository>,
    tokens: HashMap<String, Token>,
    log: Vec<Logged>,
    rate_limited: bool,
    next_id: u64,
}

type Shared = Arc<(Mutex<Hub>, Arc<dyn Clock>)>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Hub> {
    shared
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The stand-in, serving until dropped with the runtime.
#[derive(Clone)]
pub struct GithubStandin {
    url: String,
    shared: Shared,
}

impl std::fmt::Debug for GithubStandin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GithubStandin({})", self.url)
    }
}

impl GithubStandin {
    /// Starts a stand-in on 127.0.0.1 with one App (a fresh 2048-bit key) and no
    /// installations.
    pub async fn start(clock: Arc<dyn Clock>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the stand-in binds");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let mut hub = Hub {
            next_id: 1_000,
            ..Hub::default()
        };
        hub.app = Some(new_app(4_242));
        let shared: Shared = Arc::new((Mutex::new(hub), clock));
        let router = Router::new()
            .route("/app", get(get_app))
            .route("/app/installations/{id}", get(get_installation))
            .route("/app/installations/{id}/access_tokens", post(mint))
            .route("/repos/{owner}/{repo}/installation", get(repo_installation))
            .route("/orgs/{owner}/installation", get(account_installation))
            .route("/users/{owner}/installation", get(account_installation))
            .route("/installation/token", axum::routing::delete(delete_token))
            .route("/repos/{owner}/{repo}", get(get_repository))
            .route(
                "/repos/{owner}/{repo}/contents/{*path}",
                get(get_contents).put(put_contents),
            )
            .fallback(not_found)
            .with_state(Arc::clone(&shared));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, shared }
    }

    /// The API base (what `base_url` is set to).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The App.
    pub fn app(&self) -> App {
        lock(&self.shared).app.clone().expect("the App exists")
    }

    /// Creates a repository `owner/name` holding `files`.
    pub fn add_repository(&self, owner: &str, name: &str, files: &[(&str, &str)]) {
        let mut hub = lock(&self.shared);
        hub.next_id += 1;
        let id = hub.next_id;
        hub.repositories.insert(
            key(owner, name),
            Repository {
                id,
                owner: owner.to_owned(),
                name: name.to_owned(),
                files: files
                    .iter()
                    .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
                    .collect(),
            },
        );
    }

    /// Installs the App on `account` for `repositories` (names; `None` for all) with
    /// `permissions` (`("contents", "write")`, …); returns the installation id.
    pub fn install(
        &self,
        account: &str,
        repositories: Option<&[&str]>,
        permissions: &[(&str, &str)],
    ) -> u64 {
        let mut hub = lock(&self.shared);
        hub.next_id += 1;
        let id = hub.next_id;
        hub.installations.insert(
            id,
            Installation {
                id,
                account: account.to_owned(),
                repositories: repositories
                    .map(|names| names.iter().map(|n| n.to_ascii_lowercase()).collect()),
                permissions: permissions
                    .iter()
                    .map(|(n, l)| ((*n).to_owned(), (*l).to_owned()))
                    .collect(),
            },
        );
        id
    }

    /// Every token minted, by value.
    pub fn tokens(&self) -> HashMap<String, Token> {
        lock(&self.shared).tokens.clone()
    }

    /// The file at `path` of `owner/name`, if any.
    pub fn file(&self, owner: &str, name: &str, path: &str) -> Option<String> {
        lock(&self.shared)
            .repositories
            .get(&key(owner, name))?
            .files
            .get(path)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The requests served so far.
    pub fn log(&self) -> Vec<Logged> {
        lock(&self.shared).log.clone()
    }

    /// Answers every call with GitHub's rate limit (or stops).
    pub fn set_rate_limited(&self, limited: bool) {
        lock(&self.shared).rate_limited = limited;
    }

    /// Every repository as `(owner, name, files)`.
    pub fn repositories_with_files(&self) -> Vec<RepositoryFiles> {
        lock(&self.shared)
            .repositories
            .values()
            .map(|r| {
                let files = r
                    .files
                    .iter()
                    .map(|(p, c)| (p.clone(), c.clone()))
                    .collect();
                (r.owner.clone(), r.name.clone(), files)
            })
            .collect()
    }

    /// Logs a request served elsewhere (the git front).
    pub fn record(&self, logged: Logged) {
        lock(&self.shared).log.push(logged);
    }

    /// Whether `token` is a live installation token (minted, not deleted, not expired).
    pub fn token_known(&self, token: &str) -> bool {
        let now = now(&self.shared);
        lock(&self.shared).live_token(token, now).is_some()
    }

    /// Whether `token` may `write` (or read) the contents of `owner/name` now: the check the
    /// contents API and the git front make.
    pub fn token_allows(&self, token: &str, owner: &str, name: &str, write: bool) -> bool {
        let hub = lock(&self.shared);
        let now = now(&self.shared);
        let level = if write { "write" } else { "read" };
        matches!(
            hub.live_token(token, now),
            Some(t) if hub.token_reaches(t, owner, name) && grants(&t.permissions, "contents", level)
        )
    }
}

fn key(owner: &str, name: &str) -> String {
    format!(
        "{}/{}",
        owner.to_ascii_lowercase(),
        name.to_ascii_lowercase()
    )
}

fn now(shared: &Shared) -> i64 {
    shared.1.now().as_millis() / 1000
}

fn new_app(id: u64) -> App {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key");
    let der = key.to_pkcs1_der().expect("PKCS#1");
    let pair = ring::signature::RsaKeyPair::from_der(der.as_bytes()).expect("ring reads it");
    let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
    let body = STANDARD.encode(der.as_bytes());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    let private_key_pem = format!(
        "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
        lines.join("\n")
    );
    App {
        id,
        private_key_pem,
        public,
    }
}

/// Whether `permissions` hold `name` at `level` or above.
fn grants(permissions: &Permissions, name: &str, level: &str) -> bool {
    match permissions.get(name).map(String::as_str) {
        Some("write" | "admin") => true,
        Some("read") => level == "read",
        _ => false,
    }
}

impl Hub {
    fn live_token(&self, token: &str, now: i64) -> Option<&Token> {
        self.tokens
            .get(token)
            .filter(|t| !t.revoked && t.expires_at > now)
    }

    fn token_reaches(&self, token: &Token, owner: &str, name: &str) -> bool {
        let Some(installation) = self.installations.get(&token.installation) else {
            return false;
        };
        let repo = key(owner, name);
        installation.account.eq_ignore_ascii_case(owner)
            && self.repositories.contains_key(&repo)
            && token
                .repositories
                .as_ref()
                .is_none_or(|set| set.contains(&repo))
            && installation
                .repositories
                .as_ref()
                .is_none_or(|set| set.contains(&name.to_ascii_lowercase()))
    }
}

/// GitHub's error body.
fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "status": status.as_u16().to_string(),
        })),
    )
        .into_response()
}

fn not_found_error() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

async fn not_found() -> Response {
    not_found_error()
}

/// Who is calling.
enum Caller {
    App,
    Token(String),
    Nobody,
}

/// The credential of a request: a bearer/`token` value, or git's Basic password.
fn credential(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "token" => Some(rest.trim().to_owned()),
        "basic" => {
            let decoded = STANDARD.decode(rest.trim()).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            text.split_once(':')
                .map(|(_, password)| password.to_owned())
        }
        _ => None,
    }
}

/// Checks an App JWT as GitHub does; the refusal's message is GitHub's.
fn check_app_jwt(app: &App, jwt: &str, now: i64) -> Result<(), &'static str> {
    const UNDECODABLE: &str = "A JSON web token could not be decoded";
    let mut parts = jwt.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(UNDECODABLE);
    };
    let decode = |part: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    let (Some(header), Some(claims), Ok(signature)) = (
        decode(header),
        decode(claims),
        URL_SAFE_NO_PAD.decode(signature),
    ) else {
        return Err(UNDECODABLE);
    };
    if header["alg"] != "RS256" {
        return Err(UNDECODABLE);
    }
    let signed = &jwt[..jwt.rfind('.').unwrap_or_default()];
    if app
        .public
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &signature,
        )
        .is_err()
    {
        return Err(UNDECODABLE);
    }
    let issuer = match &claims["iss"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    if issuer != app.id.to_string() {
        return Err("Integration not found");
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err("Missing 'issued at' or 'expiration time' claim");
    };
    if exp <= now {
        return Err(
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        );
    }
    if exp - iat > MAX_JWT_SECONDS || exp - now > MAX_JWT_SECONDS {
        return Err("'Expiration time' claim ('exp') is too far in the future");
    }
    if iat > now + 60 {
        return Err(
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        );
    }
    Ok(())
}

/// What every handler needs of a request to identify the caller and log it.
struct Call {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Call {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        })
    }
}

/// [`serve`] for the App's own routes: anything but an App JWT is refused.
fn serve_app(
    shared: &Shared,
    call: &Call,
    handle: impl FnOnce(&mut Hub, i64) -> Response,
) -> Response {
    serve(shared, call, |hub, caller, now| {
        needs_app(&caller).unwrap_or_else(|| handle(hub, now))
    })
}

/// Identifies the caller, logs the request and answers the rate limit when it is on; the
/// handler then runs with the hub locked.
fn serve(
    shared: &Shared,
    call: &Call,
    handle: impl FnOnce(&mut Hub, Caller, i64) -> Response,
) -> Response {
    let (method, uri) = (&call.method, &call.uri);
    let now = now(shared);
    let mut hub = lock(shared);
    let presented = credential(&call.headers);
    let (caller, label) = match presented {
        Some(value) if value.starts_with("eyJ") => {
            let app = hub.app.clone().expect("the App exists");
            match check_app_jwt(&app, &value, now) {
                Ok(()) => (Caller::App, "app".to_owned()),
                Err(message) => {
                    let answer = error(StatusCode::UNAUTHORIZED, message);
                    hub.log.push(logged(method, uri, "app (refused)", 401));
                    return answer;
                }
            }
        }
        Some(value) => match hub.live_token(&value, now) {
            Some(token) => {
                let label = format!("installation {}", token.installation);
                (Caller::Token(value), label)
            }
            None => {
                hub.log.push(logged(method, uri, "token (refused)", 401));
                return error(StatusCode::UNAUTHORIZED, "Bad credentials");
            }
        },
        None => (Caller::Nobody, "anonymous".to_owned()),
    };
    let answer = if hub.rate_limited {
        let mut answer = error(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for installation.",
        );
        let headers = answer.headers_mut();
        headers.insert("x-ratelimit-remaining", 0.into());
        headers.insert("x-ratelimit-limit", 5_000.into());
        headers.insert("retry-after", 30.into());
        answer
    } else {
        handle(&mut hub, caller, now)
    };
    let status = answer.status().as_u16();
    hub.log.push(logged(method, uri, &label, status));
    answer
}

fn logged(method: &Method, uri: &Uri, caller: &str, status: u16) -> Logged {
    Logged {
        method: method.to_string(),
        path: uri.path().to_owned(),
        caller: caller.to_owned(),
        status,
    }
}

fn needs_app(caller: &Caller) -> Option<Response> {
    match caller {
        Caller::App => None,
        _ => Some(error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        )),
    }
}

fn installation_json(installation: &Installation, app_id: u64) -> Value {
    json!({
        "id": installation.id,
        "app_id": app_id,
        "app_slug": "creddy-test",
        "target_type": "Organization",
        "account": {"login": installation.account, "id": 1, "type": "Organization"},
        "repository_selection": if installation.repositories.is_some() { "selected" } else { "all" },
        "permissions": installation.permissions,
        "events": [],
        "access_tokens_url": format!("/app/installations/{}/access_tokens", installation.id),
        "repositories_url": "/installation/repositories",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    })
}

async fn get_app(State(shared): State<Shared>, call: Call) -> Response {
    serve_app(&shared, &call, |hub, _| {
        let id = hub.app.as_ref().map_or(0, |a| a.id);
        Json(json!({
            "id": id, "slug": "creddy-test", "name": "creddy test",
            "owner": {"login": "acme", "id": 1, "type": "Organization"},
            "permissions": {"contents": "write", "metadata": "read", "pull_requests": "write", "issues": "write"},
            "events": [], "installations_count": hub.installations.len(),
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        }))
        .into_response()
    })
}

async fn get_installation(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    serve_app(&shared, &call, |hub, _| {
        let app_id = hub.app.as_ref().map_or(0, |a| a.id);
        id.parse::<u64>()
            .ok()
            .and_then(|id| hub.installations.get(&id))
            .map_or_else(not_found_error, |i| {
                Json(installation_json(i, app_id)).into_response()
            })
    })
}

fn find_installation(hub: &Hub, owner: &str, repo: Option<&str>) -> Response {
    let app_id = hub.app.as_ref().map_or(0, |a| a.id);
    if let Some(repo) = repo
        && !hub.repositories.contains_key(&key(owner, repo))
    {
        return not_found_error();
    }
    hub.installations
        .values()
        .find(|i| {
            i.account.eq_ignore_ascii_case(owner)
                && repo.is_none_or(|r| {
                    i.repositories
                        .as_ref()
                        .is_none_or(|set| set.contains(&r.to_ascii_lowercase()))
                })
        })
        .map_or_else(not_found_error, |i| {
            Json(installation_json(i, app_id)).into_response()
        })
}

async fn repo_installation(
    State(shared): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    call: Call,
) -> Response {
    serve_app(&shared, &call, |hub, _| {
        find_installation(hub, &owner, Some(&repo))
    })
}

async fn account_installation(
    State(shared): State<Shared>,
    Path(owner): Path<String>,
    call: Call,
) -> Response {
    serve_app(&shared, &call, |hub, _| {
        find_installation(hub, &owner, None)
    })
}

async fn mint(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    call: Call,
    body: Option<Json<Value>>,
) -> Response {
    serve_app(&shared, &call, |hub, now| {
        let Some(installation) = id
            .parse::<u64>()
            .ok()
            .and_then(|id| hub.installations.get(&id))
            .cloned()
        else {
            return not_found_error();
        };
        let body = body.map(|Json(v)| v).unwrap_or_else(|| json!({}));
        mint_for(hub, &installation, &body, now)
    })
}

/// GitHub's rules for an installation token: every repository named in the installation
/// and the account, every permission within the installation's.
fn mint_for(hub: &mut Hub, installation: &Installation, body: &Value, now: i64) -> Response {
    let mut repositories = None;
    if let Some(names) = body.get("repositories") {
        let Some(names) = names.as_array().filter(|n| n.len() <= 500) else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.");
        };
        let mut set = BTreeSet::new();
        for name in names {
            let name = name.as_str().unwrap_or_default();
            let repo = key(&installation.account, name);
            let in_installation = installation
                .repositories
                .as_ref()
                .is_none_or(|s| s.contains(&name.to_ascii_lowercase()));
            if !hub.repositories.contains_key(&repo) || !in_installation {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "There is at least one repository that does not exist or is not accessible to the parent installation.",
                );
            }
            set.insert(repo);
        }
        repositories = Some(set);
    }
    let permissions: Permissions = match body.get("permissions").and_then(Value::as_object) {
        Some(asked) => asked
            .iter()
            .map(|(n, l)| (n.clone(), l.as_str().unwrap_or_default().to_owned()))
            .collect(),
        None => installation.permissions.clone(),
    };
    for (name, level) in &permissions {
        if !grants(&installation.permissions, name, level) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The permissions requested are not granted to this installation.",
            );
        }
    }
    let mut bytes = [0u8; 18];
    creddy_core::secret::fill_random(&mut bytes);
    let token = format!("ghs_{}", hex::encode(bytes));
    let expires_at = now + TOKEN_LIFETIME_SECONDS;
    let repositories_json: Vec<Value> = repositories
        .iter()
        .flatten()
        .filter_map(|k| hub.repositories.get(k))
        .map(repository_json)
        .collect();
    hub.tokens.insert(
        token.clone(),
        Token {
            installation: installation.id,
            repositories: repositories.clone(),
            permissions: permissions.clone(),
            expires_at,
            revoked: false,
        },
    );
    let mut answer = json!({
        "token": token,
        "expires_at": rfc3339(expires_at),
        "permissions": permissions,
        "repository_selection": if repositories.is_some() { "selected" } else { "all" },
    });
    if repositories.is_some() {
        answer["repositories"] = json!(repositories_json);
    }
    (StatusCode::CREATED, Json(answer)).into_response()
}

fn rfc3339(seconds: i64) -> String {
    creddy_core::Timestamp::from_millis(seconds * 1000).to_rfc3339()
}

async fn delete_token(State(shared): State<Shared>, call: Call) -> Response {
    serve(&shared, &call, |hub, caller, _| match caller {
        Caller::Token(value) => {
            if let Some(token) = hub.tokens.get_mut(&value) {
                token.revoked = true;
            }
            StatusCode::NO_CONTENT.into_response()
        }
        _ => error(StatusCode::UNAUTHORIZED, "Bad credentials"),
    })
}

fn repository_json(repo: &Repository) -> Value {
    json!({
        "id": repo.id,
        "node_id": format!("R_{}", repo.id),
        "name": repo.name,
        "full_name": format!("{}/{}", repo.owner, repo.name),
        "private": true,
        "owner": {"login": repo.owner, "id": 1, "type": "Organization"},
        "default_branch": "main",
        "visibility": "private",
    })
}

/// Why a token does not get at a repository, as GitHub answers it.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// 404: the token does not reach the repository (GitHub does not say it exists).
    NotFound,
    /// 401: unknown, expired or deleted.
    BadCredentials,
    /// 403: reached without the permission.
    NotAccessible,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => not_found_error(),
            Self::BadCredentials => error(StatusCode::UNAUTHORIZED, "Bad credentials"),
            Self::NotAccessible => error(
                StatusCode::FORBIDDEN,
                "Resource not accessible by integration",
            ),
        }
    }
}

/// The token's view of `owner/repo`: the repository when it reaches it with `permission` at
/// `level`.
fn reach<'h>(
    hub: &'h Hub,
    caller: &Caller,
    now: i64,
    owner: &str,
    repo: &str,
    permission: &str,
    level: &str,
) -> Result<&'h Repository, Refusal> {
    let Caller::Token(value) = caller else {
        return Err(Refusal::NotFound);
    };
    let Some(token) = hub.live_token(value, now) else {
        return Err(Refusal::BadCredentials);
    };
    if !hub.token_reaches(token, owner, repo) {
        return Err(Refusal::NotFound);
    }
    if !grants(&token.permissions, permission, level) {
        return Err(Refusal::NotAccessible);
    }
    hub.repositories
        .get(&key(owner, repo))
        .ok_or(Refusal::NotFound)
}

async fn get_repository(
    State(shared): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    call: Call,
) -> Response {
    serve(&shared, &call, |hub, caller, now| {
        match reach(hub, &caller, now, &owner, &repo, "metadata", "read") {
            Ok(found) => Json(repository_json(found)).into_response(),
            Err(refused) => refused.into_response(),
        }
    })
}

/// Git's blob id of `content`.
fn blob_sha(content: &[u8]) -> String {
    let mut input = format!("blob {}\0", content.len()).into_bytes();
    input.extend_from_slice(content);
    hex::encode(ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        &input,
    ))
}

fn file_json(repo: &Repository, path: &str, content: &[u8]) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    json!({
        "type": "file", "encoding": "base64", "size": content.len(), "name": name, "path": path,
        "content": STANDARD.encode(content), "sha": blob_sha(content),
        "url": format!("/repos/{}/{}/contents/{path}", repo.owner, repo.name),
        "git_url": null, "html_url": null, "download_url": null,
        "_links": {"self": format!("/repos/{}/{}/contents/{path}", repo.owner, repo.name)},
    })
}

async fn get_contents(
    State(shared): State<Shared>,
    Path((owner, repo, path)): Path<(String, String, String)>,
    call: Call,
) -> Response {
    serve(&shared, &call, |hub, caller, now| {
        let found = match reach(hub, &caller, now, &owner, &repo, "contents", "read") {
            Ok(found) => found,
            Err(refused) => return refused.into_response(),
        };
        match found.files.get(&path) {
            Some(content) => Json(file_json(found, &path, content)).into_response(),
            None => not_found_error(),
        }
    })
}

async fn put_contents(
    State(shared): State<Shared>,
    Path((owner, repo, path)): Path<(String, String, String)>,
    call: Call,
    body: Option<Json<Value>>,
) -> Response {
    serve(&shared, &call, |hub, caller, now| {
        if let Err(refused) = reach(hub, &caller, now, &owner, &repo, "contents", "write") {
            return refused.into_response();
        }
        let body = body.map(|Json(v)| v).unwrap_or_default();
        let (Some(message), Some(content)) = (
            body["message"].as_str(),
            body["content"]
                .as_str()
                .and_then(|c| STANDARD.decode(c.replace('\n', "")).ok()),
        ) else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.");
        };
        let Some(found) = hub.repositories.get_mut(&key(&owner, &repo)) else {
            return not_found_error();
        };
        let existing = found.files.get(&path).map(|c| blob_sha(c));
        let status = match (&existing, body["sha"].as_str()) {
            (None, _) => StatusCode::CREATED,
            (Some(sha), Some(given)) if sha == given => StatusCode::OK,
            (Some(_), None) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid request.\n\n\"sha\" wasn't supplied.",
                );
            }
            (Some(sha), Some(_)) => {
                return error(
                    StatusCode::CONFLICT,
                    &format!("{path} does not match {sha}"),
                );
            }
        };
        found.files.insert(path.clone(), content.clone());
        let file = file_json(found, &path, &content);
        let commit = blob_sha(format!("{message}{}", file["sha"]).as_bytes());
        (
            status,
            Json(json!({
                "content": file,
                "commit": {"sha": commit, "message": message, "node_id": format!("C_{commit}")},
            })),
        )
            .into_response()
    })
}

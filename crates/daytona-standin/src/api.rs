//! The HTTP surface: `/api/api-keys…`, `/api/sandbox…`, and `/_standin/…` for tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use creddy_core::{Clock, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::PERMISSIONS;
use crate::state::{Key, State, hash};

/// Faults to inject, switched by tests with `POST /_standin/faults`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Delay every `/api` answer by this many milliseconds, before handling the call.
    pub latency_ms: u64,
    /// Handle every `/api` call at once, then hold the answer this many milliseconds (the
    /// change is made even if the caller is gone by then: a crash between an upstream
    /// change and its record).
    pub respond_delay_ms: u64,
    /// Answer every `/api` call with this 5xx status.
    pub fail_status: Option<u16>,
    /// Answer every `/api` call with 429 and this `Retry-After` (seconds).
    pub rate_limit_retry_after: Option<u64>,
    /// Answer `DELETE /api/api-keys/…` with 500.
    pub fail_deletes: bool,
    /// Behave like Daytona behind a gateway with Daytona down: 502 with a non-JSON body.
    pub down: bool,
}

/// The shared state of a running stand-in.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    faults: Mutex<Faults>,
    clock: Arc<dyn Clock>,
}

type App = Arc<Shared>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The stand-in's router over `state`, reading time from `clock`.
pub fn router(state: State, clock: Arc<dyn Clock>) -> Router {
    let app: App = Arc::new(Shared {
        state: Mutex::new(state),
        faults: Mutex::new(Faults::default()),
        clock,
    });
    Router::new()
        .route("/api/api-keys", post(create_key).get(list_keys))
        .route("/api/api-keys/current", get(current_key))
        .route("/api/api-keys/{name}", get(get_key).delete(delete_key))
        .route("/api/sandbox", get(list_sandboxes).post(create_sandbox))
        .route("/api/sandbox/{id}", get(get_sandbox).delete(delete_sandbox))
        .route("/_standin/faults", post(set_faults))
        .route("/_standin/state", get(dump_state))
        .route("/_standin/seed", post(seed))
        .with_state(app)
}

/// Daytona's error envelope.
struct DaytonaError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

fn fail(status: StatusCode, message: impl Into<String>) -> DaytonaError {
    DaytonaError {
        status,
        message: message.into(),
        retry_after: None,
    }
}

impl DaytonaError {
    fn into_response_for(self, uri: &Uri, now: Timestamp) -> Response {
        let body = json!({
            "path": uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            "timestamp": millis_rfc3339(now),
            "statusCode": self.status.as_u16(),
            "error": self.status.canonical_reason().unwrap_or("Error"),
            "message": self.message,
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert("retry-after", v);
        }
        response
    }
}

/// RFC 3339 with milliseconds, as JavaScript's `toISOString` writes it.
fn millis_rfc3339(t: Timestamp) -> String {
    let text = t.to_rfc3339();
    match text.strip_suffix('Z') {
        Some(base) if !base.contains('.') => format!("{base}.000Z"),
        _ => text,
    }
}

type Outcome = Result<Response, DaytonaError>;

/// Applies the faults, then runs `handler`, and renders errors in Daytona's envelope.
async fn guarded(
    app: &App,
    uri: &Uri,
    is_delete_key: bool,
    handler: impl FnOnce() -> Outcome,
) -> Response {
    let faults = lock(&app.faults).clone();
    if faults.down {
        return (
            StatusCode::BAD_GATEWAY,
            "<html><body>502 Bad Gateway</body></html>",
        )
            .into_response();
    }
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let outcome = if let Some(status) = faults.fail_status {
        Err(fail(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "An unexpected error occurred.",
        ))
    } else if let Some(seconds) = faults.rate_limit_retry_after {
        Err(DaytonaError {
            retry_after: Some(seconds),
            ..fail(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlerException: Too Many Requests",
            )
        })
    } else if is_delete_key && faults.fail_deletes {
        Err(fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "An unexpected error occurred.",
        ))
    } else {
        handler()
    };
    if faults.respond_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.respond_delay_ms)).await;
    }
    outcome.unwrap_or_else(|e| e.into_response_for(uri, app.clock.now()))
}

/// Like [`guarded`], for routes that need a valid key: runs `handler` with the state locked
/// and the caller's key.
async fn authed(
    app: &App,
    uri: &Uri,
    headers: &HeaderMap,
    is_delete_key: bool,
    handler: impl FnOnce(&mut State, Key) -> Outcome,
) -> Response {
    guarded(app, uri, is_delete_key, || {
        let mut state = lock(&app.state);
        let key = caller(app, &mut state, headers)?;
        handler(&mut state, key)
    })
    .await
}

/// The calling key: a valid bearer value, not expired, of the organisation named in
/// `X-Daytona-Organization-ID` when that header is sent.
fn caller(app: &App, state: &mut State, headers: &HeaderMap) -> Result<Key, DaytonaError> {
    let invalid = || fail(StatusCode::UNAUTHORIZED, "Invalid credentials");
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(invalid)?;
    let now = app.clock.now();
    let key = state.key_by_value(value).cloned().ok_or_else(invalid)?;
    let expired = key
        .expires_at
        .as_deref()
        .and_then(Timestamp::parse_rfc3339)
        .is_some_and(|at| at <= now);
    if expired {
        return Err(invalid());
    }
    if let Some(org) = headers
        .get("x-daytona-organization-id")
        .and_then(|v| v.to_str().ok())
        && org != key.organization_id
    {
        return Err(fail(
            StatusCode::FORBIDDEN,
            "Invalid authentication context",
        ));
    }
    if let Some(stored) = state.keys.get_mut(&key.name) {
        stored.last_used_at = Some(millis_rfc3339(now));
    }
    Ok(key)
}

fn require(key: &Key, permission: &str) -> Result<(), DaytonaError> {
    if key.permissions.iter().any(|p| p == permission) {
        Ok(())
    } else {
        Err(fail(StatusCode::FORBIDDEN, "Access denied"))
    }
}

fn masked(key: &Key) -> Value {
    json!({
        "name": key.name,
        "value": format!("dtn{}{}", "*".repeat(20), key.tail),
        "createdAt": key.created_at,
        "permissions": key.permissions,
        "lastUsedAt": key.last_used_at,
        "expiresAt": key.expires_at,
        "userId": key.user_id,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateKey {
    name: Option<String>,
    permissions: Option<Value>,
    expires_at: Option<String>,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    creddy_core::secret::fill_random(&mut buf);
    hex::encode(buf)
}

async fn create_key(
    AxState(app): AxState<App>,
    uri: Uri,
    headers: HeaderMap,
    body: Option<Json<CreateKey>>,
) -> Response {
    authed(&app, &uri, &headers, false, |state, key| {
        require(&key, "manage:api_keys")?;
        let Json(body) =
            body.ok_or_else(|| fail(StatusCode::BAD_REQUEST, "name must be a string"))?;
        let name = body
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| fail(StatusCode::BAD_REQUEST, "name must be a string"))?;
        let requested: Vec<String> = match body.permissions {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>(),
            _ => None,
        }
        .filter(|p: &Vec<String>| p.iter().all(|p| PERMISSIONS.contains(&p.as_str())))
        .ok_or_else(|| {
            fail(
                StatusCode::BAD_REQUEST,
                format!(
                    "each value in permissions must be one of the following values: {}",
                    PERMISSIONS.join(", ")
                ),
            )
        })?;
        let expires_at = match body.expires_at {
            Some(text) => Some(
                Timestamp::parse_rfc3339(&text)
                    .map(millis_rfc3339)
                    .ok_or_else(|| {
                        fail(
                            StatusCode::BAD_REQUEST,
                            "expiresAt must be a valid ISO 8601 date string",
                        )
                    })?,
            ),
            None => None,
        };
        let missing: Vec<&str> = requested
            .iter()
            .filter(|p| !key.permissions.contains(p))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(fail(
                StatusCode::FORBIDDEN,
                format!(
                    "Insufficient permissions for assigning: {}",
                    missing.join(", ")
                ),
            ));
        }
        if state.keys.contains_key(&name) {
            return Err(fail(
                StatusCode::CONFLICT,
                "API key with this name already exists",
            ));
        }
        let value = format!("dtn_{}", random_hex(32));
        let now = millis_rfc3339(app.clock.now());
        let created = Key {
            name: name.clone(),
            value_sha256: hash(&value),
            tail: value[value.len() - 3..].to_owned(),
            permissions: requested.clone(),
            created_at: now.clone(),
            expires_at: expires_at.clone(),
            last_used_at: None,
            user_id: key.user_id.clone(),
            organization_id: key.organization_id.clone(),
        };
        state.keys.insert(name.clone(), created);
        state.save();
        let mut body =
            json!({"name": name, "value": value, "createdAt": now, "permissions": requested});
        if let Some(at) = expires_at {
            body["expiresAt"] = json!(at);
        }
        Ok((StatusCode::CREATED, Json(body)).into_response())
    })
    .await
}

async fn list_keys(AxState(app): AxState<App>, uri: Uri, headers: HeaderMap) -> Response {
    authed(&app, &uri, &headers, false, |state, key| {
        let keys: Vec<Value> = state
            .keys
            .values()
            .filter(|k| k.organization_id == key.organization_id)
            .map(masked)
            .collect();
        Ok(Json(keys).into_response())
    })
    .await
}

async fn current_key(AxState(app): AxState<App>, uri: Uri, headers: HeaderMap) -> Response {
    authed(&app, &uri, &headers, false, |state, key| {
        let current = state.keys.get(&key.name).map(masked).unwrap_or(Value::Null);
        Ok(Json(current).into_response())
    })
    .await
}

async fn get_key(
    AxState(app): AxState<App>,
    uri: Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    authed(&app, &uri, &headers, false, |state, key| {
        let found = state
            .keys
            .get(&name)
            .filter(|k| k.organization_id == key.organization_id);
        found
            .map(|k| Json(masked(k)).into_response())
            .ok_or_else(|| fail(StatusCode::NOT_FOUND, "API key not found"))
    })
    .await
}

async fn delete_key(
    AxState(app): AxState<App>,
    uri: Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    authed(&app, &uri, &headers, true, |state, key| {
        require(&key, "manage:api_keys")?;
        state.delete_calls.push(name.clone());
        let exists = state
            .keys
            .get(&name)
            .is_some_and(|k| k.organization_id == key.organization_id);
        if !exists {
            return Err(fail(StatusCode::NOT_FOUND, "API key not found"));
        }
        state.keys.remove(&name);
        state.deleted_keys.push(name);
        state.save();
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

async fn list_sandboxes(AxState(app): AxState<App>, uri: Uri, headers: HeaderMap) -> Response {
    authed(&app, &uri, &headers, false, |state, key| {
        let items: Vec<Value> = state
            .sandboxes
            .values()
            .filter(|s| s["organizationId"] == key.organization_id)
            .cloned()
            .collect();
        Ok(Json(json!({"items": items, "nextCursor": null})).into_response())
    })
    .await
}

fn uuid_like() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

async fn create_sandbox(
    AxState(app): AxState<App>,
    uri: Uri,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    authed(&app, &uri, &headers, false, |state, key| {
        require(&key, "write:sandboxes")?;
        let body = body.map(|Json(b)| b).unwrap_or_else(|| json!({}));
        let id = uuid_like();
        let now = millis_rfc3339(app.clock.now());
        let name = body["name"]
            .as_str()
            .map_or_else(|| id.clone(), str::to_owned);
        let sandbox = json!({
            "id": id, "organizationId": key.organization_id, "name": name,
            "snapshot": body["snapshot"].as_str().unwrap_or("daytonaio/sandbox:0.5.0"),
            "user": body["user"].as_str().unwrap_or("daytona"),
            "env": body.get("env").cloned().unwrap_or_else(|| json!({})),
            "labels": body.get("labels").cloned().unwrap_or_else(|| json!({})),
            "public": body["public"].as_bool().unwrap_or(false),
            "networkBlockAll": body["networkBlockAll"].as_bool().unwrap_or(false),
            "kvm": false, "target": "us", "cpu": 1, "gpu": 0, "memory": 1, "disk": 3,
            "state": "started", "desiredState": "started",
            "autoStopInterval": 15, "autoArchiveInterval": 10080, "autoDeleteInterval": -1,
            "volumes": [], "createdAt": now, "updatedAt": now,
            "toolboxProxyUrl": "http://127.0.0.1:4000/toolbox",
        });
        state.sandboxes.insert(id, sandbox.clone());
        state.save();
        Ok(Json(sandbox).into_response())
    })
    .await
}

fn find_sandbox(
    state: &State,
    org: &str,
    id_or_name: &str,
) -> Result<(String, Value), DaytonaError> {
    state
        .sandboxes
        .iter()
        .find(|(id, s)| {
            s["organizationId"] == org && (id.as_str() == id_or_name || s["name"] == id_or_name)
        })
        .map(|(id, s)| (id.clone(), s.clone()))
        .ok_or_else(|| {
            fail(
                StatusCode::NOT_FOUND,
                format!("Sandbox with ID or name {id_or_name} not found"),
            )
        })
}

async fn get_sandbox(
    AxState(app): AxState<App>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    authed(&app, &uri, &headers, false, |state, key| {
        let (_, sandbox) = find_sandbox(state, &key.organization_id, &id)?;
        Ok(Json(sandbox).into_response())
    })
    .await
}

async fn delete_sandbox(
    AxState(app): AxState<App>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    authed(&app, &uri, &headers, false, |state, key| {
        require(&key, "delete:sandboxes")?;
        let (found, mut sandbox) = find_sandbox(state, &key.organization_id, &id)?;
        state.sandboxes.remove(&found);
        state.save();
        sandbox["state"] = json!("destroying");
        sandbox["desiredState"] = json!("destroyed");
        Ok(Json(sandbox).into_response())
    })
    .await
}

async fn set_faults(AxState(app): AxState<App>, Json(faults): Json<Faults>) -> StatusCode {
    *lock(&app.faults) = faults;
    StatusCode::NO_CONTENT
}

async fn dump_state(AxState(app): AxState<App>) -> Json<Value> {
    let state = lock(&app.state);
    Json(json!({
        "keys": state.keys.values().map(|k| json!({"name": k.name, "permissions": k.permissions, "expiresAt": k.expires_at, "organizationId": k.organization_id})).collect::<Vec<_>>(),
        "deleted_keys": state.deleted_keys,
        "delete_calls": state.delete_calls,
        "sandboxes": state.sandboxes.len(),
    }))
}

/// `POST /_standin/seed`: `{"name","value","permissions":[…],"organization_id"}` adds a key
/// with a known value (the master key a test or the demo hands to creddy).
#[derive(Debug, Deserialize)]
struct Seed {
    name: String,
    value: String,
    permissions: Vec<String>,
    organization_id: String,
}

async fn seed(AxState(app): AxState<App>, Json(seed): Json<Seed>) -> StatusCode {
    let now = millis_rfc3339(app.clock.now());
    let permissions: Vec<&str> = seed.permissions.iter().map(String::as_str).collect();
    lock(&app.state).seed_key(
        &seed.name,
        &seed.value,
        &permissions,
        &seed.organization_id,
        &now,
    );
    StatusCode::NO_CONTENT
}

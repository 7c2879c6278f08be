//! Minting, scoping, revoking and error mapping, end to end through the host.

use std::sync::Arc;
use std::time::Duration;

use creddy_core::ManualClock;
use creddy_daytona_standin::{State, router};
use creddy_plugin::host::{HostError, LaunchSpec, PluginProcess};
use creddy_plugin::protocol::{AgentRef, ErrorKind, GetCredentialParams};
use creddy_testkit::plugins::{install_as, workspace_binary};
use serde_json::{Value, json};
use tempfile::TempDir;

const MASTER: &str = "dtn_master_key_for_tests";
const ORG: &str = "org-acme";

struct Daytona {
    url: String,
    clock: Arc<ManualClock>,
    http: reqwest::Client,
    _dir: TempDir,
    binary: std::path::PathBuf,
    sha256: String,
}

async fn standin(master_permissions: &[&str]) -> Daytona {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let clock = Arc::new(ManualClock::starting_now());
    let mut state = State::default();
    state.seed_key(
        "master",
        MASTER,
        master_permissions,
        ORG,
        "2026-01-01T00:00:00.000Z",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port is free");
    let addr = listener.local_addr().expect("the listener has an address");
    let app = router(state, clock.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = TempDir::new().expect("TempDir is created");
    let installed = install_as(
        &workspace_binary("creddy-daytona", "creddy-daytona"),
        &dir.path().join("plugins"),
        "daytona",
    );
    Daytona {
        url: format!("http://{addr}/api"),
        clock,
        http: reqwest::Client::new(),
        _dir: dir,
        binary: installed.binary,
        sha256: installed.sha256,
    }
}

const FULL: [&str; 9] = creddy_daytona_standin::MASTER_PERMISSIONS;

impl Daytona {
    async fn plugin(&self, config: Value) -> Result<PluginProcess, HostError> {
        let mut spec = LaunchSpec::new(
            "daytona",
            self.binary.clone(),
            &self.sha256,
            config,
            "0.1.0",
        );
        spec.timeout_cap = Some(Duration::from_secs(20));
        PluginProcess::start(spec).await
    }

    async fn configured(&self) -> PluginProcess {
        self.plugin(json!({"api_key": MASTER, "base_url": self.url, "organization_id": ORG}))
            .await
            .expect("the plugin starts")
    }

    async fn call(&self, method: reqwest::Method, path: &str, key: &str) -> (u16, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(key)
            .json(&json!({}))
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn faults(&self, faults: Value) {
        let base = self.url.trim_end_matches("/api");
        self.http
            .post(format!("{base}/_standin/faults"))
            .json(&faults)
            .send()
            .await
            .expect("the server answers");
    }

    async fn state(&self) -> Value {
        let base = self.url.trim_end_matches("/api");
        let response = self
            .http
            .get(format!("{base}/_standin/state"))
            .send()
            .await
            .expect("the server answers");
        response.json().await.unwrap_or(Value::Null)
    }
}

fn request(scopes: &[&str], lease: &str, ttl: u64) -> GetCredentialParams {
    GetCredentialParams {
        agent: AgentRef {
            id: "ag_1".into(),
            name: "CI Agent".into(),
            scopes: vec!["daytona".into()],
        },
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ttl,
        lease_id: lease.into(),
        parameters: Default::default(),
    }
}

fn plugin_error(result: Result<impl std::fmt::Debug, HostError>) -> (ErrorKind, String) {
    match result {
        Err(HostError::Plugin { kind, message, .. }) => (kind, message),
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_minted_key_carries_the_scope_permissions_and_the_lease_expiry() {
    let daytona = standin(&FULL).await;
    let plugin = daytona.configured().await;
    assert_eq!(
        plugin.validate().await.expect("the plugin validates"),
        Vec::<String>::new()
    );
    let full = plugin
        .get_credential(&request(
            &["daytona"],
            "cred_01AAAAAAAAAAAAAAAAAAAAAAAA",
            3600,
        ))
        .await
        .expect("the plugin issues the credential");
    assert!(
        full.value.expose().starts_with("dtn_") && full.value.expose().len() == 68,
        "{}",
        full.value.expose()
    );
    assert_eq!(
        full.external_id.as_deref(),
        Some("creddy-ci-agent-01aaaaaaaaaaaaaaaaaaaaaaaa")
    );
    assert_eq!(full.metadata["api_url"], daytona.url);
    assert_eq!(full.metadata["organization_id"], ORG);
    let names: Vec<&str> = full.env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["DAYTONA_API_KEY", "DAYTONA_API_URL"]);
    let state = daytona.state().await;
    let key = state["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["name"] == "creddy-ci-agent-01aaaaaaaaaaaaaaaaaaaaaaaa")
        .cloned()
        .unwrap_or_default();
    assert_eq!(key["permissions"].as_array().map(Vec::len), Some(8));
    assert_eq!(
        key["expiresAt"],
        json!(full.expires_at),
        "Daytona itself expires the key with the lease"
    );
    let (created, _) = daytona
        .call(reqwest::Method::POST, "/sandbox", full.value.expose())
        .await;
    assert_eq!(created, 200, "the key works on the sandbox endpoints");

    let read = plugin
        .get_credential(&request(&["daytona:workspaces:read"], "cred_02", 600))
        .await
        .expect("the plugin issues the credential");
    assert_eq!(
        daytona
            .call(reqwest::Method::GET, "/sandbox", read.value.expose())
            .await
            .0,
        200
    );
    let (refused, body) = daytona
        .call(reqwest::Method::POST, "/sandbox", read.value.expose())
        .await;
    assert_eq!(
        (refused, body["message"].as_str()),
        (403, Some("Access denied")),
        "read-only means read-only"
    );

    let expiry =
        creddy_core::Timestamp::parse_rfc3339(&read.expires_at).unwrap_or_else(|| panic!("expiry"));
    let now = creddy_core::Clock::now(daytona.clock.as_ref());
    daytona.clock.advance_seconds(expiry.seconds_since(now));
    assert_eq!(
        daytona
            .call(reqwest::Method::GET, "/sandbox", read.value.expose())
            .await
            .0,
        200,
        "alive until its expiry"
    );
    daytona.clock.advance_seconds(1);
    assert_eq!(
        daytona
            .call(reqwest::Method::GET, "/sandbox", read.value.expose())
            .await
            .0,
        401,
        "expired upstream at the lease's end"
    );
    plugin.stop().await;
}

#[tokio::test]
async fn revocation_deletes_the_key_and_not_found_counts_as_gone() {
    let daytona = standin(&FULL).await;
    let plugin = daytona.configured().await;
    let credential = plugin
        .get_credential(&request(&["daytona:workspaces"], "cred_03", 600))
        .await
        .expect("the plugin issues the credential");
    let agent = AgentRef {
        id: "ag_1".into(),
        name: "CI Agent".into(),
        scopes: vec![],
    };
    let first = plugin
        .revoke_credential(credential.external_id.clone(), "cred_03", agent.clone())
        .await
        .expect("the plugin revokes the credential");
    assert!(first.revoked && !first.already_gone);
    assert_eq!(
        daytona
            .call(reqwest::Method::GET, "/sandbox", credential.value.expose())
            .await
            .0,
        401,
        "the key is dead"
    );
    let again = plugin
        .revoke_credential(None, "cred_03", agent.clone())
        .await
        .expect("the plugin revokes the credential");
    assert!(again.already_gone, "found by lease id, already gone");
    assert_eq!(
        daytona.state().await["deleted_keys"],
        json!(["creddy-ci-agent-03"])
    );

    let other = plugin
        .get_credential(&request(&["daytona"], "cred_04", 600))
        .await
        .expect("the plugin issues the credential");
    daytona.faults(json!({"fail_deletes": true})).await;
    match plugin
        .revoke_credential(other.external_id.clone(), "cred_04", agent)
        .await
    {
        Err(HostError::Plugin {
            kind: ErrorKind::UpstreamUnavailable,
            retryable: true,
            ..
        }) => {}
        other => panic!("a failed delete is retryable: {other:?}"),
    }
    plugin.stop().await;
}

#[tokio::test]
async fn the_troubleshooting_messages_of_the_specification() {
    let daytona = standin(&FULL).await;
    let bad_key = daytona
        .plugin(json!({"api_key": "dtn_wrong", "base_url": daytona.url}))
        .await
        .expect("the plugin starts");
    assert_eq!(
        plugin_error(bad_key.validate().await),
        (ErrorKind::UpstreamAuth, "invalid API key".into())
    );
    let bad_org = daytona
        .plugin(json!({"api_key": MASTER, "base_url": daytona.url, "organization_id": "org-ACME"}))
        .await
        .expect("the plugin starts");
    assert_eq!(
        plugin_error(bad_org.validate().await),
        (ErrorKind::UpstreamNotFound, "organization not found".into())
    );
    let plugin = daytona.configured().await;
    let (kind, message) = plugin_error(
        plugin
            .get_credential(&request(&["daytona:org:other"], "cred_05", 600))
            .await,
    );
    assert_eq!(
        (kind, message.as_str()),
        (
            ErrorKind::OrgNotConfigured,
            "backend 'daytona' is not configured for organization 'other'"
        )
    );
    daytona.faults(json!({"fail_status": 503})).await;
    let (kind, message) = plugin_error(
        plugin
            .get_credential(&request(&["daytona"], "cred_06", 600))
            .await,
    );
    assert_eq!(kind, ErrorKind::UpstreamUnavailable);
    assert!(
        message.starts_with("Daytona unavailable at http://127.0.0.1:"),
        "{message}"
    );
    daytona.faults(json!({"down": true})).await;
    assert_eq!(
        plugin_error(
            plugin
                .get_credential(&request(&["daytona"], "cred_down", 600))
                .await
        )
        .0,
        ErrorKind::UpstreamUnavailable
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(1);
    let refused = daytona
        .plugin(json!({"api_key": MASTER, "base_url": format!("http://127.0.0.1:{closed}/api")}))
        .await
        .expect("the plugin starts");
    let (kind, message) = plugin_error(refused.validate().await);
    assert_eq!(
        kind,
        ErrorKind::UpstreamUnavailable,
        "a refused connection is an unavailable upstream"
    );
    assert!(
        message.contains(&format!("127.0.0.1:{closed}")),
        "{message}"
    );
    refused.stop().await;
    daytona.faults(json!({"rate_limit_retry_after": 0})).await;
    let (kind, _) = plugin_error(
        plugin
            .get_credential(&request(&["daytona"], "cred_07", 600))
            .await,
    );
    assert_eq!(kind, ErrorKind::UpstreamRateLimited);
    plugin.stop().await;
    for p in [bad_key, bad_org] {
        p.stop().await;
    }
}

#[tokio::test]
async fn permissions_the_master_key_lacks_are_named() {
    let daytona = standin(&["manage:api_keys", "write:sandboxes", "delete:sandboxes"]).await;
    let plugin = daytona.configured().await;
    let (kind, message) = plugin_error(
        plugin
            .get_credential(&request(&["daytona"], "cred_08", 600))
            .await,
    );
    assert_eq!(kind, ErrorKind::UpstreamPermission);
    assert!(
        message.starts_with(
            "permission denied: Insufficient permissions for assigning: write:snapshots"
        ),
        "{message}"
    );
    assert!(
        plugin
            .get_credential(&request(&["daytona:workspaces"], "cred_09", 600))
            .await
            .is_ok(),
        "a narrower scope still works"
    );
    let no_manage = standin(&["write:sandboxes"]).await;
    let plugin2 = no_manage.configured().await;
    let (kind, message) = plugin_error(plugin2.validate().await);
    assert_eq!(
        (kind, message.as_str()),
        (
            ErrorKind::UpstreamPermission,
            "permission denied: Access denied"
        )
    );
    plugin.stop().await;
    plugin2.stop().await;
}

/// A hostile upstream redirects every call, hoping the plugin follows with the master key
/// attached (to another origin, which the HTTP client would strip, or to another path of its
/// own): no redirect is followed, and no error echoes the key.
#[tokio::test]
async fn a_redirecting_upstream_is_never_followed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let daytona = standin(&FULL).await;
    let followed = Arc::new(AtomicUsize::new(0));
    let counter = followed.clone();
    let hostile = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let counter = counter.clone();
        async move {
            if uri.path().starts_with("/followed") {
                counter.fetch_add(1, Ordering::SeqCst);
                return (
                    axum::http::StatusCode::OK,
                    [("location", String::new())],
                    "{}",
                );
            }
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [("location", format!("/followed{}", uri.path()))],
                "",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port is free");
    let addr = listener.local_addr().expect("the listener has an address");
    tokio::spawn(async move { axum::serve(listener, hostile).await });
    let plugin = daytona
        .plugin(json!({"api_key": MASTER, "base_url": format!("http://{addr}/api"), "organization_id": ORG}))
        .await
        .expect("the plugin starts");
    let minted = plugin
        .get_credential(&request(&["daytona"], "cred_redirect", 600))
        .await;
    let text = format!("{minted:?}");
    assert!(text.contains("redirect, which is not followed"), "{text}");
    assert!(!text.contains(MASTER), "{text}");
    let validated = format!("{:?}", plugin.validate().await);
    assert!(!validated.contains(MASTER), "{validated}");
    assert_eq!(
        followed.load(Ordering::SeqCst),
        0,
        "a redirect was followed"
    );
    plugin.stop().await;
}

/// Proxy mode's start (§20): the plugin declares its route policy in `hello` and says where
/// proxied calls go; the master key only when creddy will inject it, never otherwise.
#[tokio::test]
async fn the_plugin_declares_its_route_policy_and_its_proxy_target() {
    use creddy_plugin::protocol::Inject;
    let daytona = standin(&FULL).await;
    let plugin = daytona.configured().await;
    let policy = plugin
        .started()
        .hello
        .proxy
        .clone()
        .expect("the Daytona plugin serves proxy mode");
    assert_eq!(policy.decide("GET", "/sandbox", &[]), Ok(()));
    assert!(policy.decide("GET", "/api-keys", &FULL).is_err());
    let lease = plugin.proxy_target(Inject::Lease).await.expect("a target");
    assert_eq!(lease.base_url, daytona.url);
    assert!(
        lease.credential.is_none(),
        "no master key for lease injection"
    );
    let host = daytona
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(lease.toolbox_hosts, ["*.daytona.io".to_owned(), host]);
    let master = plugin.proxy_target(Inject::Master).await.expect("a target");
    assert_eq!(
        master.credential.as_ref().map(|c| c.expose().as_str()),
        Some(MASTER)
    );
    assert!(!format!("{master:?}").contains(MASTER), "it never prints");
}

//! The host runs real child processes of the scriptable test plugin.

use creddy_core::secret::Secret;
use std::time::Duration;

use creddy_plugin::host::{HostError, LaunchSpec, PluginProcess};
use creddy_plugin::protocol::{AgentRef, ErrorKind, GetCredentialParams};
use creddy_testkit::plugins::{Installed, install_as, script, test_plugin_binary};
use serde_json::json;
use tempfile::TempDir;

struct Setup {
    dir: TempDir,
    installed: Installed,
}

impl Setup {
    fn new(name: &str) -> Self {
        let dir = TempDir::new().expect("TempDir is created");
        let installed = install_as(&test_plugin_binary(), &dir.path().join("plugins"), name);
        Self { dir, installed }
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("upstream")
    }

    fn spec(&self) -> LaunchSpec {
        let config = json!({"api_key": "master-key-123", "state_dir": self.state(), "note": "x", "items": ["a"]});
        let mut spec = LaunchSpec::new(
            "backend-1",
            self.installed.binary.clone(),
            &self.installed.sha256,
            config,
            "0.1.0",
        );
        spec.timeout_cap = Some(Duration::from_secs(5));
        spec.restart_delay = Duration::from_millis(10);
        spec
    }

    async fn start(&self) -> PluginProcess {
        PluginProcess::start(self.spec())
            .await
            .unwrap_or_else(|e| panic!("start: {e}"))
    }
}

fn request(lease: &str) -> GetCredentialParams {
    GetCredentialParams {
        agent: AgentRef {
            id: "ag_1".into(),
            name: "ci".into(),
            scopes: vec!["test".into()],
        },
        scopes: vec!["test".into()],
        ttl: 600,
        lease_id: lease.into(),
        parameters: Default::default(),
    }
}

async fn wait_for_restart(plugin: &PluginProcess, count: u64) {
    let mut restarts = plugin.restarts();
    tokio::time::timeout(Duration::from_secs(30), restarts.wait_for(|n| *n >= count))
        .await
        .unwrap_or_else(|_| panic!("the plugin was not restarted"))
        .expect("the restart count is watched");
}

#[tokio::test]
async fn a_plugin_starts_configured_and_serves_every_method() {
    let setup = Setup::new("test");
    let plugin = setup.start().await;
    let started = plugin.started();
    assert_eq!(started.hello.plugin.name, "test");
    assert_eq!(started.hello.protocol_version, 1);
    assert_eq!(started.constraints.default_ttl, Some(600));
    assert_eq!(
        plugin.validate().await.ok(),
        Some(vec!["this is a test plugin".to_owned()])
    );
    assert!(
        plugin
            .match_scope("test:read")
            .await
            .map(|m| m.matches)
            .unwrap_or(false)
    );
    assert!(
        !plugin
            .match_scope("test:write")
            .await
            .map(|m| m.matches)
            .unwrap_or(true)
    );
    assert_eq!(
        plugin.config_schema().await.map(|s| s.fields.len()).ok(),
        Some(5)
    );
    let credential = plugin
        .get_credential(&request("cred_a"))
        .await
        .expect("the plugin issues the credential");
    assert!(credential.value.expose().starts_with("tp_"));
    assert_eq!(credential.external_id.as_deref(), Some("key-cred_a"));
    let revoked = plugin
        .revoke_credential(
            credential.external_id.clone(),
            "cred_a",
            AgentRef {
                id: "ag_1".into(),
                name: "ci".into(),
                scopes: vec![],
            },
        )
        .await
        .expect("the plugin revokes the credential");
    assert!(revoked.revoked && !revoked.already_gone);
    let again = plugin
        .revoke_credential(
            None,
            "cred_a",
            AgentRef {
                id: "ag_1".into(),
                name: "ci".into(),
                scopes: vec![],
            },
        )
        .await
        .expect("the plugin revokes the credential");
    assert!(
        again.already_gone,
        "a null external id is found from the lease id"
    );
    plugin.stop().await;
    assert!(!plugin.is_running());
}

#[tokio::test]
async fn the_plugin_gets_a_cleared_environment_and_the_key_only_through_configure() {
    let setup = Setup::new("test");
    let plugin = setup.start().await;
    let credential = plugin
        .get_credential(&request("cred_env"))
        .await
        .expect("the plugin issues the credential");
    let mut names: Vec<&str> = credential.metadata["env_names"].split(',').collect();
    names.sort_unstable();
    names.retain(|n| {
        !matches!(
            *n,
            "HTTP_PROXY"
                | "HTTPS_PROXY"
                | "NO_PROXY"
                | "http_proxy"
                | "https_proxy"
                | "no_proxy"
                | "SSL_CERT_FILE"
                | "SSL_CERT_DIR"
        )
    });
    assert_eq!(
        names,
        ["CREDDY_PLUGIN_PROTOCOL", "HOME", "LANG", "PATH", "TZ"]
    );
    let cmdline = std::fs::read_to_string("/proc/self/cmdline").unwrap_or_default();
    assert!(!cmdline.contains("master-key-123"));
    plugin.stop().await;
}

#[tokio::test]
async fn a_tampered_binary_is_refused_before_it_runs() {
    let setup = Setup::new("test");
    let mut bytes = std::fs::read(&setup.installed.binary).unwrap_or_default();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&setup.installed.binary, bytes).expect("the file is written");
    match PluginProcess::start(setup.spec()).await {
        Err(HostError::Integrity(e)) => assert!(e.problem.contains("does not match"), "{e}"),
        other => panic!("expected an integrity failure, got {other:?}"),
    }
    assert!(!setup.state().join("issued").exists());
}

#[tokio::test]
async fn a_crash_mid_call_fails_that_call_and_the_plugin_comes_back() {
    let setup = Setup::new("test");
    let plugin = setup.start().await;
    script(&setup.state(), json!({"get_credential": "crash"}));
    let failed = plugin.get_credential(&request("cred_crash")).await;
    assert!(
        matches!(failed, Err(HostError::Unavailable(_))),
        "{failed:?}"
    );
    wait_for_restart(&plugin, 1).await;
    script(&setup.state(), json!({}));
    let credential = plugin.get_credential(&request("cred_after")).await;
    assert!(credential.is_ok(), "{credential:?}");
    plugin.stop().await;
}

#[tokio::test]
async fn a_hanging_call_times_out_and_a_late_answer_is_dropped() {
    let setup = Setup::new("test");
    let mut spec = setup.spec();
    spec.timeout_cap = Some(Duration::from_millis(300));
    let plugin = PluginProcess::start(spec).await.expect("the plugin starts");
    script(&setup.state(), json!({"get_credential": "slow:1000"}));
    let timed_out = plugin.get_credential(&request("cred_slow")).await;
    assert!(
        matches!(&timed_out, Err(HostError::Timeout { method, .. }) if method == "get_credential"),
        "{timed_out:?}"
    );
    // The slow call's answer arrives later under its own id and is dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while plugin.late_answers() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the late answer never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(plugin.late_answers(), 1);
    // It was never taken for another call's answer: the next call gets its own.
    script(&setup.state(), json!({}));
    let next = plugin
        .get_credential(&request("cred_next"))
        .await
        .expect("the plugin issues the credential");
    assert_eq!(next.external_id.as_deref(), Some("key-cred_next"));
    assert_eq!(plugin.late_answers(), 1, "an answer in time is not late");
    plugin.stop().await;
}

#[tokio::test]
async fn garbage_or_a_huge_frame_on_stdout_breaks_the_connection_and_restarts() {
    for mode in ["garbage", "huge"] {
        let setup = Setup::new("test");
        let plugin = setup.start().await;
        script(&setup.state(), json!({"get_credential": mode}));
        let failed = plugin.get_credential(&request("cred_bad")).await;
        assert!(
            matches!(failed, Err(HostError::Protocol(_))),
            "{mode}: {failed:?}"
        );
        wait_for_restart(&plugin, 1).await;
        plugin.stop().await;
    }
}

#[tokio::test]
async fn plugins_that_cannot_work_with_this_creddy_are_refused_at_start() {
    for (name, expected) in [
        ("garbage", "protocol"),
        ("oldproto", "protocol version 99"),
        ("newer", "needs creddy 99.0.0"),
        ("exit", "unavailable"),
    ] {
        let setup = Setup::new(name);
        let err = PluginProcess::start(setup.spec())
            .await
            .map(|_| ())
            .expect_err(name)
            .to_string();
        assert!(err.contains(expected), "{name}: {err}");
    }
}

#[tokio::test]
async fn plugin_errors_keep_their_kind_and_remedy_and_never_echo_the_config() {
    let setup = Setup::new("test");
    let plugin = setup.start().await;
    script(
        &setup.state(),
        json!({"get_credential": "fail:upstream_permission"}),
    );
    match plugin.get_credential(&request("cred_denied")).await {
        Err(HostError::Plugin {
            kind,
            remedy,
            retryable,
            ..
        }) => {
            assert_eq!(kind, ErrorKind::UpstreamPermission);
            assert_eq!(remedy.as_deref(), Some("change behavior.json"));
            assert!(!retryable);
        }
        other => panic!("{other:?}"),
    }
    let mut spec = setup.spec();
    spec.config = Secret::new(json!({"api_key": 12345, "state_dir": setup.state()}));
    let err = PluginProcess::start(spec)
        .await
        .map(|_| ())
        .expect_err("bad config")
        .to_string();
    assert!(err.contains("api_key must be a non-empty string"), "{err}");
    assert!(!err.contains("12345"));
    plugin.stop().await;
}

#[tokio::test]
async fn sixteen_calls_run_at_once() {
    let setup = Setup::new("test");
    let plugin = setup.start().await;
    // Each call waits at the plugin until all sixteen are in flight together: calls made one
    // at a time would never all arrive, and the first would fail.
    script(&setup.state(), json!({"get_credential": "barrier:16"}));
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let plugin = plugin.clone();
            tokio::spawn(async move { plugin.get_credential(&request(&format!("cred_{i}"))).await })
        })
        .collect();
    let mut values = std::collections::HashSet::new();
    for call in calls {
        let credential = call
            .await
            .expect("the call task ends")
            .expect("the plugin answers");
        values.insert(credential.value.expose().clone());
    }
    assert_eq!(values.len(), 16);
    let issued = std::fs::read_dir(setup.state().join("issued"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(issued, 16);
    plugin.stop().await;
}

#[tokio::test]
async fn a_signed_installation_is_reverified_before_every_start() {
    use creddy_plugin::publish::SigningKey;
    use creddy_plugin::signing::TrustedKey;
    use creddy_testkit::registry::install_signed;
    let dir = TempDir::new().expect("TempDir is created");
    let key = SigningKey::generate();
    let installed = install_signed(
        &test_plugin_binary(),
        &dir.path().join("registry"),
        &dir.path().join("plugins"),
        "signed",
        &key,
    );
    let config = json!({"api_key": "k", "state_dir": dir.path().join("up")});
    let mut spec = LaunchSpec::new(
        "b",
        installed.binary.clone(),
        &installed.sha256,
        config,
        "0.1.0",
    );
    spec.manifest_keys = Some(vec![
        TrustedKey::parse(&key.public_key()).expect("the text parses"),
    ]);
    let plugin = PluginProcess::start(spec.clone())
        .await
        .expect("the plugin starts");
    plugin.stop().await;

    let mut untrusted = spec.clone();
    untrusted.manifest_keys = Some(vec![
        TrustedKey::parse(&SigningKey::generate().public_key()).expect("the text parses"),
    ]);
    let err = PluginProcess::start(untrusted)
        .await
        .map(|_| ())
        .expect_err("untrusted")
        .to_string();
    assert!(err.contains("not trusted"), "{err}");

    let manifest = installed.binary.with_file_name("manifest.json");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_default()
        .replace("signed test plugin", "swapped");
    std::fs::write(&manifest, text).expect("the file is written");
    match PluginProcess::start(spec).await {
        Err(HostError::Integrity(e)) => {
            assert!(e.problem.contains("does not match its content"), "{e}")
        }
        other => panic!("expected an integrity failure, got {other:?}"),
    }
}

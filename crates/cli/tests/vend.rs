//! Backends and credentials with the real binary: `backend add|ls|inspect|rm`, `get`, `ls`.

use creddy_testkit::plugins::script;
use serde_json::{Value, json};

use crate::kit::{Site, exported};

creddy_testkit::dialects!(Site::start =>
    an_operator_adds_a_backend_and_an_agent_gets_credentials,
    backend_add_refuses_incomplete_or_rejected_configurations,
    a_forced_plugin_removal_stops_its_backends_at_once,
);

const MASTER_KEY: &str = "upstream-master-key-cli";

fn add_backend(site: &Site) {
    site.install_test_plugin("test");
    let state = format!("state_dir={}", site.upstream().display());
    let key_file = site.home.path().join("key");
    std::fs::write(&key_file, format!("{MASTER_KEY}\n")).expect("the file is written");
    let key_arg = format!("api_key={}", key_file.display());
    let added = site.admin(&[
        "backend",
        "add",
        "test",
        "--set-file",
        &key_arg,
        "--set",
        &state,
        "--set",
        "items=x,y",
    ]);
    added.ok();
    assert!(
        added
            .stderr
            .contains("Adding backend 'test' (plugin test 0.1.0)"),
        "{}",
        added.stderr
    );
    assert!(
        added.stderr.contains("Validating with test... ok"),
        "{}",
        added.stderr
    );
    assert!(
        added.stderr.contains("Backend 'test' added (type: test)"),
        "{}",
        added.stderr
    );
}

async fn an_operator_adds_a_backend_and_an_agent_gets_credentials(site: Site) {
    add_backend(&site);
    let listed = site.admin(&["backend", "ls"]);
    assert!(
        listed.ok().contains("test") && listed.stdout.contains("ready"),
        "{}",
        listed.stdout
    );
    let inspected: Value =
        serde_json::from_str(site.admin(&["backend", "inspect", "test"]).ok()).unwrap_or_default();
    assert_eq!(inspected["config"]["api_key"], "********");
    assert_eq!(inspected["config"]["items"], json!(["x", "y"]));

    let created = site.admin(&["agent", "create", "ci-agent", "--can", "test"]);
    let token = exported(created.ok(), "CREDDY_TOKEN");
    let text = site.agent(&token, &["get", "test"]);
    let secret = text.ok().strip_suffix('\n').unwrap_or_default().to_owned();
    assert!(
        secret.starts_with("tp_") && !secret.contains(char::is_whitespace),
        "stdout is the secret alone: {:?}",
        text.stdout
    );
    let env = site.agent(&token, &["get", "test", "--ttl", "1h", "-o", "env"]);
    let lines: Vec<&str> = env.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{}", env.stdout);
    assert!(lines[0].starts_with("TEST_PLUGIN_TOKEN=tp_"));
    assert_eq!(lines[1], "TEST_PLUGIN_URL=http://upstream.test");
    let json: Value = serde_json::from_str(
        site.agent(&token, &["get", "test", "--scope", "read", "--json"])
            .ok(),
    )
    .unwrap_or_default();
    assert_eq!(json["scopes"], json!(["test:read"]));
    site.agent(&token, &["get", "test", "--ttl", "30s"])
        .fails(2, "allowed: 1m to 1d");
    site.agent(&token, &["get", "test", "--ttl", "25h"])
        .fails(2, "exceeds the maximum 1d");
    site.agent(&token, &["get", "test", "-o", "table"])
        .fails(2, "does not offer -o table");
    let stranger = exported(
        site.admin(&["agent", "create", "stranger", "--can", "other"])
            .ok(),
        "CREDDY_TOKEN",
    );
    site.agent(&stranger, &["get", "test"])
        .fails(4, "holds no scope for backend 'test'");

    let ls = site.agent(&token, &["ls"]);
    assert_eq!(
        ls.ok().lines().count(),
        4,
        "a header and three credentials:\n{}",
        ls.stdout
    );
    assert!(
        ls.stdout.contains("active") && ls.stdout.contains("in "),
        "{}",
        ls.stdout
    );

    let plugins = site.home.path().join("plugins").display().to_string();
    let (url, dir) = (site.server.url(), site.data_dir.display().to_string());
    let config = site.home.path().join("creddy.toml").display().to_string();
    let plugin_rm = |extra: &[&str]| {
        let mut args = vec![
            "--server",
            url.as_str(),
            "--data-dir",
            dir.as_str(),
            "plugin",
            "rm",
            "test",
        ];
        args.extend_from_slice(extra);
        crate::kit::creddy(
            site.home.path(),
            &args,
            &[("CREDDY_PLUGIN_DIR", &plugins), ("CREDDY_CONFIG", &config)],
        )
    };
    plugin_rm(&[]).fails(1, "used by backends: test");

    site.admin(&["backend", "rm", "test", "--wait"]).ok();
    plugin_rm(&[]).ok();
    let revoked = std::fs::read_dir(site.upstream().join("revoked"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        revoked, 3,
        "removing the backend revoked its credentials upstream"
    );
    assert!(
        !site.server.log().contains(MASTER_KEY),
        "the master key never reaches the log"
    );
    assert!(
        !site.server.log().contains(&secret),
        "issued secrets never reach the log"
    );
}

async fn backend_add_refuses_incomplete_or_rejected_configurations(site: Site) {
    site.install_test_plugin("test");
    let state = format!("state_dir={}", site.upstream().display());
    site.admin(&["backend", "add", "test", "--set", &state])
        .fails(2, "missing required field: api_key");
    site.admin(&["backend", "add", "test", "--set", "colour=red"])
        .fails(2, "has no configuration field 'colour'");
    site.admin(&["backend", "add", "nope"])
        .fails(2, "plugin 'nope' is not installed");
    let rejected = site.admin(&[
        "backend",
        "add",
        "test",
        "--set",
        "api_key=wrong",
        "--set",
        &state,
    ]);
    rejected.fails(1, "Error: invalid API key");
    assert!(
        rejected.stderr.contains("Validating with test... failed"),
        "{}",
        rejected.stderr
    );
    assert!(
        rejected.stderr.contains("Hint: use a valid key"),
        "{}",
        rejected.stderr
    );
    let config = site.home.path().join("backend.json");
    std::fs::write(
        &config,
        json!({"api_key": MASTER_KEY, "state_dir": site.upstream()}).to_string(),
    )
    .expect("the file is written");
    let config_text = config.display().to_string();
    script(
        &site.upstream(),
        json!({"validate": "fail:upstream_unavailable"}),
    );
    site.admin(&["backend", "add", "test", "--config", &config_text])
        .fails(1, "scripted");
    site.admin(&[
        "backend",
        "add",
        "test",
        "--config",
        &config_text,
        "--skip-validate",
    ])
    .ok();
    let listed: Value =
        serde_json::from_str(site.admin(&["backend", "ls", "-o", "json"]).ok()).unwrap_or_default();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
}

#[test]
fn backend_add_prompts_for_missing_fields_on_a_terminal() {
    let site = Site::start_blocking(creddy_testkit::store::Dialect::Sqlite, &[]);
    site.install_test_plugin("test");
    let url = site.server.url();
    let dir = site.data_dir.display().to_string();
    let home = site.home.path().display().to_string();
    let upstream = site.upstream().display().to_string();
    let mut terminal = creddy_testkit::pty::Terminal::spawn(
        crate::kit::bin(),
        &[
            "--server",
            &url,
            "--data-dir",
            &dir,
            "backend",
            "add",
            "test",
            "--name",
            "prompted",
        ],
        &[("HOME", &home)],
    );
    terminal.expect("the api_key [api_key, required, hidden]");
    terminal.answer_hidden("", "api_key is required");
    terminal.expect("the api_key [api_key, required, hidden]");
    terminal.answer_hidden(MASTER_KEY, "the state_dir [state_dir, required]");
    terminal.send_line(&upstream);
    terminal.expect("the note [note, default hello]");
    terminal.send_line("");
    terminal.expect("the items [items, default a,b, comma-separated]");
    terminal.send_line("p, q");
    terminal.expect("the upstream [upstream, default files]");
    terminal.send_line("");
    let (code, screen) = terminal.finish();
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("Validating with test... ok"), "{screen}");
    creddy_testkit::pty::Terminal::assert_hidden(&screen, MASTER_KEY);
    let inspected: Value =
        serde_json::from_str(site.admin(&["backend", "inspect", "prompted"]).ok())
            .unwrap_or_default();
    assert_eq!(inspected["config"]["items"], json!(["p", "q"]));
    assert_eq!(
        inspected["config"]["note"], "hello",
        "Enter kept the default"
    );
}

#[test]
fn run_injects_credentials_forwards_signals_and_revokes_on_exit() {
    let site = Site::start_blocking(creddy_testkit::store::Dialect::Sqlite, &[]);
    add_backend(&site);
    let token = exported(
        site.admin(&["agent", "create", "runner", "--can", "test"])
            .ok(),
        "CREDDY_TOKEN",
    );
    let revoked = || {
        std::fs::read_dir(site.upstream().join("revoked"))
            .map(|d| d.count())
            .unwrap_or(0)
    };

    let ran = site.agent(
        &token,
        &[
            "run",
            "--with",
            "test",
            "--",
            "sh",
            "-c",
            "test -n \"$TEST_PLUGIN_TOKEN\" && echo \"url=$TEST_PLUGIN_URL\" && exit 3",
        ],
    );
    assert_eq!(ran.code, Some(3), "the command's exit code: {}", ran.stderr);
    assert_eq!(ran.stdout, "url=http://upstream.test\n");
    assert_eq!(revoked(), 1, "revoked as soon as the command ended");
    assert_eq!(
        site.agent(&token, &["ls"]).ok().lines().count(),
        1,
        "only the header: nothing live"
    );

    let signalled = site.agent(
        &token,
        &[
            "run",
            "--with",
            "test:read",
            "--",
            "sh",
            "-c",
            "kill -TERM $PPID; exec sleep 30",
        ],
    );
    assert_eq!(
        signalled.code,
        Some(143),
        "SIGTERM was forwarded to the command: {}",
        signalled.stderr
    );
    assert_eq!(revoked(), 2);

    site.agent(
        &token,
        &["run", "--with", "test", "--", "/nonexistent/command"],
    )
    .fails(127, "command not found");
    assert_eq!(
        revoked(),
        3,
        "credentials are revoked even when the command cannot start"
    );
    let unscoped = exported(
        site.admin(&["agent", "create", "unscoped", "--can", "other"])
            .ok(),
        "CREDDY_TOKEN",
    );
    site.agent(&unscoped, &["run", "--with", "test", "--", "true"])
        .fails(4, "holds no scope");

    let id = site.agent(&token, &["get", "test", "-o", "json"]);
    let id: Value = serde_json::from_str(id.ok()).unwrap_or_default();
    let id = id["id"].as_str().unwrap_or_default().to_owned();
    let listed = site.admin(&["credentials", "ls", "--agent", "runner"]);
    assert!(listed.ok().contains(&id), "{}", listed.stdout);
    let revoke = site.agent(&token, &["revoke", &id]);
    revoke.ok();
    assert!(
        revoke.stderr.contains(&format!("Revoked {id}")),
        "{}",
        revoke.stderr
    );
    let again = site.admin(&["credentials", "revoke", &id, "-o", "json"]);
    let again: Value = serde_json::from_str(again.ok()).unwrap_or_default();
    assert_eq!(again["state"], "revoked", "repeating is harmless");
    let stranger = exported(
        site.admin(&["agent", "create", "stranger-agent", "--can", "test"])
            .ok(),
        "CREDDY_TOKEN",
    );
    site.agent(&stranger, &["revoke", &id])
        .fails(1, "no credential with id");
}

async fn a_forced_plugin_removal_stops_its_backends_at_once(site: Site) {
    tokio::task::spawn_blocking(move || {
        add_backend(&site);
        // The name is checked before anything is prompted for or sent upstream.
        site.admin(&["backend", "add", "test"])
            .fails(2, "a backend named 'test' already exists");
        site.admin(&["credentials", "ls", "--state", "bogus"])
            .fails(2, "unknown lease state 'bogus'");
        let token = exported(
            site.admin(&["agent", "create", "ci-agent", "--can", "test"])
                .ok(),
            "CREDDY_TOKEN",
        );
        site.agent(&token, &["get", "test"]).ok();
        let url = site.server.url();
        let dir = site.data_dir.display().to_string();
        let plugins = site.home.path().join("plugins").display().to_string();
        let rm = |force: bool| {
            let mut args = vec!["--server", &url, "--data-dir", &dir, "plugin", "rm", "test"];
            if force {
                args.push("--force");
            }
            crate::kit::creddy(site.home.path(), &args, &[("CREDDY_PLUGIN_DIR", &plugins)])
        };
        rm(false).fails(1, "used by backends: test");
        let removed = rm(true);
        removed.ok();
        assert!(
            removed
                .stderr
                .contains("Server stopped the backends of 'test': test"),
            "{}",
            removed.stderr
        );
        let listed: Value = serde_json::from_str(site.admin(&["backend", "ls", "-o", "json"]).ok())
            .unwrap_or_default();
        assert_eq!(listed[0]["state"], "error", "{listed}");
        site.agent(&token, &["get", "test"])
            .fails(1, "not available");
    })
    .await
    .expect("the blocking task ends");
}

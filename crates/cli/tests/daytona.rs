//! The Daytona flow of the specification (§2), with real processes: the server, the Daytona
//! stand-in, the plugin installed from a signed local registry, `backend add`, an agent, and
//! keys that work on the stand-in's sandbox endpoints with exactly their scope's rights.

use creddy_plugin::publish::{Publish, SigningKey};
use creddy_testkit::plugins::workspace_binary;
use creddy_testkit::registry::publish_signed;
use creddy_testkit::server::StandinProcess;
use creddy_testkit::store::Dialect;
use serde_json::{Value, json};

use crate::kit::{Site, creddy, exported, http};

const MASTER: &str = "dtn_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A creddy server trusting a fresh development key, and a Daytona stand-in with a master key
/// of organisation `org-1`.
struct Daytona {
    key: SigningKey,
    trusted: String,
    site: Site,
    standin: StandinProcess,
}

impl Daytona {
    fn start() -> Self {
        let key = SigningKey::generate();
        let trusted = key.public_key();
        let site = Site::start_with_env(
            Dialect::Sqlite,
            &[],
            &[("CREDDY_PLUGIN_TRUSTED_KEYS", &trusted)],
        );
        let standin = StandinProcess::start(
            &workspace_binary("creddy-daytona-standin", "daytona-standin"),
            &site.home.path().join("daytona.json"),
        );
        http()
            .post(format!("{}/_standin/seed", standin.control_url()))
            .json(&creddy_daytona_standin::master_seed(MASTER, "org-1"))
            .send()
            .expect("the server answers");
        Self {
            key,
            trusted,
            site,
            standin,
        }
    }
}

#[test]
fn the_daytona_flow_from_install_to_expiring_keys() {
    let Daytona {
        key,
        trusted,
        site,
        standin,
    } = Daytona::start();
    let home = site.home.path();
    let client = http();

    // Step 2: install the plugin from a signed registry.
    let registry = home.join("registry");
    let binary = workspace_binary("creddy-daytona", "creddy-daytona");
    publish_signed(
        &registry,
        &key,
        &[Publish {
            name: "daytona",
            version: "0.1.0",
            description: "Ephemeral Daytona API keys",
            binary: &binary,
            min_creddy_version: "0.1.0",
        }],
    );
    let (registry_text, plugins) = (
        registry.display().to_string(),
        home.join("plugins").display().to_string(),
    );
    let config = home.join("creddy.toml").display().to_string();
    let plugin_env = [
        ("CREDDY_PLUGIN_REGISTRY", registry_text.as_str()),
        ("CREDDY_PLUGIN_DIR", plugins.as_str()),
        ("CREDDY_PLUGIN_TRUSTED_KEYS", trusted.as_str()),
        ("CREDDY_CONFIG", config.as_str()),
    ];
    let installed = creddy(home, &["plugin", "install", "daytona"], &plugin_env);
    installed.ok();
    assert!(
        installed.stderr.contains("Installed daytona 0.1.0"),
        "{}",
        installed.stderr
    );

    // Step 3: add the backend without prompts.
    let key_file = home.join("daytona.key");
    std::fs::write(&key_file, MASTER).expect("the file is written");
    let key_arg = format!("api_key={}", key_file.display());
    let base_arg = format!("base_url={}", standin.api_url);
    let added = site.admin(&[
        "backend",
        "add",
        "daytona",
        "--set-file",
        &key_arg,
        "--set",
        &base_arg,
        "--set",
        "organization_id=org-1",
    ]);
    added.ok();
    assert!(
        added.stderr.contains("Validating with daytona... ok"),
        "{}",
        added.stderr
    );
    assert!(
        !added.stderr.contains("Warning: base_url"),
        "loopback http is fine: {}",
        added.stderr
    );

    // An agent with the plain scope, and one that may only read.
    let token = exported(
        site.admin(&["agent", "create", "ci-agent", "--can", "daytona"])
            .ok(),
        "CREDDY_TOKEN",
    );
    let reader = exported(
        site.admin(&[
            "agent",
            "create",
            "reader",
            "--can",
            "daytona:workspaces:read",
        ])
        .ok(),
        "CREDDY_TOKEN",
    );
    let org_wide = exported(
        site.admin(&["agent", "create", "org-wide", "--can", "daytona:org:*"])
            .ok(),
        "CREDDY_TOKEN",
    );
    let nobody = exported(
        site.admin(&["agent", "create", "nobody", "--can", "other"])
            .ok(),
        "CREDDY_TOKEN",
    );

    // Step 6: get keys and use them.
    let dtn = site
        .agent(&token, &["get", "daytona"])
        .ok()
        .trim()
        .to_owned();
    assert!(dtn.starts_with("dtn_") && dtn.len() == 68, "{dtn}");
    let sandbox = |value: &str| {
        client
            .post(format!("{}/sandbox", standin.api_url))
            .bearer_auth(value)
            .json(&json!({"name": format!("box-{}", &value[4..12])}))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(sandbox(&dtn), 200, "the plain scope may create sandboxes");
    let env = site.agent(&token, &["get", "daytona", "--ttl", "1h", "-o", "env"]);
    let lines: Vec<&str> = env.ok().lines().collect();
    assert!(lines[0].starts_with("DAYTONA_API_KEY=dtn_"), "{lines:?}");
    assert_eq!(lines[1], format!("DAYTONA_API_URL={}", standin.api_url));
    let read_only = site
        .agent(&reader, &["get", "daytona", "--scope", "workspaces:read"])
        .ok()
        .trim()
        .to_owned();
    assert_eq!(
        sandbox(&read_only),
        403,
        "the read scope may not create sandboxes"
    );
    let listing = client
        .get(format!("{}/sandbox", standin.api_url))
        .bearer_auth(&read_only)
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(listing, 200, "but may read");
    // `daytona:org:*` with no --scope: a key of the backend's organisation (§5 meets §10.3).
    let org_key = site
        .agent(&org_wide, &["get", "daytona"])
        .ok()
        .trim()
        .to_owned();
    assert_eq!(sandbox(&org_key), 200, "daytona:org:* acts as daytona");

    // Refusals.
    site.agent(&token, &["get", "daytona", "--ttl", "30s"])
        .fails(2, "allowed: 1m to 1d");
    site.agent(&token, &["get", "daytona", "--ttl", "25h"])
        .fails(2, "exceeds the maximum 1d");
    site.agent(&nobody, &["get", "daytona"])
        .fails(4, "holds no scope for backend 'daytona'");
    site.agent(&token, &["get", "daytona", "--scope", "org:elsewhere"])
        .fails(1, "not configured for organization 'elsewhere'");

    // The keys carry Daytona's expiresAt; removing the backend deletes them upstream now.
    let state: Value = client
        .get(format!("{}/_standin/state", standin.control_url()))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_default();
    let minted: Vec<&Value> = state["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["name"] != "master")
        .collect();
    assert_eq!(minted.len(), 4);
    assert!(
        minted.iter().all(|k| k["expiresAt"].is_string()),
        "{minted:?}"
    );
    site.admin(&["backend", "rm", "daytona", "--wait"]).ok();
    let state: Value = client
        .get(format!("{}/_standin/state", standin.control_url()))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_default();
    let deleted: Vec<&str> = state["deleted_keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        deleted[0].starts_with("creddy-validate-"),
        "validation probed with a throwaway key: {deleted:?}"
    );
    assert_eq!(
        deleted.len(),
        5,
        "the probe and the four leased keys: {deleted:?}"
    );
    assert!(
        deleted[1..]
            .iter()
            .all(|d| d.starts_with("creddy-ci-agent-")
                || d.starts_with("creddy-reader-")
                || d.starts_with("creddy-org-wide-"))
    );
    assert_eq!(sandbox(&dtn), 401, "a revoked key is dead upstream");
    assert!(
        !site.server.log().contains(MASTER),
        "the master key never reaches the log"
    );
}

#[test]
fn backend_add_daytona_prompts_like_the_specification() {
    let Daytona {
        key, site, standin, ..
    } = Daytona::start();
    let home = site.home.path();
    creddy_testkit::registry::install_signed(
        &workspace_binary("creddy-daytona", "creddy-daytona"),
        &home.join("registry"),
        &home.join("plugins"),
        "daytona",
        &key,
    );
    let (url, dir) = (site.server.url(), site.data_dir.display().to_string());
    let home_text = home.display().to_string();
    let mut terminal = creddy_testkit::pty::Terminal::spawn(
        crate::kit::bin(),
        &[
            "--server",
            &url,
            "--data-dir",
            &dir,
            "backend",
            "add",
            "daytona",
        ],
        &[("HOME", &home_text)],
    );
    terminal.expect("Adding backend 'daytona' (plugin daytona");
    terminal.expect("Daytona API key used to mint agent keys [api_key, required, hidden]");
    terminal.answer_hidden(
        MASTER,
        "Daytona API base URL [base_url, default https://app.daytona.io/api]",
    );
    terminal.send_line(&standin.api_url);
    terminal.expect("Organization ID of the API key [organization_id, optional]");
    terminal.send_line("org-1");
    terminal.expect("Permissions granted by the plain 'daytona' scope [delegated_permissions, default write:sandboxes,delete:sandboxes");
    terminal.send_line("");
    terminal.expect("Prefix of minted key names [key_prefix, default creddy]");
    terminal.send_line("");
    terminal.expect("Validating with daytona... ok");
    terminal.expect("Backend 'daytona' added (type: daytona)");
    let (code, screen) = terminal.finish();
    assert_eq!(code, Some(0), "{screen}");
    creddy_testkit::pty::Terminal::assert_hidden(&screen, MASTER);
    let inspected: Value =
        serde_json::from_str(site.admin(&["backend", "inspect", "daytona"]).ok())
            .unwrap_or_default();
    assert_eq!(inspected["config"]["api_key"], "********");
    assert_eq!(inspected["config"]["base_url"], json!(standin.api_url));
    assert_eq!(inspected["config"]["key_prefix"], "creddy");
}

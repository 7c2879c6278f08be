//! `creddy audit` and `creddy audit verify` against a real server, with a record edited
//! behind the server's back.

use creddy_store::Location;
use creddy_testkit::store::Dialect;
use serde_json::Value;

use crate::kit::Site;

#[test]
fn the_audit_trail_is_shown_filtered_and_verified() {
    let site = Site::start_blocking(Dialect::Sqlite, &[]);
    site.admin(&["agent", "create", "auditee", "--can", "test"])
        .ok();
    site.admin(&["agent", "rm", "auditee"]).ok();
    let table = site.admin(&["audit"]);
    let text = table.ok();
    assert!(
        text.starts_with("SEQ") && text.contains("agent.deleted") && text.contains("local_admin"),
        "{text}"
    );
    let json = site.admin(&["audit", "--agent", "auditee", "-o", "json"]);
    let events: Vec<Value> = serde_json::from_str(json.ok()).unwrap_or_default();
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["agent.deleted", "agent.created"]);

    let verified = site.admin(&["audit", "verify"]);
    verified.ok();
    assert!(
        verified
            .stderr
            .contains("events verified, chain intact, head "),
        "{}",
        verified.stderr
    );
    let head = verified
        .stderr
        .split("head ")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned();
    site.admin(&["audit", "verify", "--expect-head", &head])
        .ok();

    let location = Location::Sqlite(site.data_dir.join("creddy.db"));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime is built")
        .block_on(creddy_testkit::store::execute_raw(
            &location,
            "UPDATE audit_events SET outcome = 'denied' WHERE action = 'agent.created'",
        ));
    let broken = site.admin(&["audit", "verify"]);
    broken.fails(6, "✗ chain broken at seq");
    assert!(broken.stderr.contains("was edited"), "{}", broken.stderr);
}

#[test]
fn signing_keys_are_listed_and_rotated() {
    let site = Site::start_blocking(Dialect::Sqlite, &[]);
    let listed = site.admin(&["keys", "ls"]);
    assert!(
        listed.ok().starts_with("KID")
            && listed.stdout.contains("EdDSA")
            && listed.stdout.contains("current"),
        "{}",
        listed.stdout
    );
    let rotated = site.admin(&["keys", "rotate", "--grace", "2h"]);
    rotated.ok();
    assert!(
        rotated.stderr.contains("New signing key")
            && rotated.stderr.contains("(EdDSA); previous key"),
        "{}",
        rotated.stderr
    );
    let keys = site.admin(&["keys", "ls", "-o", "json"]);
    let keys: Vec<Value> = serde_json::from_str(keys.ok()).unwrap_or_default();
    let states: Vec<&str> = keys.iter().filter_map(|k| k["state"].as_str()).collect();
    assert_eq!(states, ["current", "grace"]);
    site.admin(&["keys", "rotate", "--alg", "PS512"])
        .fails(2, "invalid value 'PS512'");
}

#[test]
fn an_agent_with_only_client_credentials_trades_them_for_an_access_token() {
    let site = Site::start_blocking(Dialect::Sqlite, &[]);
    let created = site.admin(&[
        "agent",
        "create",
        "oidc-only",
        "--can",
        "test",
        "-o",
        "json",
    ]);
    let created: Value = serde_json::from_str(created.ok()).unwrap_or_default();
    let id = created["oidc"]["client_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let secret = created["oidc"]["client_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let url = site.server.url();
    let nowhere = site.home.path().join("no-agent.toml").display().to_string();
    let run = |secret: &str| {
        crate::kit::creddy(
            site.home.path(),
            &["--server", &url, "status", "-o", "json"],
            &[
                ("CREDDY_CLIENT_ID", &id),
                ("CREDDY_CLIENT_SECRET", secret),
                ("CREDDY_AGENT_CONFIG", &nowhere),
            ],
        )
    };
    let status = run(&secret);
    let status: Value = serde_json::from_str(status.ok()).unwrap_or_default();
    assert_eq!(status["name"], "oidc-only");
    run("cks_wrong").fails(4, "refused the client credentials (invalid_client)");
}

//! The README's flow with the real binary: start a server, create an agent, list it, and
//! let the agent see its scopes; and the exit codes scripts rely on.

use serde_json::Value;

use crate::kit::{Site, creddy, exported};

creddy_testkit::dialects!(Site::start =>
    an_operator_creates_an_agent_that_sees_its_scopes,
    exit_codes_are_the_documented_ones,
    the_agent_config_file_supplies_server_and_token,
);

async fn an_operator_creates_an_agent_that_sees_its_scopes(site: Site) {
    let created = site.admin(&[
        "agent",
        "create",
        "ci-agent",
        "--can",
        "daytona",
        "--can",
        "daytona:workspaces:read",
    ]);
    let out = created.ok();
    assert!(
        created.stderr.contains("Agent 'ci-agent' created"),
        "{}",
        created.stderr
    );
    let token = exported(out, "CREDDY_TOKEN");
    assert!(token.starts_with("ckr_"), "{token}");
    assert_eq!(exported(out, "CREDDY_URL"), site.server.url());
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret:"))
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    assert!(secret.starts_with("cks_"));

    let table = site.admin(&["agent", "ls"]);
    let header = table.ok().lines().next().unwrap_or_default().to_owned();
    for column in [
        "NAME",
        "ID",
        "SCOPES",
        "POLICY",
        "LEASES",
        "LAST USED",
        "EXPIRES",
    ] {
        assert!(header.contains(column), "{header}");
    }
    assert!(table.stdout.contains("ci-agent"), "{}", table.stdout);
    let json: Value = serde_json::from_str(site.admin(&["agent", "ls", "-o", "json"]).ok())
        .unwrap_or_else(|e| panic!("agent ls -o json: {e}"));
    assert_eq!(json[0]["name"], "ci-agent");
    assert_eq!(
        json[0]["scopes"],
        serde_json::json!(["daytona", "daytona:workspaces:read"])
    );

    let status = site.agent(&token, &["status"]);
    let text = status.ok();
    assert!(text.contains("ci-agent"), "{text}");
    assert!(text.contains("daytona,daytona:workspaces:read"), "{text}");
    let status_json: Value =
        serde_json::from_str(site.agent(&token, &["status", "-o", "json"]).ok())
            .unwrap_or_else(|e| panic!("status -o json: {e}"));
    assert_eq!(status_json["name"], "ci-agent");

    let traced = site.admin(&["--debug", "agent", "ls"]);
    traced.ok();
    assert!(
        traced.stderr.contains("debug: GET http://"),
        "{}",
        traced.stderr
    );
    assert!(
        traced.stderr.contains("request id req_"),
        "{}",
        traced.stderr
    );
    assert!(
        !traced.stderr.contains(&site.admin_token()),
        "no token in debug output"
    );

    let shown = site.admin(&["agent", "show", "ci-agent"]);
    assert!(shown.ok().contains("daytona:workspaces:read"));

    let removed = site.admin(&["agent", "rm", "ci-agent"]);
    removed.ok();
    assert!(
        removed
            .stderr
            .contains("Agent 'ci-agent' removed; 0 credentials queued for revocation"),
        "{}",
        removed.stderr
    );
    site.agent(&token, &["status"])
        .fails(4, "Token rejected; re-enroll with creddy enroll");

    let log = site.server.log();
    for secret in [token.as_str(), secret.as_str(), site.admin_token().as_str()] {
        assert!(!log.contains(secret), "a secret reached the server log");
    }
}

async fn exit_codes_are_the_documented_ones(site: Site) {
    site.admin(&["agent", "create", "taken", "--can", "daytona"])
        .ok();
    site.admin(&["agent", "create", "bad", "--can", "Daytona"])
        .fails(2, "Error: invalid scope 'Daytona'");
    site.admin(&["agent", "create", "a/b"])
        .fails(2, "'/' is not allowed");
    site.admin(&["agent", "create", "x", "--expires-in", "soon"])
        .fails(2, "expires_in");
    site.admin(&["agent", "create", "TAKEN"])
        .fails(1, "already exists");
    site.admin(&["agent", "show", "ghost"])
        .fails(1, "no agent named 'ghost'");
    let url = site.server.url();
    let wrong = format!("cka_{}", "1".repeat(48));
    creddy(
        site.home.path(),
        &["--server", &url, "agent", "ls"],
        &[("CREDDY_ADMIN_TOKEN", &wrong)],
    )
    .fails(4, "Hint:");
    creddy(site.home.path(), &["--server", &url, "status"], &[]).fails(4, "no agent credentials");
    creddy(
        site.home.path(),
        &["--server", "ftp://x", "status"],
        &[("CREDDY_TOKEN", "ckr_x")],
    )
    .fails(2, "invalid server URL");
    let closed = closed_port_url();
    creddy(
        site.home.path(),
        &["--server", &closed, "status"],
        &[("CREDDY_TOKEN", "ckr_x")],
    )
    .fails(3, "cannot connect");
}

/// A loopback URL on which nothing listens.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

async fn the_agent_config_file_supplies_server_and_token(site: Site) {
    let out = site.admin(&["agent", "create", "from-file", "--can", "daytona"]);
    let token = exported(out.ok(), "CREDDY_TOKEN");
    let config = site.home.path().join("agent.toml");
    std::fs::write(
        &config,
        format!("server = \"{}\"\ntoken = \"{token}\"\n", site.server.url()),
    )
    .expect("the file is written");
    let config_text = config.display().to_string();
    let status = creddy(
        site.home.path(),
        &["status"],
        &[("CREDDY_AGENT_CONFIG", &config_text)],
    );
    assert!(status.ok().contains("from-file"), "{}", status.stdout);
    std::fs::write(&config, "server = [").expect("the file is written");
    creddy(
        site.home.path(),
        &["status"],
        &[("CREDDY_AGENT_CONFIG", &config_text)],
    )
    .fails(2, "invalid agent config");
}

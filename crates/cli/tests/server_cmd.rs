//! `creddy server` as a process: signals, configuration layering and refusals.

use std::os::unix::fs::PermissionsExt;

use creddy_testkit::server::ServerProcess;
use creddy_testkit::store::Dialect;
use tempfile::TempDir;

use crate::kit::{Site, bin, creddy};

#[test]
fn sigterm_and_sigint_stop_the_server_cleanly() {
    for signal in ["TERM", "INT"] {
        let mut site = Site::start_blocking(Dialect::Sqlite, &[]);
        assert_eq!(site.server.signal_and_wait(signal), Some(0), "SIG{signal}");
        assert!(
            site.server.log().contains("creddy stopped"),
            "{}",
            site.server.log()
        );
    }
}

#[test]
fn a_second_server_on_the_same_data_dir_exits_2() {
    let site = Site::start_blocking(Dialect::Sqlite, &[]);
    let dir = site.data_dir.display().to_string();
    creddy(
        site.home.path(),
        &["server", "--listen", "127.0.0.1:0", "--data-dir", &dir],
        &[],
    )
    .fails(2, "another creddy server is using the data directory");
}

#[test]
fn an_unsafe_data_dir_exits_2_with_the_fix() {
    let home = TempDir::new().expect("TempDir is created");
    let dir = home.path().join("data");
    std::fs::create_dir(&dir).expect("the directory is made");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .expect("the mode is set");
    let dir_text = dir.display().to_string();
    creddy(
        home.path(),
        &["server", "--listen", "127.0.0.1:0", "--data-dir", &dir_text],
        &[],
    )
    .fails(2, "chmod 700");
}

#[test]
fn a_bad_config_file_exits_2_naming_file_line_and_key() {
    let home = TempDir::new().expect("TempDir is created");
    let config = home.path().join("creddy.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nlisten_adress = \"x\"\n",
    )
    .expect("the file is written");
    let config_text = config.display().to_string();
    let run = creddy(home.path(), &["server", "--config", &config_text], &[]);
    run.fails(2, &config_text);
    assert!(
        run.stderr.contains("line 3") && run.stderr.contains("listen_adress"),
        "{}",
        run.stderr
    );
    creddy(
        home.path(),
        &["server", "--config", "/nonexistent/creddy.toml"],
        &[],
    )
    .fails(2, "cannot read configuration file");
    creddy(home.path(), &["server", "--listen", "nowhere"], &[]).fails(2, "invalid listen address");
}

#[test]
fn flags_beat_environment_which_beats_the_file() {
    let home = TempDir::new().expect("TempDir is created");
    let config = home.path().join("creddy.toml");
    std::fs::write(
        &config,
        "[server]\nissuer = \"https://from-file.example\"\n",
    )
    .expect("the file is written");
    let data = home.path().join("data").display().to_string();
    let config_text = config.display().to_string();
    let base = [
        "--data-dir",
        data.as_str(),
        "--config",
        config_text.as_str(),
    ];
    let from_file = ServerProcess::start(bin(), &base, &[]).expect("the server starts");
    assert!(
        from_file.log().contains("issuer https://from-file.example"),
        "{}",
        from_file.log()
    );
    drop(from_file);
    let env = [("CREDDY_ISSUER", "https://from-env.example")];
    let from_env = ServerProcess::start(bin(), &base, &env).expect("the server starts");
    assert!(
        from_env.log().contains("issuer https://from-env.example"),
        "{}",
        from_env.log()
    );
    drop(from_env);
    let mut with_flag = base.to_vec();
    with_flag.extend(["--issuer", "https://from-flag.example"]);
    let from_flag = ServerProcess::start(bin(), &with_flag, &env).expect("the server starts");
    assert!(
        from_flag.log().contains("issuer https://from-flag.example"),
        "{}",
        from_flag.log()
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let site = Site::start_blocking(Dialect::Sqlite, &["--log-format", "json"]);
    site.admin(&["agent", "ls"]).ok();
    let log = site.server.log();
    let mut lines = 0;
    // The step-1 line (§2) is the one plain line, whatever the format.
    for line in log.lines().filter(|l| !l.starts_with("creddy ")) {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(parsed["level"].is_string(), "{line}");
        lines += 1;
    }
    assert!(lines >= 2, "{log}");
    assert!(
        log.contains("/v1/admin/agents"),
        "access log has the path: {log}"
    );
}

#[test]
fn a_bad_policy_stops_the_server_naming_file_line_and_field() {
    let home = TempDir::new().expect("TempDir is created");
    let config = home.path().join("creddy.toml");
    let config_text = config.display().to_string();
    let data = home.path().join("data").display().to_string();
    let start = |text: &str| {
        std::fs::write(&config, text).expect("the file is written");
        creddy(
            home.path(),
            &[
                "server",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                &data,
                "--config",
                &config_text,
            ],
            &[],
        )
    };
    let bad_ttl = start(
        "[[policies]]\nname = \"ci\"\nallow = { scopes = [\"daytona\"], max_ttl = \"7x\" }\n",
    );
    bad_ttl.fails(2, &config_text);
    assert!(
        bad_ttl.stderr.contains("line 3") && bad_ttl.stderr.contains("7x"),
        "{}",
        bad_ttl.stderr
    );
    let bad_rate = start("[[policies]]\nname = \"ci\"\nlimits = { rate = \"10/fortnight\" }\n");
    bad_rate.fails(2, "invalid rate '10/fortnight'");
    assert!(bad_rate.stderr.contains("line 3"), "{}", bad_rate.stderr);
    start("[[policies]]\nname = \"ci\"\nmatch = { name_pattern = \"ci/*\" }\n")
        .fails(2, "invalid name pattern");
    start("[[policies]]\nname = \"ci\"\nalow = { scopes = [] }\n").fails(2, "unknown field");
    start("[[policies]]\nname = \"a\"\n[[policies]]\nname = \"a\"\n")
        .fails(2, "names must be unique");
}

#[test]
fn sighup_reloads_the_policies_and_keeps_them_when_the_file_is_bad() {
    let site = Site::start_with_config(Dialect::Sqlite, "", &[]);
    site.install_test_plugin("test");
    let state = format!("state_dir={}", site.upstream().display());
    site.admin(&[
        "backend",
        "add",
        "test",
        "--set",
        "api_key=k",
        "--set",
        &state,
    ])
    .ok();
    let http = crate::kit::http();
    let enroll = |name: &str| -> String {
        let answer: serde_json::Value = http
            .post(format!("{}/v1/enroll", site.server.url()))
            .json(&serde_json::json!({"name": name, "scopes": ["test"]}))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_default();
        answer["status"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(enroll("ci-1"), "pending", "no policy yet");
    let config = site.home.path().join("creddy.toml");
    let policy = "plugins = { allow_unsigned = true }\n[[policies]]\nname = \"ci\"\nmatch = { name_pattern = \"ci-*\" }\nallow = { scopes = [\"test\"] }\n";
    std::fs::write(&config, policy).expect("the file is written");
    site.server.signal("HUP");
    let wait_for = |text: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !site.server.log().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "no '{text}' in:\n{}",
                site.server.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_for("SIGHUP: policies and trusts reloaded");
    assert_eq!(enroll("ci-2"), "approved", "the reloaded policy approves");
    std::fs::write(&config, format!("{policy}limits = {{ rate = \"x\" }}\n"))
        .expect("the file is written");
    site.server.signal("HUP");
    wait_for("policies and trusts not reloaded");
    assert_eq!(
        enroll("ci-3"),
        "approved",
        "a bad file keeps the policies in force"
    );
    let trust = "[[trust]]\nname = \"gh\"\nissuer = \"http://issuer.example.com\"\nclaims = { repository = \"acme/widgets\" }\nagent = \"gh-{repository}\"\nscopes = [\"test\"]\n";
    std::fs::write(&config, format!("{policy}{trust}")).expect("the file is written");
    site.server.signal("HUP");
    wait_for(
        "trust 'gh': issuer 'http://issuer.example.com' is plain http:// to a host that is not loopback",
    );
    assert_eq!(
        enroll("ci-4"),
        "approved",
        "a bad trust keeps the policies in force"
    );
    let good = trust.replace("http://issuer.example.com", "http://127.0.0.1:9");
    std::fs::write(&config, format!("{policy}{good}")).expect("the file is written");
    let reloads = site
        .server
        .log()
        .matches("policies and trusts reloaded")
        .count();
    site.server.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while site
        .server
        .log()
        .matches("policies and trusts reloaded")
        .count()
        == reloads
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            site.server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let trail = site.admin(&["audit", "--action", "policy.loaded", "-o", "json"]);
    let events: serde_json::Value = serde_json::from_str(trail.ok()).unwrap_or_default();
    let trusts: Vec<&serde_json::Value> = events
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["details"]["trusts"])
        .collect();
    assert!(
        trusts.contains(&&serde_json::json!(["gh"])),
        "the reloaded trust is in force and audited: {trusts:?}"
    );
}

#[test]
fn the_listening_line_of_step_one_is_printed_whatever_the_log_format() {
    for format in ["text", "json"] {
        let site = Site::start_blocking(Dialect::Sqlite, &["--log-format", format]);
        let url = site.server.url();
        let addr = url.trim_start_matches("http://");
        let expected = format!(
            "creddy {} listening on {addr}, issuer {url}, storage sqlite ({})",
            env!("CARGO_PKG_VERSION"),
            site.data_dir.display()
        );
        let log = site.server.log();
        assert!(
            log.lines().any(|l| l == expected),
            "{format}: wanted {expected:?} in\n{log}"
        );
    }
}

#[test]
fn version_prints_the_version_for_people_and_scripts() {
    let home = TempDir::new().expect("TempDir is created");
    let plain = creddy(home.path(), &["version"], &[]);
    let line = plain.ok().trim().to_owned();
    let (os, arch) = creddy_plugin::registry::current_platform();
    let prefix = format!("creddy {} ({os}/{arch}, commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&prefix) && line.ends_with(')'), "{line}");
    let json: serde_json::Value =
        serde_json::from_str(creddy(home.path(), &["version", "-o", "json"], &[]).ok())
            .unwrap_or_default();
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        json["commit"].as_str().is_some_and(|c| !c.is_empty()),
        "{json}"
    );
    // With -o json a failure is one JSON object on stderr too.
    let failed = creddy(
        home.path(),
        &[
            "--server",
            "http://127.0.0.1:1",
            "-o",
            "json",
            "agent",
            "ls",
        ],
        &[("CREDDY_ADMIN_TOKEN", "cka_0000")],
    );
    let last = failed.stderr.lines().last().unwrap_or_default();
    let object: serde_json::Value = serde_json::from_str(last).unwrap_or_default();
    assert_eq!(
        object["exit_code"].as_u64(),
        failed.code.and_then(|c| u64::try_from(c).ok()),
        "{}",
        failed.stderr
    );
    assert!(object["error"].is_string(), "{}", failed.stderr);
}

/// `creddy … | head`: a reader that went away ends the command quietly, exit 0.
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let home = TempDir::new().expect("TempDir is created");
    let (reader, writer) = std::io::pipe().expect("a pipe is made");
    drop(reader);
    let output = std::process::Command::new(bin())
        .args(["version", "-o", "json"])
        .env("HOME", home.path())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("the command runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn completion_scripts_are_generated_from_the_commands() {
    let home = TempDir::new().expect("TempDir is created");
    let bash = creddy(home.path(), &["completion", "bash"], &[]);
    let script = bash.ok();
    assert!(script.contains("_creddy()"), "{script}");
    for command in ["enroll", "approve", "credentials", "version"] {
        assert!(script.contains(command), "{command} is completed");
    }
    assert!(
        creddy(home.path(), &["completion", "zsh"], &[])
            .ok()
            .starts_with("#compdef creddy")
    );
    creddy(home.path(), &["completion", "tcsh"], &[]).fails(2, "invalid value 'tcsh'");
}

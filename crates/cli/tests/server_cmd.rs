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
    let home = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    let dir = home.path().join("data");
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
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
    let home = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    let config = home.path().join("creddy.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nlisten_adress = \"x\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
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
    let home = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    let config = home.path().join("creddy.toml");
    std::fs::write(
        &config,
        "[server]\nissuer = \"https://from-file.example\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let data = home.path().join("data").display().to_string();
    let config_text = config.display().to_string();
    let base = [
        "--data-dir",
        data.as_str(),
        "--config",
        config_text.as_str(),
    ];
    let from_file = ServerProcess::start(bin(), &base, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        from_file.log().contains("issuer https://from-file.example"),
        "{}",
        from_file.log()
    );
    drop(from_file);
    let env = [("CREDDY_ISSUER", "https://from-env.example")];
    let from_env = ServerProcess::start(bin(), &base, &env).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        from_env.log().contains("issuer https://from-env.example"),
        "{}",
        from_env.log()
    );
    drop(from_env);
    let mut with_flag = base.to_vec();
    with_flag.extend(["--issuer", "https://from-flag.example"]);
    let from_flag = ServerProcess::start(bin(), &with_flag, &env).unwrap_or_else(|e| panic!("{e}"));
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
    for line in log.lines() {
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

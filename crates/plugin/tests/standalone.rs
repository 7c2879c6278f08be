//! The SDK's standalone commands, run on the test plugin's binary.

use std::process::Command;

use creddy_testkit::plugins::test_plugin_binary;
use serde_json::{Value, json};
use tempfile::TempDir;

fn plugin(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(test_plugin_binary())
        .args(args)
        .output()
        .expect("the command runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn descriptive_commands_print_the_method_results() {
    let (code, out, _) = plugin(&["info"]);
    assert_eq!(code, Some(0));
    let info: Value = serde_json::from_str(&out).unwrap_or_default();
    assert_eq!(info["name"], "test-plugin");
    let (_, schema, _) = plugin(&["schema"]);
    let schema: Value = serde_json::from_str(&schema).unwrap_or_default();
    assert_eq!(schema["fields"][0]["name"], "api_key");
    assert_eq!(schema["fields"][0]["type"], "secret");
    let (_, constraints, _) = plugin(&["constraints"]);
    assert!(constraints.contains("\"max_ttl\": 86400"));
}

#[test]
fn get_validate_and_revoke_work_from_a_config_file() {
    let dir = TempDir::new().expect("TempDir is created");
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({"api_key": "k", "state_dir": dir.path().join("up")}).to_string(),
    )
    .expect("the file is written");
    let config = config.display().to_string();
    let (code, out, _) = plugin(&["validate", "--config", &config]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "ok\nwarning: this is a test plugin\n")
    );
    let (code, out, err) = plugin(&[
        "get",
        "--config",
        &config,
        "--scope",
        "test-plugin",
        "--ttl",
        "10m",
        "--lease-id",
        "cred_x",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let credential: Value = serde_json::from_str(&out).unwrap_or_default();
    assert_eq!(credential["external_id"], "key-cred_x");
    let (_, out, _) = plugin(&["revoke", "--config", &config, "--id", "key-cred_x"]);
    assert_eq!(out, "revoked\n");
    let (_, out, _) = plugin(&["revoke", "--config", &config, "--id", "key-cred_x"]);
    assert_eq!(out, "already gone\n");
}

#[test]
fn usage_errors_exit_2_and_plugin_errors_exit_1_with_a_hint() {
    assert_eq!(plugin(&[]).0, Some(2));
    let (code, _, err) = plugin(&["get", "--ttl"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--ttl needs a value"), "{err}");
    let dir = TempDir::new().expect("TempDir is created");
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({"api_key": "wrong", "state_dir": dir.path()}).to_string(),
    )
    .expect("the file is written");
    let (code, _, err) = plugin(&["validate", "--config", &config.display().to_string()]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("Error: invalid API key") && err.contains("Hint: use a valid key"),
        "{err}"
    );
    let (code, _, err) = plugin(&[
        "get",
        "--config",
        &config.display().to_string(),
        "--scope",
        "x",
        "--ttl",
        "soon",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("invalid duration"), "{err}");
}

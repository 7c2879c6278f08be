//! The Daytona flow, narrated, on a fresh data directory: a creddy server, a Daytona
//! stand-in, the plugin installed from a signed local registry, a backend, an agent, a key
//! that works on a sandbox endpoint, and that key deleted upstream when its lease expires.
//!
//! ```text
//! cargo run --release -p creddy-testkit --bin creddy-demo
//! ```
//!
//! Everything runs on 127.0.0.1 in a temporary directory that is removed at the end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use creddy_plugin::publish::{Publish, SigningKey};
use creddy_testkit::plugins::workspace_binaries;
use creddy_testkit::registry::publish_signed;
use creddy_testkit::server::{ServerProcess, StandinProcess};
use serde_json::{Value, json};

const MASTER: &str = "dtn_demo000000000000000000000000000000000000000000000000000000master";
const TTL_SECONDS: u64 = 60;

fn step(text: &str) {
    eprintln!("\n==> {text}");
}

/// Runs `creddy ARGS…`, echoing the command and its output; returns stdout.
fn creddy(
    bin: &Path,
    home: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    show: &str,
) -> Result<String, String> {
    eprintln!("$ creddy {show}");
    let output = Command::new(bin)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .envs(envs.iter().copied())
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if !args.contains(&"json") {
        eprint!("{stdout}");
    }
    if !output.status.success() {
        return Err(format!("creddy {show} failed:\n{stdout}"));
    }
    Ok(stdout)
}

fn mask(secret: &str) -> String {
    format!(
        "{}…({} characters)",
        &secret[..secret.len().min(12)],
        secret.len()
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run().await {
        Ok(()) => {
            eprintln!("\nDemo complete; everything it started has been stopped and removed.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nError: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run() -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("creddy-demo-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let home = dir.path();
    let http = reqwest::Client::new();
    step("Building creddy, the Daytona plugin and the Daytona stand-in (first run takes a while)");
    let built = workspace_binaries(&[
        ("creddy", "creddy"),
        ("creddy-daytona", "creddy-daytona"),
        ("creddy-daytona-standin", "daytona-standin"),
    ]);
    let (creddy_bin, plugin_bin, standin_bin) =
        (built[0].clone(), built[1].clone(), built[2].clone());

    step("Starting a local Daytona stand-in (Daytona's cloud cannot be reached from here)");
    let standin = StandinProcess::start(&standin_bin, &home.join("daytona-state.json"));
    http.post(format!("{}/_standin/seed", standin.control_url()))
        .json(&creddy_daytona_standin::master_seed(MASTER, "org-demo"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "Daytona API at {} with a master key that may create keys",
        standin.api_url
    );

    step("Publishing the plugin to a local registry signed with a development key");
    let key = SigningKey::generate();
    let registry = home.join("registry");
    publish_signed(
        &registry,
        &key,
        &[Publish {
            name: "daytona",
            version: env!("CARGO_PKG_VERSION"),
            description: "Ephemeral Daytona API keys",
            binary: &plugin_bin,
            min_creddy_version: env!("CARGO_PKG_VERSION"),
        }],
    );
    let trusted = key.public_key();

    step("Starting creddy on a fresh data directory");
    let data = home.join("data");
    let plugins = home.join("plugins");
    let config = home.join("creddy.toml");
    std::fs::write(&config, "").map_err(|e| e.to_string())?;
    let server = ServerProcess::start(
        &creddy_bin,
        &[
            "--data-dir",
            &path(&data),
            "--plugin-dir",
            &path(&plugins),
            "--config",
            &path(&config),
        ],
        &[
            ("HOME", &path(home)),
            ("CREDDY_PLUGIN_TRUSTED_KEYS", &trusted),
        ],
    )?;
    eprintln!("creddy listening at {}", server.url());
    let admin_env = [
        ("CREDDY_ADMIN_URL", server.url()),
        ("CREDDY_DATA_DIR", path(&data)),
        ("CREDDY_PLUGIN_DIR", path(&plugins)),
        ("CREDDY_PLUGIN_REGISTRY", path(&registry)),
        ("CREDDY_PLUGIN_TRUSTED_KEYS", trusted.clone()),
        ("CREDDY_CONFIG", path(&config)),
    ];
    let admin_env: Vec<(&str, &str)> = admin_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let admin = |args: &[&str]| creddy(&creddy_bin, home, args, &admin_env, &args.join(" "));

    step("The operator installs the plugin");
    admin(&["plugin", "install", "daytona"])?;

    step("The operator adds the backend with the master key (read from a file, never an argument)");
    let key_file = home.join("daytona.key");
    std::fs::write(&key_file, MASTER).map_err(|e| e.to_string())?;
    let (key_arg, url_arg) = (
        format!("api_key={}", key_file.display()),
        format!("base_url={}", standin.api_url),
    );
    admin(&[
        "backend",
        "add",
        "daytona",
        "--set-file",
        &key_arg,
        "--set",
        &url_arg,
        "--set",
        "organization_id=org-demo",
    ])?;

    step("The operator creates an agent that may use Daytona");
    let created = admin(&[
        "agent", "create", "ci-agent", "--can", "daytona", "-o", "json",
    ])?;
    let created: Value = serde_json::from_str(&created).map_err(|e| e.to_string())?;
    let token = created["token"].as_str().unwrap_or_default().to_owned();
    eprintln!("agent 'ci-agent' created; its token is {}", mask(&token));

    step(&format!(
        "The agent asks for a Daytona key for {TTL_SECONDS} seconds"
    ));
    let agent_env = [("CREDDY_URL", server.url()), ("CREDDY_TOKEN", token)];
    let agent_env: Vec<(&str, &str)> = agent_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let issued = creddy(
        &creddy_bin,
        home,
        &["get", "daytona", "--ttl", "1m", "-o", "json"],
        &agent_env,
        "get daytona --ttl 1m",
    )?;
    let issued: Value = serde_json::from_str(&issued).map_err(|e| e.to_string())?;
    let dtn = issued["token"].as_str().unwrap_or_default().to_owned();
    eprintln!(
        "got {} (lease {}, expires {})",
        mask(&dtn),
        issued["id"].as_str().unwrap_or_default(),
        issued["expires_at"].as_str().unwrap_or_default()
    );

    step("The agent uses the key on Daytona's sandbox API");
    let status = create_sandbox(&http, &standin.api_url, &dtn).await;
    eprintln!("POST {}/sandbox -> {status}", standin.api_url);
    if status != 200 {
        return Err(format!(
            "the minted key was refused by the stand-in ({status})"
        ));
    }
    creddy(&creddy_bin, home, &["ls"], &agent_env, "ls")?;

    step("Waiting for the lease to expire; creddy then deletes the key in Daytona");
    let deadline = Instant::now() + Duration::from_secs(TTL_SECONDS + 60);
    loop {
        let state = creddy_testkit::server::standin_state(&http, &standin.control_url()).await?;
        let deleted: Vec<String> = state["deleted_keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        if let Some(name) = deleted.iter().find(|n| n.starts_with("creddy-ci-agent-")) {
            eprintln!("\n\u{2713} Daytona key {name} was deleted upstream when its lease expired");
            break;
        }
        if Instant::now() > deadline {
            return Err("the key was not deleted within a minute of its expiry".into());
        }
        eprint!(
            "\r  {:>3}s elapsed",
            TTL_SECONDS + 60 - deadline.saturating_duration_since(Instant::now()).as_secs()
        );
        let _ = std::io::stderr().flush();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let status = create_sandbox(&http, &standin.api_url, &dtn).await;
    eprintln!(
        "POST {}/sandbox with the old key -> {status} (refused)",
        standin.api_url
    );
    creddy(&creddy_bin, home, &["ls"], &agent_env, "ls")?;
    drop(server);
    drop(standin);
    Ok(())
}

async fn create_sandbox(http: &reqwest::Client, api: &str, key: &str) -> u16 {
    http.post(format!("{api}/sandbox"))
        .bearer_auth(key)
        .json(&json!({"name": "demo-sandbox"}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn path(p: &Path) -> String {
    PathBuf::from(p).display().to_string()
}

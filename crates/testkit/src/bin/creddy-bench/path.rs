//! The hot-path benchmark (issue #15). For each store (SQLite, then PostgreSQL with `fsync`
//! on) it starts real processes on 127.0.0.1: `creddy server` (release build) with the
//! zero-latency test plugin and the Daytona plugin, the Daytona stand-in, and once for the
//! whole run Node's `oidc-provider` (the peer, from `bench/peer`, installed with `npm ci`).
//! Load comes from `creddy-load`, a process of its own, over 32 keep-alive connections.
//!
//! 1. Idle memory of the server after start.
//! 2. `POST /oauth/token` (client credentials, HTTP Basic, EdDSA) against creddy and the peer
//!    in alternating rounds; the medians and their ratio.
//! 3. Vends through the test plugin (authenticate, authorise, intent, mint, commit, audit) by
//!    a fleet of 32 agents, one per connection.
//! 4. Vends through the Daytona stand-in by the fleet, and one connection's latency through
//!    creddy (an agent of its own) against the same call made directly to the stand-in
//!    (creddy's added latency).
//! 5. The revocation burst: every Daytona lease of step 4 expires at once (the test clock
//!    moves) and the stand-in is watched until it has deleted every key.
//! 6. `creddy get` as a whole process (start, request, print), one after another.
//!
//! It prints a Markdown report and writes every figure to a JSON file.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use creddy_testkit::plugins::{install_as, workspace_binaries};
use creddy_testkit::postgres::PgCluster;
use creddy_testkit::server::{ServerProcess, StandinProcess};
use serde_json::{Value, json};

use crate::common::{machine, memory_kib, percentile};

const MASTER: &str = "dtn_bench00000000000000000000000000000000000000000000000000000master";
const ORGANIZATION: &str = "org-1";
/// Agents that vend under load, one per connection (up to 32 connections), as a broker serves
/// many agents: each holds its own leases, so the quota check of one agent does not count the
/// whole run's leases.
const FLEET: usize = 32;
const USAGE: &str = "use: creddy-bench path [--store sqlite|postgres|both] [--rounds N] \
[--seconds S] [--connections N] [--gets N] [--revocation-concurrency N] [--peer DIR | --no-peer] \
[--out FILE]";

/// What to run.
#[derive(Debug)]
struct Args {
    stores: Vec<Db>,
    rounds: usize,
    seconds: f64,
    connections: usize,
    gets: usize,
    revocation_concurrency: usize,
    peer: Option<PathBuf>,
    out: PathBuf,
}

/// The store a site runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    fn name(self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        }
    }
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        stores: vec![Db::Sqlite, Db::Postgres],
        rounds: 3,
        seconds: 10.0,
        connections: 32,
        gets: 50,
        revocation_concurrency: 8,
        peer: Some(PathBuf::from("bench/peer")),
        out: PathBuf::from("target/bench/results.json"),
    };
    while let Some(flag) = it.next() {
        if flag == "--no-peer" {
            args.peer = None;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        let value = it.next().ok_or(format!("{flag} needs a value; {USAGE}"))?;
        let count = || {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!(
                    "{flag} must be a whole number above 0, not {value:?}"
                ))
        };
        match flag.as_str() {
            "--store" => {
                args.stores = match value.as_str() {
                    "sqlite" => vec![Db::Sqlite],
                    "postgres" => vec![Db::Postgres],
                    "both" => vec![Db::Sqlite, Db::Postgres],
                    _ => {
                        return Err(format!(
                            "--store is sqlite, postgres or both, not {value:?}"
                        ));
                    }
                }
            }
            "--rounds" => args.rounds = count()?,
            "--connections" => args.connections = count()?,
            "--gets" => args.gets = count()?,
            "--revocation-concurrency" => args.revocation_concurrency = count()?,
            "--seconds" => {
                args.seconds = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s >= 1.0)
                    .ok_or(format!("--seconds must be at least 1, not {value:?}"))?;
            }
            "--peer" => args.peer = Some(PathBuf::from(value)),
            "--out" => args.out = PathBuf::from(value),
            _ => return Err(format!("unknown option {flag}; {USAGE}")),
        }
    }
    Ok(args)
}

/// Runs the hot-path benchmark with the arguments after `path`.
pub async fn main(args: impl Iterator<Item = String>) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args).await {
        Ok(results) => {
            println!("{}", markdown(&results));
            if let Some(dir) = args.out.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let text = serde_json::to_string_pretty(&results).unwrap_or_default();
            if let Err(e) = std::fs::write(&args.out, text + "\n") {
                eprintln!("error: writing {}: {e}", args.out.display());
                return ExitCode::FAILURE;
            }
            eprintln!("results written to {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The binaries of the run.
struct Binaries {
    creddy: PathBuf,
    daytona_plugin: PathBuf,
    standin: PathBuf,
    test_plugin: PathBuf,
    load: PathBuf,
}

async fn run(args: &Args) -> Result<Value, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    eprintln!("==> building (if needed) and starting the peer");
    let found = workspace_binaries(&[
        ("creddy", "creddy"),
        ("creddy-daytona", "creddy-daytona"),
        ("creddy-daytona-standin", "daytona-standin"),
        ("creddy-testkit", "creddy-test-plugin"),
        ("creddy-testkit", "creddy-load"),
    ]);
    let bins = Binaries {
        creddy: found[0].clone(),
        daytona_plugin: found[1].clone(),
        standin: found[2].clone(),
        test_plugin: found[3].clone(),
        load: found[4].clone(),
    };
    let scratch = tempfile::TempDir::new().map_err(|e| e.to_string())?;
    let peer = match &args.peer {
        Some(dir) => Some(Peer::start(dir, scratch.path())?),
        None => None,
    };
    let mut stores = serde_json::Map::new();
    for db in &args.stores {
        eprintln!("==> {}", db.name());
        let site = Site::start(&bins, *db, args.revocation_concurrency).await?;
        stores.insert(
            db.name().to_owned(),
            measure(args, &bins, &site, peer.as_ref()).await?,
        );
    }
    Ok(json!({
        "date": time_now(),
        "commit": commit(),
        "machine": machine().trim(),
        "connections": args.connections,
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "revocation_concurrency": args.revocation_concurrency,
        "peer": peer.as_ref().map(|p| p.version.clone()),
        "stores": stores,
    }))
}

/// Every measure on one site.
async fn measure(
    args: &Args,
    bins: &Binaries,
    site: &Site,
    peer: Option<&Peer>,
) -> Result<Value, String> {
    let load = |target: Target, connections: usize, seconds: f64| {
        drive(&bins.load, &target, connections, seconds)
    };
    // A load run with what group commit did meanwhile.
    let measured = |target: Target, connections: usize, seconds: f64| {
        site.with_commits(move || load(target, connections, seconds))
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = memory_kib(site.server.pid(), "VmRSS:");

    eprintln!("  token endpoint, {} alternating rounds", args.rounds);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        ours.push(measured(site.token_target(), args.connections, args.seconds).await?);
        if let Some(peer) = peer {
            theirs.push(load(peer.token_target(), args.connections, args.seconds)?);
        }
    }
    let median = |runs: &[Value]| {
        percentile(
            &runs
                .iter()
                .map(|r| r["rps"].as_f64().unwrap_or(0.0))
                .collect::<Vec<_>>(),
            0.5,
        )
    };
    let (our_median, their_median) = (median(&ours), median(&theirs));

    eprintln!("  vends through the test plugin");
    let vend_test = measured(
        site.vend_target("test", "1h"),
        args.connections,
        args.seconds,
    )
    .await?;

    eprintln!("  `creddy get` as a process, {} runs", args.gets);
    let gets = site.time_gets(&bins.creddy, args.gets)?;

    eprintln!("  vends through the Daytona stand-in");
    let vend_daytona = measured(
        site.vend_target("daytona", "10m"),
        args.connections,
        args.seconds,
    )
    .await?;
    let one_via = measured(
        site.lone_vend_target("daytona", "10m"),
        1,
        args.seconds / 2.0,
    )
    .await?;
    let one_direct = load(site.direct_target(), 1, args.seconds / 2.0)?;
    let added =
        one_via["p50_ms"].as_f64().unwrap_or(0.0) - one_direct["p50_ms"].as_f64().unwrap_or(0.0);

    let vended = expected(&vend_daytona) + expected(&one_via);
    eprintln!("  revocation burst of {vended} Daytona leases");
    let revocation = site.revocation_burst(vended).await?;

    Ok(json!({
        "idle_rss_mib": idle_rss as f64 / 1024.0,
        "token": {
            "creddy": ours, "peer": theirs,
            "creddy_median_rps": our_median, "peer_median_rps": their_median,
            "ratio": if their_median > 0.0 { Some(our_median / their_median) } else { None },
        },
        "vend_test_plugin": vend_test,
        "vend_daytona": vend_daytona,
        "daytona_one_connection": {"via_creddy": one_via, "direct": one_direct, "added_p50_ms": added},
        "revocation": revocation,
        "creddy_get": gets,
        "rss_end_mib": memory_kib(site.server.pid(), "VmRSS:") as f64 / 1024.0,
        "rss_peak_mib": memory_kib(site.server.pid(), "VmHWM:") as f64 / 1024.0,
    }))
}

fn expected(run: &Value) -> u64 {
    run["expected"].as_u64().unwrap_or(0)
}

/// One kind of request for `creddy-load`.
struct Target {
    url: String,
    method: &'static str,
    headers: Vec<String>,
    body: String,
    expect: u16,
    /// One agent's token per line: connection `k` uses line `k` (see `creddy-load`).
    bearer_file: Option<PathBuf>,
}

/// Runs `creddy-load` against `target` and returns its report; a run where fewer than 99 %
/// of the answers are the expected ones is an error (the figures would mean nothing).
fn drive(load: &Path, target: &Target, connections: usize, seconds: f64) -> Result<Value, String> {
    let mut command = Command::new(load);
    command
        .args([
            "--url",
            &target.url,
            "--method",
            target.method,
            "--body",
            &target.body,
        ])
        .args(["--connections", &connections.to_string()])
        .args(["--duration", &seconds.to_string(), "--warmup", "1"])
        .args(["--expect", &target.expect.to_string()]);
    for header in &target.headers {
        command.args(["--header", header]);
    }
    if let Some(file) = &target.bearer_file {
        command.arg("--bearer-file").arg(file);
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", load.display()))?;
    if !output.status.success() {
        return Err(format!("creddy-load failed against {}", target.url));
    }
    let report: Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("creddy-load's report: {e}"))?;
    let requests = report["requests"].as_u64().unwrap_or(0);
    if requests == 0 || expected(&report) * 100 < requests * 99 {
        return Err(format!(
            "{} answered {} of {requests} requests with {}: {report}",
            target.url,
            expected(&report),
            target.expect
        ));
    }
    eprintln!(
        "    {:>8.0} /s  p50 {:>6.2} ms  p99 {:>6.2} ms  {}",
        report["rps"].as_f64().unwrap_or(0.0),
        report["p50_ms"].as_f64().unwrap_or(0.0),
        report["p99_ms"].as_f64().unwrap_or(0.0),
        target.url
    );
    Ok(report)
}

/// A creddy server with its backends, its agent and its stand-in.
struct Site {
    dir: tempfile::TempDir,
    _postgres: Option<PgCluster>,
    _standin: StandinProcess,
    standin_api: String,
    standin_control: String,
    server: ServerProcess,
    clock: PathBuf,
    agent_token: String,
    client_basic: String,
    /// The fleet's vend tokens, one per line.
    fleet_tokens: PathBuf,
    lone_token: String,
    /// The admin token (for `/metrics`).
    admin: String,
}

impl Site {
    async fn start(bins: &Binaries, db: Db, revocation_concurrency: usize) -> Result<Self, String> {
        let dir = tempfile::TempDir::new().map_err(|e| e.to_string())?;
        let home = dir.path();
        std::fs::write(
            home.join("creddy.toml"),
            format!(
                "plugins = {{ allow_unsigned = true }}\n\
                 revocation = {{ concurrency = {revocation_concurrency} }}\n\
                 limits = {{ max_active_leases_per_agent = 100000000, token_per_client = \"100000000/second\", \
                 vend_per_agent = \"100000000/second\", max_connections = 1024, max_connections_per_ip = 1024 }}\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        install_as(&bins.daytona_plugin, &home.join("plugins"), "daytona");
        install_as(&bins.test_plugin, &home.join("plugins"), "test");
        let standin = StandinProcess::start_in_memory(&bins.standin);
        let (standin_api, standin_control) = (standin.api_url.clone(), standin.control_url());
        let http = reqwest::Client::new();
        http.post(format!("{standin_control}/_standin/seed"))
            .json(&creddy_daytona_standin::master_seed(MASTER, ORGANIZATION))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let clock = home.join("clock");
        std::fs::write(&clock, "0").map_err(|e| e.to_string())?;
        let postgres = (db == Db::Postgres).then(PgCluster::start_durable);
        let text = |p: &Path| p.display().to_string();
        let mut args = vec![
            "--data-dir".to_owned(),
            text(&home.join("data")),
            "--config".to_owned(),
            text(&home.join("creddy.toml")),
            "--plugin-dir".to_owned(),
            text(&home.join("plugins")),
        ];
        if let Some(cluster) = &postgres {
            args.extend(["--database-url".to_owned(), cluster.url()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = ServerProcess::start(
            &bins.creddy,
            &args,
            &[
                ("HOME", &text(home)),
                ("CREDDY_TEST_CLOCK_FILE", &text(&clock)),
            ],
        )?;
        let admin = std::fs::read_to_string(home.join("data").join("admin.token"))
            .map_err(|e| format!("the admin token: {e}"))?
            .trim()
            .to_owned();
        let admin_call = |path: &'static str, body: Value| {
            let request = http
                .post(format!("{}{path}", server.url()))
                .bearer_auth(&admin)
                .json(&body);
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if status.is_success() {
                    Ok(body)
                } else {
                    Err(format!("{path}: {status} {body}"))
                }
            }
        };
        admin_call("/v1/admin/backends", json!({"type": "daytona", "name": "daytona",
            "config": {"api_key": MASTER, "base_url": standin_api, "organization_id": ORGANIZATION}}))
        .await?;
        admin_call(
            "/v1/admin/backends",
            json!({"type": "test", "name": "test",
            "config": {"api_key": "bench-master", "state_dir": home.join("upstream"),
                "upstream": "memory"}}),
        )
        .await?;
        let agent = admin_call(
            "/v1/admin/agents",
            json!({"name": "bench", "scopes": ["daytona", "test"]}),
        )
        .await?;
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        let mut fleet = String::new();
        for k in 0..FLEET {
            let member = admin_call(
                "/v1/admin/agents",
                json!({"name": format!("fleet-{k}"), "scopes": ["daytona", "test"]}),
            )
            .await?;
            fleet.push_str(&text(&member["token"]));
            fleet.push('\n');
        }
        let fleet_tokens = home.join("fleet-tokens");
        std::fs::write(&fleet_tokens, fleet).map_err(|e| e.to_string())?;
        let lone = admin_call(
            "/v1/admin/agents",
            json!({"name": "lone", "scopes": ["daytona"]}),
        )
        .await?;
        let client_basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            text(&agent["oidc"]["client_id"]),
            text(&agent["oidc"]["client_secret"])
        ));
        Ok(Self {
            agent_token: text(&agent["token"]),
            fleet_tokens,
            lone_token: text(&lone["token"]),
            client_basic,
            dir,
            _postgres: postgres,
            _standin: standin,
            standin_api,
            standin_control,
            server,
            clock,
            admin,
        })
    }

    /// Group commit's totals from `/metrics`: transactions, writes, busy microseconds.
    async fn commit_totals(&self) -> Result<[u64; 3], String> {
        let text = reqwest::Client::new()
            .get(format!("{}/metrics", self.server.url()))
            .bearer_auth(&self.admin)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("/metrics: {e}"))?
            .text()
            .await
            .map_err(|e| format!("/metrics: {e}"))?;
        let total = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok([
            total("creddy_store_commits_total"),
            total("creddy_store_committed_writes_total"),
            total("creddy_store_commit_busy_microseconds_total"),
        ])
    }

    /// Runs `load` and what group commit did meanwhile: its report with `commits` (writes per
    /// transaction, milliseconds per transaction, and the share of the run the committing
    /// task was busy) added.
    async fn with_commits(
        &self,
        load: impl FnOnce() -> Result<Value, String>,
    ) -> Result<Value, String> {
        let before = self.commit_totals().await?;
        let started = Instant::now();
        let mut report = load()?;
        let elapsed = started.elapsed().as_secs_f64();
        let after = self.commit_totals().await?;
        let [transactions, writes, busy] = [0, 1, 2].map(|i| after[i].saturating_sub(before[i]));
        let per = |n: f64| {
            if transactions > 0 {
                n / transactions as f64
            } else {
                0.0
            }
        };
        report["commits"] = json!({
            "transactions": transactions,
            "writes_per_transaction": per(writes as f64),
            "ms_per_transaction": per(busy as f64 / 1000.0),
            "busy_share": busy as f64 / 1e6 / elapsed,
        });
        Ok(report)
    }

    fn token_target(&self) -> Target {
        Target {
            url: format!("{}/oauth/token", self.server.url()),
            method: "POST",
            headers: vec![
                format!("Authorization: Basic {}", self.client_basic),
                "Content-Type: application/x-www-form-urlencoded".to_owned(),
            ],
            body: "grant_type=client_credentials".to_owned(),
            expect: 200,
            bearer_file: None,
        }
    }

    /// Vends by the fleet: one agent per connection.
    fn vend_target(&self, backend: &str, ttl: &str) -> Target {
        Target {
            url: format!("{}/v1/credentials/{backend}?ttl={ttl}", self.server.url()),
            method: "POST",
            headers: Vec::new(),
            body: String::new(),
            expect: 200,
            bearer_file: Some(self.fleet_tokens.clone()),
        }
    }

    /// Vends by one agent that holds only what it vends here (for latency on one connection).
    fn lone_vend_target(&self, backend: &str, ttl: &str) -> Target {
        Target {
            url: format!("{}/v1/credentials/{backend}?ttl={ttl}", self.server.url()),
            method: "POST",
            headers: vec![format!("Authorization: Bearer {}", self.lone_token)],
            body: String::new(),
            expect: 200,
            bearer_file: None,
        }
    }

    /// What the Daytona plugin sends to mint a key, sent to the stand-in directly.
    fn direct_target(&self) -> Target {
        let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let expires = expires
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Target {
            url: format!("{}/api-keys", self.standin_api),
            method: "POST",
            headers: vec![
                format!("Authorization: Bearer {MASTER}"),
                format!("X-Daytona-Organization-ID: {ORGANIZATION}"),
                "Content-Type: application/json".to_owned(),
            ],
            body: format!(
                r#"{{"name":"direct-{{n}}","permissions":["write:sandboxes","delete:sandboxes"],"expiresAt":"{expires}"}}"#
            ),
            expect: 201,
            bearer_file: None,
        }
    }

    /// Runs `creddy get test` `runs` times, one after another, and times each process.
    fn time_gets(&self, creddy: &Path, runs: usize) -> Result<Value, String> {
        let home = self.dir.path().join("agent-home");
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
        let mut millis = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let output = Command::new(creddy)
                .args(["get", "test", "--ttl", "1h"])
                .env_clear()
                .env("HOME", &home)
                .env("CREDDY_URL", self.server.url())
                .env("CREDDY_TOKEN", &self.agent_token)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("running creddy get: {e}"))?;
            millis.push(started.elapsed().as_secs_f64() * 1000.0);
            if !output.status.success() || output.stdout.is_empty() {
                return Err(format!(
                    "creddy get failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
        }
        Ok(json!({
            "runs": runs,
            "p50_ms": percentile(&millis, 0.5),
            "p99_ms": percentile(&millis, 0.99),
            "max_ms": percentile(&millis, 1.0),
        }))
    }

    /// Moves the server's clock past the expiry of every Daytona lease (10 minutes) and
    /// times until the stand-in has deleted `leases` keys.
    async fn revocation_burst(&self, leases: u64) -> Result<Value, String> {
        let http = reqwest::Client::new();
        let deleted = || crate::common::deleted_keys(&http, &self.standin_control);
        let before = deleted().await?;
        std::fs::write(&self.clock, (11 * 60 * 1000).to_string()).map_err(|e| e.to_string())?;
        let started = Instant::now();
        loop {
            let done = deleted().await? - before;
            if done >= leases {
                break;
            }
            if started.elapsed() > Duration::from_secs(900) {
                return Err(format!("only {done} of {leases} revoked after 15 minutes"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok(json!({
            "leases": leases,
            "seconds": seconds,
            "per_second": leases as f64 / seconds,
            "note": "includes up to 200 ms of the test clock's reaper poll and 100 ms of watching",
        }))
    }
}

/// Node's `oidc-provider`, configured like creddy's token endpoint (`bench/peer/server.mjs`).
struct Peer {
    child: std::process::Child,
    url: String,
    basic: String,
    version: String,
}

impl Peer {
    fn start(dir: &Path, scratch: &Path) -> Result<Self, String> {
        let package = dir.join("node_modules/oidc-provider/package.json");
        let version = std::fs::read_to_string(&package)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(|v| format!("oidc-provider {v}")))
            .ok_or_else(|| {
                format!(
                    "the peer is not installed in {}: run `npm ci --prefix {}` (cargo xtask bench does), or pass --no-peer",
                    dir.display(),
                    dir.display()
                )
            })?;
        let mut secret = [0u8; 24];
        creddy_core::secret::fill_random(&mut secret);
        let secret = hex::encode(secret);
        let secret_file = scratch.join("peer-secret");
        std::fs::write(&secret_file, &secret).map_err(|e| e.to_string())?;
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg(&secret_file)
            .env("NODE_ENV", "production")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting node: {e} (is Node.js installed?)"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .map_err(|e| e.to_string())?;
        let url = line
            .trim()
            .strip_prefix("listening ")
            .ok_or(format!("the peer did not start: {line:?}"))?
            .to_owned();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("bench:{secret}"));
        Ok(Self {
            child,
            url,
            basic,
            version,
        })
    }

    fn token_target(&self) -> Target {
        Target {
            url: format!("{}/token", self.url),
            method: "POST",
            headers: vec![
                format!("Authorization: Basic {}", self.basic),
                "Content-Type: application/x-www-form-urlencoded".to_owned(),
            ],
            body: "grant_type=client_credentials".to_owned(),
            expect: 200,
            bearer_file: None,
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now, in RFC 3339.
fn time_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The commit measured, with `-dirty` when the work tree has changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short=12", "HEAD"]);
    if git(&["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        head
    } else {
        format!("{head}-dirty")
    }
}

/// The report's Markdown: one table per store, with the issue's targets.
fn markdown(results: &Value) -> String {
    let mut out = format!(
        "{} Commit {}, {}; {} connections, {} s per run, {} token rounds, revocation.concurrency {}; peer: {}.\n",
        results["machine"].as_str().unwrap_or_default(),
        results["commit"].as_str().unwrap_or_default(),
        results["date"].as_str().unwrap_or_default(),
        results["connections"],
        results["seconds_per_run"],
        results["rounds"],
        results["revocation_concurrency"],
        results["peer"].as_str().unwrap_or("none"),
    );
    let Some(stores) = results["stores"].as_object() else {
        return out;
    };
    for (name, store) in stores {
        let run = |r: &Value| {
            let commits = &r["commits"];
            let commits = if commits.is_object() {
                format!(
                    "; group commit: {:.1} writes in {:.2} ms per transaction, busy {:.0} %",
                    commits["writes_per_transaction"].as_f64().unwrap_or(0.0),
                    commits["ms_per_transaction"].as_f64().unwrap_or(0.0),
                    commits["busy_share"].as_f64().unwrap_or(0.0) * 100.0
                )
            } else {
                String::new()
            };
            format!(
                "{:.0} /s, p50 {:.2} ms, p99 {:.2} ms{commits}",
                r["rps"].as_f64().unwrap_or(0.0),
                r["p50_ms"].as_f64().unwrap_or(0.0),
                r["p99_ms"].as_f64().unwrap_or(0.0)
            )
        };
        let rounds = |runs: &Value| {
            runs.as_array()
                .map(|runs| runs.iter().map(run).collect::<Vec<_>>().join("<br>"))
                .unwrap_or_default()
        };
        let token = &store["token"];
        let one = &store["daytona_one_connection"];
        let revocation = &store["revocation"];
        let gets = &store["creddy_get"];
        let rows = [
            (
                "Token endpoint, creddy (rounds)",
                rounds(&token["creddy"]),
                "≥ 12,000 /s, p99 < 10 ms",
            ),
            ("Token endpoint, peer (rounds)", rounds(&token["peer"]), ""),
            (
                "Token endpoint, ratio of medians",
                token["ratio"]
                    .as_f64()
                    .map_or_else(|| "no peer".to_owned(), |r| format!("{r:.2}×")),
                "≥ 5×",
            ),
            (
                "Vend, test plugin (32 agents)",
                run(&store["vend_test_plugin"]),
                "≥ 3,000 /s, p99 < 20 ms",
            ),
            (
                "Vend, Daytona stand-in (32 agents)",
                run(&store["vend_daytona"]),
                "",
            ),
            (
                "One connection: vend through creddy",
                run(&one["via_creddy"]),
                "",
            ),
            (
                "One connection: the stand-in directly",
                run(&one["direct"]),
                "",
            ),
            (
                "creddy's added latency at p50",
                format!("{:.2} ms", one["added_p50_ms"].as_f64().unwrap_or(0.0)),
                "< 2 ms",
            ),
            (
                "Revocation burst, one backend (`revocation.concurrency` in the header)",
                format!(
                    "{} leases in {:.2} s: {:.0} /s",
                    revocation["leases"],
                    revocation["seconds"].as_f64().unwrap_or(0.0),
                    revocation["per_second"].as_f64().unwrap_or(0.0)
                ),
                "≥ 1,000 /s",
            ),
            (
                "`creddy get` as a process",
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms ({} runs)",
                    gets["p50_ms"].as_f64().unwrap_or(0.0),
                    gets["p99_ms"].as_f64().unwrap_or(0.0),
                    gets["runs"]
                ),
                "< 20 ms",
            ),
            (
                "Server memory: idle / end / peak",
                format!(
                    "{:.1} / {:.1} / {:.1} MiB",
                    store["idle_rss_mib"].as_f64().unwrap_or(0.0),
                    store["rss_end_mib"].as_f64().unwrap_or(0.0),
                    store["rss_peak_mib"].as_f64().unwrap_or(0.0)
                ),
                "idle < 50 MB",
            ),
        ];
        out.push_str(&format!(
            "\n### {name}\n\n| Measure | Figure | Target |\n|---|---|---|\n"
        ));
        for (what, figure, target) in rows {
            out.push_str(&format!("| {what} | {figure} | {target} |\n"));
        }
    }
    out
}

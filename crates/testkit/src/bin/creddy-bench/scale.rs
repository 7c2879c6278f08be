//! The scale benchmark of the lease engine (issue #5): a million live leases in SQLite, the
//! server's restart to ready, its memory, the vend path and revocation throughput against the
//! Daytona stand-in. It prints a Markdown report; the figures go in `docs/benchmarks.md`.
//!
//! ```text
//! cargo run --release -p creddy-testkit --bin creddy-bench -- scale [--leases 1000000] [--vends 2000]
//! ```
//!
//! Everything runs on 127.0.0.1 in a temporary directory, with real processes: `creddy
//! server` (release build), the Daytona plugin and the stand-in. The seeded leases are
//! inserted straight into the database (their audit records are not part of what is
//! measured); the vended ones go through the API like any agent's. Time is moved with the
//! test clock file, as the fault tests do; while it is set the reaper polls every 200 ms, which
//! bounds the measured expiry-to-revocation lag from below.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use creddy_testkit::plugins::{install_as, workspace_binaries};
use creddy_testkit::server::{ServerProcess, StandinProcess};
use serde_json::{Value, json};

const MASTER: &str = "dtn_bench00000000000000000000000000000000000000000000000000000master";

struct Args {
    leases: u64,
    vends: usize,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        leases: 1_000_000,
        vends: 2_000,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--leases" => args.leases = value.parse().map_err(|e| format!("--leases: {e}"))?,
            "--vends" => args.vends = value.parse().map_err(|e| format!("--vends: {e}"))?,
            _ => return Err(format!("unknown option {flag}; use --leases N, --vends N")),
        }
    }
    Ok(args)
}

/// The report's rows.
#[derive(Default)]
struct Report(Vec<(String, String)>);

impl Report {
    fn add(&mut self, what: &str, value: String) {
        eprintln!("  {what}: {value}");
        self.0.push((what.to_owned(), value));
    }
}

/// Runs the scale benchmark with the arguments after `scale`.
pub async fn main(args: impl Iterator<Item = String>) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(report) => {
            println!("{}", crate::common::machine());
            println!("| Measure | Value |\n|---|---|");
            for (what, value) in report.0 {
                println!("| {what} | {value} |");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A `creddy server` and how to reach it as admin.
struct Node {
    process: ServerProcess,
    admin: String,
    http: reqwest::Client,
}

impl Node {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.process.url()))
            .bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("{path}: {status} {body}"));
        }
        Ok(body)
    }

    async fn metrics(&self) -> Result<String, String> {
        self.http
            .get(format!("{}/metrics", self.process.url()))
            .bearer_auth(&self.admin)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())
    }

    fn rss_kib(&self, field: &str) -> u64 {
        crate::common::memory_kib(self.process.pid(), field)
    }
}

struct Bench {
    dir: tempfile::TempDir,
    creddy: PathBuf,
    clock: PathBuf,
    _standin: StandinProcess,
    api_url: String,
    standin_control: String,
}

impl Bench {
    fn start_node(&self) -> Result<Node, String> {
        let text = |p: &Path| p.display().to_string();
        let home = self.dir.path();
        let args = [
            "--data-dir".to_owned(),
            text(&home.join("data")),
            "--config".to_owned(),
            text(&home.join("creddy.toml")),
            "--plugin-dir".to_owned(),
            text(&home.join("plugins")),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (home_text, clock) = (text(home), text(&self.clock));
        let process = ServerProcess::start(
            &self.creddy,
            &args,
            &[("HOME", &home_text), ("CREDDY_TEST_CLOCK_FILE", &clock)],
        )?;
        let admin = std::fs::read_to_string(home.join("data").join("admin.token"))
            .map_err(|e| e.to_string())?
            .trim()
            .to_owned();
        Ok(Node {
            process,
            admin,
            http: reqwest::Client::new(),
        })
    }

    /// Sets the servers' clock to the system time plus `seconds`.
    fn set_offset(&self, seconds: i64) -> Result<(), String> {
        std::fs::write(&self.clock, (seconds * 1000).to_string()).map_err(|e| e.to_string())
    }
}

async fn run(args: Args) -> Result<Report, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut report = Report::default();
    eprintln!("==> building and starting (server, Daytona plugin, stand-in)");
    let binaries = workspace_binaries(&[
        ("creddy", "creddy"),
        ("creddy-daytona", "creddy-daytona"),
        ("creddy-daytona-standin", "daytona-standin"),
    ]);
    let dir = tempfile::TempDir::new().map_err(|e| e.to_string())?;
    std::fs::write(
        dir.path().join("creddy.toml"),
        "plugins = { allow_unsigned = true }\nlimits = { max_active_leases_per_agent = 1000000 }\n",
    )
    .map_err(|e| e.to_string())?;
    install_as(&binaries[1], &dir.path().join("plugins"), "daytona");
    let standin = StandinProcess::start(&binaries[2], &dir.path().join("daytona.json"));
    let (api_url, standin_control) = (standin.api_url.clone(), standin.control_url());
    reqwest::Client::new()
        .post(format!("{}/_standin/seed", standin.control_url()))
        .json(&creddy_daytona_standin::master_seed(MASTER, "org-1"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let clock = dir.path().join("clock");
    std::fs::write(&clock, "0").map_err(|e| e.to_string())?;
    let bench = Bench {
        creddy: binaries[0].clone(),
        clock,
        _standin: standin,
        api_url,
        standin_control,
        dir,
    };

    let mut node = bench.start_node()?;
    node.call(
        reqwest::Method::POST,
        "/v1/admin/backends",
        &node.admin,
        Some(json!({
        "type": "daytona", "name": "daytona",
        "config": {"api_key": MASTER, "base_url": bench.api_url, "organization_id": "org-1"}})),
    )
    .await?;
    let agent = node
        .call(
            reqwest::Method::POST,
            "/v1/admin/agents",
            &node.admin,
            Some(json!({"name": "bench", "scopes": ["daytona"]})),
        )
        .await?;
    let token = agent["token"].as_str().unwrap_or_default().to_owned();
    node.process.signal_and_wait("TERM");

    eprintln!("==> seeding {} live leases into SQLite", args.leases);
    let db = bench.dir.path().join("data").join("creddy.db");
    let started = Instant::now();
    seed_leases(&db, args.leases).await?;
    report.add("Live leases seeded", format!("{}", args.leases));
    report.add(
        "Seeding time (direct SQL, one transaction)",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    report.add("Database size", format!("{} MiB", size / (1024 * 1024)));

    eprintln!("==> restarting the server on them");
    let started = Instant::now();
    let node = bench.start_node()?;
    let listening = started.elapsed();
    loop {
        let ready = node
            .http
            .get(format!("{}/ready", node.process.url()))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    report.add(
        "Restart to listening",
        format!("{:.2} s", listening.as_secs_f64()),
    );
    report.add(
        "Restart to ready (`/ready` answers 200)",
        format!("{:.2} s", started.elapsed().as_secs_f64()),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    report.add(
        "Resident memory, idle, after start",
        format!("{} MiB", node.rss_kib("VmRSS:") / 1024),
    );
    let started = Instant::now();
    let metrics = node.metrics().await?;
    report.add(
        "`GET /metrics` (counts leases by backend and state)",
        format!("{:.0} ms", started.elapsed().as_secs_f64() * 1000.0),
    );
    if !metrics.contains(&format!("state=\"active\"}} {}", args.leases)) {
        return Err(format!(
            "the metrics do not show the seeded leases:\n{metrics}"
        ));
    }

    eprintln!("==> vending {} credentials (16 at a time)", args.vends);
    let node = Arc::new(node);
    let started = Instant::now();
    let latencies = vend_many(&node, &token, args.vends).await?;
    let elapsed = started.elapsed().as_secs_f64();
    report.add(
        "Vend throughput (Daytona keys minted on the stand-in)",
        format!("{:.0} /s", args.vends as f64 / elapsed),
    );
    report.add(
        "Vend latency p50 / p99",
        format!(
            "{:.1} / {:.1} ms",
            crate::common::percentile(&latencies, 0.50),
            crate::common::percentile(&latencies, 0.99)
        ),
    );
    report.add(
        "Resident memory after the vends",
        format!("{} MiB", node.rss_kib("VmRSS:") / 1024),
    );

    eprintln!(
        "==> letting the {} vended leases expire at once",
        args.vends
    );
    bench.set_offset(61)?;
    let started = Instant::now();
    loop {
        let revoked = crate::common::deleted_keys(&node.http, &bench.standin_control).await?;
        if revoked >= args.vends as u64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {revoked} revoked after 10 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    report.add(
        "Revocation throughput (burst, 8 concurrent per backend)",
        format!("{:.0} /s", args.vends as f64 / elapsed),
    );

    eprintln!("==> expiry-to-revocation lag, one lease at a time");
    let mut lags = Vec::new();
    for _ in 0..20 {
        // The plugin stamps the key's expiry from the system time, which caps the lease's;
        // vend at the system time, then move the clock to the expiry.
        bench.set_offset(0)?;
        let lease = node
            .call(
                reqwest::Method::POST,
                "/v1/credentials/daytona?ttl=1m",
                &token,
                None,
            )
            .await?;
        let id = lease["id"].as_str().unwrap_or_default().to_owned();
        bench.set_offset(60)?;
        let started = Instant::now();
        loop {
            let shown = node
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/admin/tokens/{id}"),
                    &node.admin,
                    None,
                )
                .await?;
            if shown["state"] == "revoked" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lags.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    report.add(
        "Expiry-to-revocation lag p50 / max of 20 (includes the test clock's 200 ms poll)",
        format!(
            "{:.0} / {:.0} ms",
            crate::common::percentile(&lags, 0.5),
            crate::common::percentile(&lags, 1.0)
        ),
    );
    report.add(
        "Resident memory at the end / peak",
        format!(
            "{} / {} MiB",
            node.rss_kib("VmRSS:") / 1024,
            node.rss_kib("VmHWM:") / 1024
        ),
    );
    Ok(report)
}

/// Inserts `n` active leases of a seeded agent, expiring in 30 days, in one transaction.
async fn seed_leases(db: &Path, n: u64) -> Result<(), String> {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as i64;
    let expires = now + 30 * 86_400_000;
    let mut tx = conn.begin().await.map_err(|e| e.to_string())?;
    const BATCH: u64 = 500;
    let mut next = 0;
    while next < n {
        let rows = BATCH.min(n - next);
        let mut sql = String::from(
            "INSERT INTO leases (id, agent_id, agent_name, backend, scopes, state, created_at, expires_at, ttl_seconds, due_at, value_sha256) VALUES ",
        );
        for i in 0..rows {
            if i > 0 {
                sql.push(',');
            }
            let k = next + i;
            // Offsets keep the expiries distinct, as real traffic would.
            let at = expires + (k % 86_400_000) as i64;
            sql.push_str(&format!(
                "('cred_seed{k:021}', 'ag_seeded', 'seeded', 'daytona', '[\"daytona\"]', 'active', {now}, {at}, 2592000, {at}, 'seeded')"
            ));
        }
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        next += rows;
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    conn.close().await.map_err(|e| e.to_string())
}

/// Vends `n` credentials, 16 at a time; returns each latency in milliseconds.
async fn vend_many(node: &Arc<Node>, token: &str, n: usize) -> Result<Vec<f64>, String> {
    let slots = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (node, token) = (node.clone(), token.to_owned());
        tasks.spawn(async move {
            let started = Instant::now();
            let result = node
                .call(
                    reqwest::Method::POST,
                    "/v1/credentials/daytona?ttl=1m",
                    &token,
                    None,
                )
                .await;
            drop(permit);
            result.map(|_| started.elapsed().as_secs_f64() * 1000.0)
        });
    }
    let mut latencies = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        latencies.push(done.map_err(|e| e.to_string())??);
    }
    Ok(latencies)
}

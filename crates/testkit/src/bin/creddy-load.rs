//! creddy-load: the benchmark's load generator, run as its own process so that driving load
//! never shares the measured server's runtime (as `wrk` would be used).
//!
//! ```text
//! creddy-load --url URL [--method POST] [--header 'Name: value']... [--body TEXT]
//!             [--connections 32] [--threads 2] (--duration SECONDS | --requests N)
//!             [--warmup SECONDS] [--expect STATUS] [--bearer-file FILE]
//! ```
//!
//! Each connection is an HTTP/1.1 keep-alive connection that sends its next request as soon as
//! the previous answer has been read in full. With `--bearer-file` (one token per line)
//! connection `k` sends `Authorization: Bearer` with line `k` modulo their number: many
//! agents, one per connection. `{n}` in the body is replaced by a number unique
//! to the request (for upstreams that refuse duplicate names). Requests started during the
//! warm-up are not counted. It prints one JSON object: requests, answers with the expected
//! status, other statuses, transport errors, seconds, requests per second and latency
//! percentiles in milliseconds.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;

/// What to send and for how long.
#[derive(Debug, Clone)]
struct Plan {
    host: String,
    authority: String,
    path: String,
    method: hyper::Method,
    headers: Vec<(String, String)>,
    body: String,
    connections: usize,
    threads: usize,
    duration: Option<Duration>,
    requests: Option<u64>,
    warmup: Duration,
    expect: u16,
    bearers: Vec<String>,
}

/// What one connection saw.
#[derive(Debug, Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

fn usage() -> String {
    "use: creddy-load --url URL [--method M] [--header 'N: V']... [--body TEXT] \
     [--connections N] [--threads N] (--duration S | --requests N) [--warmup S] [--expect STATUS] \
     [--bearer-file FILE]"
        .to_owned()
}

fn parse_args() -> Result<Plan, String> {
    let mut url = None;
    let mut plan = Plan {
        host: String::new(),
        authority: String::new(),
        path: String::new(),
        method: hyper::Method::GET,
        headers: Vec::new(),
        body: String::new(),
        connections: 32,
        threads: 2,
        duration: None,
        requests: None,
        warmup: Duration::ZERO,
        expect: 200,
        bearers: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {}", usage()))?;
        let number = |what: &str| -> Result<f64, String> {
            value
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| format!("{what} must be a non-negative number, not {value:?}"))
        };
        match flag.as_str() {
            "--url" => url = Some(value.clone()),
            "--method" => {
                plan.method = value
                    .parse()
                    .map_err(|_| format!("--method: {value:?} is not an HTTP method"))?;
            }
            "--header" => {
                let (name, text) = value
                    .split_once(':')
                    .ok_or_else(|| format!("--header {value:?}: use 'Name: value'"))?;
                plan.headers
                    .push((name.trim().to_owned(), text.trim().to_owned()));
            }
            "--body" => plan.body = value.clone(),
            "--connections" => plan.connections = number("--connections")?.max(1.0) as usize,
            "--threads" => plan.threads = number("--threads")?.max(1.0) as usize,
            "--duration" => plan.duration = Some(Duration::from_secs_f64(number("--duration")?)),
            "--requests" => plan.requests = Some(number("--requests")? as u64),
            "--warmup" => plan.warmup = Duration::from_secs_f64(number("--warmup")?),
            "--expect" => plan.expect = number("--expect")? as u16,
            "--bearer-file" => {
                let text = std::fs::read_to_string(&value)
                    .map_err(|e| format!("--bearer-file {value}: {e}"))?;
                plan.bearers = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect();
                if plan.bearers.is_empty() {
                    return Err(format!("--bearer-file {value}: no token in it"));
                }
            }
            _ => return Err(format!("unknown option {flag}; {}", usage())),
        }
    }
    let url = url.ok_or_else(usage)?;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url {url:?}: only http:// URLs are driven"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    plan.authority = authority.to_owned();
    plan.host = authority.to_owned();
    plan.path = if path.is_empty() { "/" } else { path }.to_owned();
    if plan.duration.is_none() == plan.requests.is_none() {
        return Err(format!(
            "give one of --duration and --requests; {}",
            usage()
        ));
    }
    Ok(plan)
}

fn main() -> ExitCode {
    let plan = match parse_args() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.threads)
        .enable_all()
        .build()
        .expect("a runtime for the load");
    match runtime.block_on(drive(plan)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every connection to the end and reports.
async fn drive(plan: Plan) -> Result<serde_json::Value, String> {
    let plan = Arc::new(plan);
    let sequence = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let counted_from = started + plan.warmup;
    let deadline = plan.duration.map(|d| counted_from + d);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..plan.connections {
        tasks.spawn(connection(
            k,
            Arc::clone(&plan),
            Arc::clone(&sequence),
            counted_from,
            deadline,
        ));
    }
    let mut all = Tally::default();
    while let Some(done) = tasks.join_next().await {
        let tally = done.map_err(|e| format!("a connection task failed: {e}"))?;
        all.latencies_us.extend(tally.latencies_us);
        for (status, n) in tally.statuses {
            *all.statuses.entry(status).or_default() += n;
        }
        all.errors += tally.errors;
    }
    let seconds = counted_from.elapsed().as_secs_f64();
    Ok(report(&plan, all, seconds))
}

/// The JSON report of a run.
fn report(plan: &Plan, mut all: Tally, seconds: f64) -> serde_json::Value {
    all.latencies_us.sort_unstable();
    let requests = all.latencies_us.len() as u64;
    let expected = all.statuses.get(&plan.expect).copied().unwrap_or(0);
    let other: BTreeMap<String, u64> = all
        .statuses
        .iter()
        .filter(|(status, _)| **status != plan.expect)
        .map(|(status, n)| (status.to_string(), *n))
        .collect();
    let at = |q: f64| {
        let sorted = &all.latencies_us;
        if sorted.is_empty() {
            return 0.0;
        }
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        f64::from(sorted[index]) / 1000.0
    };
    json!({
        "requests": requests,
        "expected": expected,
        "other_statuses": other,
        "errors": all.errors,
        "seconds": seconds,
        "rps": requests as f64 / seconds.max(f64::EPSILON),
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "max_ms": at(1.0),
    })
}

/// One keep-alive connection, reconnecting after a transport error.
async fn connection(
    k: usize,
    plan: Arc<Plan>,
    sequence: Arc<AtomicU64>,
    counted_from: Instant,
    deadline: Option<Instant>,
) -> Tally {
    let mut tally = Tally::default();
    'connect: loop {
        let Ok(stream) = tokio::net::TcpStream::connect(&plan.authority).await else {
            tally.errors += 1;
            if tally.errors > 1_000 || deadline.is_some_and(|d| Instant::now() >= d) {
                return tally;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            tally.errors += 1;
            continue;
        };
        tokio::spawn(conn);
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return tally;
            }
            let n = sequence.fetch_add(1, Ordering::Relaxed);
            if plan.requests.is_some_and(|limit| n >= limit) {
                return tally;
            }
            let request = build(&plan, k, n);
            let sent = Instant::now();
            let answer = match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    response.into_body().collect().await.map(|_| status)
                }
                Err(e) => Err(e),
            };
            let Ok(status) = answer else {
                tally.errors += 1;
                continue 'connect;
            };
            if sent >= counted_from {
                let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                tally.latencies_us.push(micros);
                *tally.statuses.entry(status).or_default() += 1;
            }
        }
    }
}

/// The `n`th request, on connection `k`.
fn build(plan: &Plan, k: usize, n: u64) -> hyper::Request<Full<Bytes>> {
    let body = if plan.body.contains("{n}") {
        plan.body.replace("{n}", &n.to_string())
    } else {
        plan.body.clone()
    };
    let mut request = hyper::Request::builder()
        .method(plan.method.clone())
        .uri(plan.path.as_str())
        .header(hyper::header::HOST, plan.host.as_str());
    for (name, value) in &plan.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if !plan.bearers.is_empty() {
        let bearer = &plan.bearers[k % plan.bearers.len()];
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {bearer}"));
    }
    request
        .body(Full::new(Bytes::from(body)))
        .expect("the request's parts were checked when parsed")
}

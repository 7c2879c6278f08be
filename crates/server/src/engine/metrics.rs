//! Prometheus metrics (`GET /metrics`, admin scope `admin:metrics:read`), in the text
//! exposition format, written by hand to keep the dependency tree lean.
//!
//! Counters and histograms live in memory per server and start at zero at every start, as
//! Prometheus expects; lease gauges (`creddy_leases`, `creddy_leases_irrevocable`) are read
//! from the store at each scrape, so they are the same on every node sharing a database.
//! Label values come from bounded sets (configured backend names, matched route templates,
//! status codes, fixed outcome names), so the number of series cannot grow with traffic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Every metric: name, type and help text, in the order they are rendered.
const FAMILIES: [(&str, &str, &str); 13] = [
    (
        "creddy_leases",
        "gauge",
        "Leases that still need work or attention, by backend and state.",
    ),
    (
        "creddy_leases_irrevocable",
        "gauge",
        "Leases whose credential could not be revoked within the horizon (retried daily).",
    ),
    (
        CREDENTIALS_ISSUED,
        "counter",
        "Credential requests, by backend and outcome (success, denied, failure).",
    ),
    (
        ISSUE_DURATION,
        "histogram",
        "Time to answer a credential request, by backend.",
    ),
    (
        REVOCATIONS,
        "counter",
        "Revocation attempts, by backend and outcome (revoked, failed, irrevocable, lapsed).",
    ),
    (
        REVOCATION_QUEUE,
        "histogram",
        "Delay from a lease's expiry to the start of its revocation, by backend.",
    ),
    (TOKENS_ISSUED, "counter", "OIDC access tokens issued."),
    (
        "creddy_plugin_restarts_total",
        "counter",
        "Plugin process restarts, by backend.",
    ),
    (
        AUDIT_FAILURES,
        "counter",
        "Changes refused because their audit record could not be written.",
    ),
    (
        HTTP_REQUESTS,
        "counter",
        "HTTP requests, by route template and status.",
    ),
    (
        "creddy_store_commits_total",
        "counter",
        "Transactions group commit has committed for the hot paths' writes.",
    ),
    (
        "creddy_store_committed_writes_total",
        "counter",
        "Writes (audit events, lease intents, activations, failures, settlements) they carried.",
    ),
    (
        "creddy_store_commit_busy_microseconds_total",
        "counter",
        "Time spent applying and committing them (one at a time), in microseconds.",
    ),
];

/// `creddy_credentials_issued_total{backend,outcome}`.
pub const CREDENTIALS_ISSUED: &str = "creddy_credentials_issued_total";
/// `creddy_issue_duration_seconds{backend}`.
pub const ISSUE_DURATION: &str = "creddy_issue_duration_seconds";
/// `creddy_revocations_total{backend,outcome}`.
pub const REVOCATIONS: &str = "creddy_revocations_total";
/// `creddy_revocation_queue_seconds{backend}`.
pub const REVOCATION_QUEUE: &str = "creddy_revocation_queue_seconds";
/// `creddy_tokens_issued_total`.
pub const TOKENS_ISSUED: &str = "creddy_tokens_issued_total";
/// `creddy_audit_failures_total`.
pub const AUDIT_FAILURES: &str = "creddy_audit_failures_total";
/// `creddy_http_requests_total{route,status}`.
pub const HTTP_REQUESTS: &str = "creddy_http_requests_total";

/// Label pairs of one series, in a fixed order.
type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Cumulative counts per bucket of [`BUCKETS`].
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The in-memory series of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, Labels), u64>>,
    histograms: Mutex<BTreeMap<(&'static str, Labels), Histogram>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    /// Adds one to a counter.
    pub fn count(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        *lock(&self.counters)
            .entry((name, owned(labels)))
            .or_default() += 1;
    }

    /// Records one observation of a histogram.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], value: Duration) {
        let seconds = value.as_secs_f64();
        let mut histograms = lock(&self.histograms);
        let h = histograms.entry((name, owned(labels))).or_default();
        for (slot, bound) in h.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *slot += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The current value of a counter (for tests and the benchmark).
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        lock(&self.counters)
            .get(&(name, owned(labels)))
            .copied()
            .unwrap_or(0)
    }

    /// Renders every metric, with the gauges and external counters given by the caller.
    pub fn render(&self, gauges: &[Sample]) -> String {
        let counters = lock(&self.counters).clone();
        let histograms = lock(&self.histograms).clone();
        let mut out = String::new();
        for (family, kind, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
            for sample in gauges.iter().filter(|s| s.name == family) {
                line(
                    &mut out,
                    family,
                    &sample.labels,
                    "",
                    &sample.value.to_string(),
                );
            }
            for ((name, labels), value) in counters.iter().filter(|((n, _), _)| *n == family) {
                line(&mut out, name, labels, "", &value.to_string());
            }
            if family == TOKENS_ISSUED && !counters.keys().any(|(n, _)| *n == TOKENS_ISSUED) {
                line(&mut out, family, &[], "", "0");
            }
            if family == AUDIT_FAILURES && !counters.keys().any(|(n, _)| *n == AUDIT_FAILURES) {
                line(&mut out, family, &[], "", "0");
            }
            for ((name, labels), h) in histograms.iter().filter(|((n, _), _)| *n == family) {
                histogram(&mut out, name, labels, h);
            }
        }
        out
    }
}

/// One gauge or externally counted sample.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The metric's name.
    pub name: &'static str,
    /// Its labels.
    pub labels: Labels,
    /// Its value.
    pub value: i64,
}

fn owned(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn histogram(out: &mut String, name: &str, labels: &Labels, h: &Histogram) {
    for (bound, count) in BUCKETS.iter().zip(h.buckets) {
        let mut with_le = labels.clone();
        with_le.push(("le", bound.to_string()));
        line(out, name, &with_le, "_bucket", &count.to_string());
    }
    let mut inf = labels.clone();
    inf.push(("le", "+Inf".to_owned()));
    line(out, name, &inf, "_bucket", &h.count.to_string());
    line(out, name, labels, "_sum", &h.sum.to_string());
    line(out, name, labels, "_count", &h.count.to_string());
}

fn line(
    out: &mut String,
    name: &str,
    labels: &[(&'static str, String)],
    suffix: &str,
    value: &str,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape(value));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text for an admin holding `admin:metrics:read`: the counters and
/// histograms of this node, lease gauges read from the store now, and plugin restarts.
pub(crate) async fn exposition(
    engine: &crate::engine::state::Engine,
    principal: &crate::engine::auth::Principal,
) -> Result<String, crate::engine::error::EngineError> {
    principal.require_admin("admin:metrics:read")?;
    let mut samples = Vec::new();
    let mut irrevocable = 0;
    for (backend, lease_state, count) in engine.store().count_open_leases_by_backend().await? {
        if lease_state == creddy_core::lease::LeaseState::Irrevocable {
            irrevocable += count;
        }
        samples.push(Sample {
            name: "creddy_leases",
            labels: vec![
                ("backend", backend),
                ("state", lease_state.as_str().to_owned()),
            ],
            value: count,
        });
    }
    samples.push(Sample {
        name: "creddy_leases_irrevocable",
        labels: vec![],
        value: irrevocable,
    });
    for live in engine.backends().all() {
        if let Ok(process) = &live.process {
            samples.push(Sample {
                name: "creddy_plugin_restarts_total",
                labels: vec![("backend", live.name.clone())],
                value: i64::try_from(*process.restarts().borrow()).unwrap_or(i64::MAX),
            });
        }
    }
    let commits = engine.store().commit_stats();
    for (name, value) in [
        ("creddy_store_commits_total", commits.transactions),
        ("creddy_store_committed_writes_total", commits.writes),
        (
            "creddy_store_commit_busy_microseconds_total",
            commits.busy_micros,
        ),
    ] {
        samples.push(Sample {
            name,
            labels: vec![],
            value: i64::try_from(value).unwrap_or(i64::MAX),
        });
    }
    Ok(engine.metrics().render(&samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_histograms_and_gauges_render_in_the_text_format() {
        let metrics = Metrics::default();
        metrics.count(
            REVOCATIONS,
            &[("backend", "day\"tona"), ("outcome", "revoked")],
        );
        metrics.count(
            REVOCATIONS,
            &[("backend", "day\"tona"), ("outcome", "revoked")],
        );
        metrics.observe(
            ISSUE_DURATION,
            &[("backend", "b")],
            Duration::from_millis(30),
        );
        let gauges = [Sample {
            name: "creddy_leases_irrevocable",
            labels: vec![],
            value: 3,
        }];
        let text = metrics.render(&gauges);
        assert!(
            text.contains(
                "creddy_revocations_total{backend=\"day\\\"tona\",outcome=\"revoked\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("creddy_leases_irrevocable 3\n"), "{text}");
        assert!(
            text.contains("creddy_issue_duration_seconds_bucket{backend=\"b\",le=\"0.025\"} 0\n")
                && text.contains(
                    "creddy_issue_duration_seconds_bucket{backend=\"b\",le=\"0.05\"} 1\n"
                )
                && text.contains(
                    "creddy_issue_duration_seconds_bucket{backend=\"b\",le=\"+Inf\"} 1\n"
                )
                && text.contains("creddy_issue_duration_seconds_count{backend=\"b\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("creddy_tokens_issued_total 0\n"), "{text}");
        assert!(text.contains("# TYPE creddy_http_requests_total counter\n"));
        assert_eq!(
            metrics.counter(
                REVOCATIONS,
                &[("backend", "day\"tona"), ("outcome", "revoked")]
            ),
            2
        );
    }
}

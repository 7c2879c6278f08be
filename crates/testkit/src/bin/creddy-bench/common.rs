//! What both benchmarks use: percentiles, and the machine the figures came from.

/// The `p` quantile (0 to 1) of `values`, nearest rank; 0 when there are none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(0.0)
}

/// The machine the figures came from, as one line of Markdown.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|r| r.trim().to_owned()))
        .unwrap_or_default();
    format!("Machine: {cpu}, {cores} cores available, {memory} memory.\n")
}

/// A process's resident memory field (`VmRSS:`, `VmHWM:`) in KiB; 0 when unreadable.
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// How many keys the Daytona stand-in at `control_url` has deleted (asked of the stand-in, so
/// that watching revocations does not load the server).
pub async fn deleted_keys(http: &reqwest::Client, control_url: &str) -> Result<u64, String> {
    let state = creddy_testkit::server::standin_state(http, control_url).await?;
    Ok(state["deleted_keys"].as_array().map_or(0, Vec::len) as u64)
}

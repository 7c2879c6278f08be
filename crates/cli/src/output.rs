//! Presenting results: aligned tables and JSON on stdout; confirmations on stderr; times
//! shown relative to now ("3m ago", "in 4h").

use std::sync::atomic::{AtomicBool, Ordering};

use creddy_api::leases::LeaseSummary;
use creddy_core::lease::LeaseState;
use creddy_core::{Clock, SystemClock, Timestamp};
use serde::Serialize;

use crate::failure::{EXIT_OTHER, Failure, Result};

static COLOR: AtomicBool = AtomicBool::new(true);

/// Turns the ✓ symbol styling on or off (`--no-color`).
pub fn set_color(on: bool) {
    COLOR.store(on, Ordering::Relaxed);
}

/// Prints a confirmation line on stderr.
pub fn confirm(message: &str) {
    let mark = if COLOR.load(Ordering::Relaxed) {
        "\u{2713}"
    } else {
        "OK:"
    };
    eprintln!("{mark} {message}");
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new(EXIT_OTHER, format!("cannot encode JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Prints rows under a header with aligned columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// "in 9m12s", "3m ago", or "now", relative to the current time.
pub fn relative(at: Timestamp) -> String {
    let now = SystemClock.now();
    let (seconds, future) = if at >= now {
        (at.seconds_since(now), true)
    } else {
        (now.seconds_since(at), false)
    };
    if seconds == 0 {
        return "now".to_owned();
    }
    let rounded = rounded(seconds);
    if future {
        format!("in {rounded}")
    } else {
        format!("{rounded} ago")
    }
}

/// A duration rounded to its largest unit, as people read lists: `7d`, `3h`, `9m`, `40s`.
fn rounded(seconds: u64) -> String {
    let nearest = |unit: u64| (seconds + unit / 2) / unit;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3_570 => format!("{}m", nearest(60)),
        3_570..84_600 => format!("{}h", nearest(3_600).max(1)),
        _ => format!("{}d", nearest(86_400).max(1)),
    }
}

/// When a lease expires, for a table: nothing for one that has ended (revoked, failed,
/// lapsed, forgotten), whose expiry no longer means anything.
pub fn lease_expiry(state: LeaseState, expires_at: Timestamp) -> String {
    if state.is_open() {
        relative(expires_at)
    } else {
        "-".to_owned()
    }
}

/// A time relative to now, or `missing` when there is none.
pub fn relative_or(at: Option<Timestamp>, missing: &str) -> String {
    at.map_or_else(|| missing.to_owned(), relative)
}

/// A scope list for a table cell.
pub fn scope_list(scopes: &[String]) -> String {
    if scopes.is_empty() {
        "-".to_owned()
    } else {
        scopes.join(",")
    }
}

/// Prints leases as `ID BACKEND SCOPES STATE EXPIRES`.
pub fn print_leases(leases: &[LeaseSummary]) {
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            vec![
                l.id.clone(),
                l.backend.clone(),
                scope_list(&l.scopes),
                l.state.to_string(),
                lease_expiry(l.state, l.expires_at),
            ]
        })
        .collect();
    print_table(&["ID", "BACKEND", "SCOPES", "STATE", "EXPIRES"], &rows);
}

/// A spinner with `message` on a terminal; `None` when stderr is not one (callers then print
/// plain progress lines).
pub fn spinner(message: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal().then(|| {
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        spinner.set_message(message.to_owned());
        spinner
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_lists_are_rounded_to_their_largest_unit() {
        for (seconds, text) in [
            (40, "40s"),
            (59, "59s"),
            (60, "1m"),
            (9 * 60 + 20, "9m"),
            (9 * 60 + 40, "10m"),
            (3_599, "1h"),
            (3 * 3_600 + 100, "3h"),
            (7 * 86_400 - 2, "7d"),
            (86_399, "1d"),
        ] {
            assert_eq!(rounded(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn an_ended_lease_shows_no_expiry() {
        let later = Timestamp::parse_rfc3339("2999-01-01T00:00:00Z").expect("a time");
        assert_eq!(lease_expiry(LeaseState::Revoked, later), "-");
        assert_eq!(lease_expiry(LeaseState::Failed, later), "-");
        assert!(lease_expiry(LeaseState::Active, later).starts_with("in "));
    }
}

//! `creddy audit` and `creddy audit verify`: the trail for admins.

use serde_json::Value;

use crate::cli::{AuditCmd, AuditFilters as Filters, Format, Global};
use crate::credentials::admin_client;
use crate::failure::{EXIT_INTEGRITY, Failure, Result};
use crate::output::{confirm, print_json, print_table};

/// `creddy audit [verify]`.
pub async fn run(global: &Global, command: Option<AuditCmd>, filters: Filters) -> Result<()> {
    match command {
        Some(AuditCmd::Verify { expect_head }) => verify(global, expect_head).await,
        None => list(global, filters).await,
    }
}

async fn list(global: &Global, filters: Filters) -> Result<()> {
    let client = admin_client(global)?;
    let mut query = vec![("limit", filters.limit.to_string())];
    for (key, value) in [
        ("agent", filters.agent),
        ("backend", filters.backend),
        ("action", filters.action),
        ("lease", filters.lease),
        ("since", filters.since),
        ("until", filters.until),
    ] {
        query.extend(value.map(|v| (key, v)));
    }
    let events: Value = client
        .get_with_query(&["v1", "admin", "audit"], &query)
        .await?;
    if global.list_format()? == Format::Json {
        return print_json(&events);
    }
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let rows: Vec<Vec<String>> = events
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let time = e["time"]
                .as_i64()
                .map(|ms| creddy_core::Timestamp::from_millis(ms).to_rfc3339())
                .unwrap_or_default();
            let actor = match (e["actor"]["type"].as_str(), e["actor"]["name"].as_str()) {
                (Some(kind), Some(name)) => format!("{kind}:{name}"),
                (Some(kind), None) => kind.to_owned(),
                _ => "-".to_owned(),
            };
            vec![
                e["seq"].to_string(),
                time,
                text(&e["action"]),
                actor,
                text(&e["subject"]["agent_name"]),
                text(&e["backend"]),
                text(&e["lease_id"]),
                text(&e["outcome"]),
            ]
        })
        .collect();
    print_table(
        &[
            "SEQ", "TIME", "ACTION", "ACTOR", "AGENT", "BACKEND", "LEASE", "OUTCOME",
        ],
        &rows,
    );
    Ok(())
}

async fn verify(global: &Global, expect_head: Option<String>) -> Result<()> {
    let client = admin_client(global)?;
    let query: Vec<(&str, String)> = expect_head
        .map(|h| ("expect_head", h))
        .into_iter()
        .collect();
    let answer: Value = client
        .get_with_query(&["v1", "admin", "audit", "verify"], &query)
        .await?;
    if global.list_format()? == Format::Json {
        print_json(&answer)?;
    }
    if answer["ok"] == true {
        confirm(&format!(
            "{} events verified, chain intact, head {}",
            answer["events"],
            answer["head_hash"].as_str().unwrap_or_default()
        ));
        return Ok(());
    }
    eprintln!(
        "✗ chain broken at seq {} ({}): {}",
        answer["broken_at_seq"],
        answer["event_id"].as_str().unwrap_or("-"),
        answer["reason"].as_str().unwrap_or_default()
    );
    Err(Failure::silent(EXIT_INTEGRITY))
}

//! `creddy audit` and `creddy audit verify`: the trail for admins.

use creddy_api::audit::{AuditRecord, ChainVerdict};
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
    let events: Vec<AuditRecord> = client
        .get_with_query(&["v1", "admin", "audit"], &query)
        .await?;
    if global.list_format()? == Format::Json {
        return print_json(&events);
    }
    let dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
    fn text_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
        v.get(key).and_then(Value::as_str)
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let actor = match (text_of(&e.actor, "type"), text_of(&e.actor, "name")) {
                (Some(kind), Some(name)) => format!("{kind}:{name}"),
                (Some(kind), None) => kind.to_owned(),
                _ => "-".to_owned(),
            };
            let agent = e.subject.as_ref().and_then(|s| text_of(s, "agent_name"));
            vec![
                e.seq.to_string(),
                creddy_core::Timestamp::from_millis(e.time).to_rfc3339(),
                e.action.clone(),
                actor,
                dash(agent),
                dash(e.backend.as_deref()),
                dash(e.lease_id.as_deref()),
                e.outcome.clone(),
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
    let answer: ChainVerdict = client
        .get_with_query(&["v1", "admin", "audit", "verify"], &query)
        .await?;
    if global.list_format()? == Format::Json {
        print_json(&answer)?;
    }
    match answer {
        ChainVerdict::Intact(chain) => {
            confirm(&format!(
                "{} events verified, chain intact, head {}",
                chain.events, chain.head_hash
            ));
            Ok(())
        }
        ChainVerdict::Broken(chain) => {
            eprintln!(
                "✗ chain broken at seq {} ({}): {}",
                chain.broken_at_seq,
                chain.event_id.as_deref().unwrap_or("-"),
                chain.reason
            );
            Err(Failure::silent(EXIT_INTEGRITY))
        }
    }
}

//! `creddy status`: the agent looks at itself.

use serde::Deserialize;
use serde_json::Value;

use crate::cli::{Format, Global};
use crate::credentials::agent_client;
use crate::failure::{EXIT_AUTH, EXIT_OTHER, Failure, Result};
use crate::output::{print_json, print_table, relative_text, scope_list};

#[derive(Debug, Deserialize)]
struct Status {
    id: String,
    name: String,
    scopes: Vec<String>,
    policy: Option<String>,
    last_used: Option<String>,
    expires_at: Option<String>,
    active_credentials: Vec<Credential>,
    pending_amendments: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct Credential {
    id: String,
    backend: String,
    expires_at: String,
}

/// Shows the agent's identity, scopes, expiry and open credentials.
pub async fn run(global: &Global) -> Result<()> {
    let client = agent_client(global).await?;
    let value: Value = client.get(&["v1", "status"]).await.map_err(|f| {
        if f.exit_code == EXIT_AUTH && f.api_code.as_deref() == Some("unauthorized") {
            Failure::new(EXIT_AUTH, "Token rejected; re-enroll with creddy enroll").hint(
                "check CREDDY_TOKEN or the agent config; an admin can also create a new agent",
            )
        } else {
            f
        }
    })?;
    if global.list_format()? == Format::Json {
        return print_json(&value);
    }
    let status: Status = serde_json::from_value(value).map_err(|e| {
        Failure::new(
            EXIT_OTHER,
            format!("unexpected answer from the server: {e}"),
        )
    })?;
    println!("agent:      {} ({})", status.name, status.id);
    println!("server:     {}", client.base());
    println!("scopes:     {}", scope_list(&status.scopes));
    println!("policy:     {}", status.policy.as_deref().unwrap_or("-"));
    println!(
        "expires:    {}",
        relative_text(status.expires_at.as_deref(), "never")
    );
    println!(
        "last used:  {}",
        relative_text(status.last_used.as_deref(), "never")
    );
    println!("amendments: {} pending", status.pending_amendments.len());
    if status.active_credentials.is_empty() {
        println!("credentials: none active");
    } else {
        println!();
        let rows: Vec<Vec<String>> = status
            .active_credentials
            .iter()
            .map(|c| {
                vec![
                    c.id.clone(),
                    c.backend.clone(),
                    relative_text(Some(&c.expires_at), "-"),
                ]
            })
            .collect();
        print_table(&["ID", "BACKEND", "EXPIRES"], &rows);
    }
    Ok(())
}

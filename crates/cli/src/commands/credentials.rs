//! `creddy get` and `creddy ls`: an agent's credentials.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::{Format, Global};
use crate::credentials::agent_client;
use crate::failure::{EXIT_OTHER, Failure, Result};
use crate::output::{LeaseRow, print_json, print_leases};

#[derive(Debug, Serialize)]
struct VendBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Issued {
    token: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// Prints the outcome of a revocation: `✓ Revoked ID` or `Revocation of ID queued`.
fn report_revocation(global: &Global, answer: &Value) -> Result<()> {
    if global.list_format()? == Format::Json {
        return print_json(answer);
    }
    let id = answer["id"].as_str().unwrap_or_default();
    match answer["state"].as_str() {
        Some("revoking") => eprintln!("Revocation of {id} queued"),
        Some("revoked") => crate::output::confirm(&format!("Revoked {id}")),
        Some("irrevocable") => eprintln!(
            "{id} is irrevocable; a new revocation attempt was queued (to stop the retries: creddy credentials revoke {id} --force --reason TEXT)"
        ),
        Some("forgotten") => crate::output::confirm(&format!(
            "Stopped retrying {id} (forgotten); if its credential still exists upstream, delete it there"
        )),
        other => eprintln!("{id} is {}", other.unwrap_or("unknown")),
    }
    Ok(())
}

/// `creddy revoke ID`: one of the agent's own credentials.
pub async fn revoke_own(global: &Global, id: &str) -> Result<()> {
    let client = agent_client(global).await?;
    let answer: Value = client.delete_json(&["v1", "active", id]).await?;
    report_revocation(global, &answer)
}

/// `creddy credentials ls|revoke`, for admins.
pub async fn admin(global: &Global, cmd: crate::cli::CredentialsCmd) -> Result<()> {
    let client = crate::credentials::admin_client(global)?;
    match cmd {
        crate::cli::CredentialsCmd::Revoke { id, force, reason } => {
            let mut query = Vec::new();
            if force {
                query.push(("force", "true"));
            }
            if let Some(reason) = reason.as_deref() {
                query.push(("reason", reason));
            }
            let answer: Value = client
                .delete_json_with_query(&["v1", "admin", "tokens", &id], &query)
                .await?;
            report_revocation(global, &answer)
        }
        crate::cli::CredentialsCmd::Ls {
            agent,
            backend,
            state,
        } => {
            let format = global.list_format()?;
            let mut query = Vec::new();
            query.extend(agent.map(|a| ("agent", a)));
            query.extend(backend.map(|b| ("backend", b)));
            query.extend(state.map(|s| ("state", s)));
            let value = all_pages(&client, query).await?;
            if format == Format::Json {
                return print_json(&value);
            }
            let rows: Vec<Value> = decode(value)?;
            let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|l| {
                    let scopes: Vec<String> = crate::output::strings(&l["scopes"]);
                    vec![
                        text(&l["id"]),
                        text(&l["agent_name"]),
                        text(&l["backend"]),
                        crate::output::scope_list(&scopes),
                        text(&l["state"]),
                        crate::output::lease_expiry(
                            l["state"].as_str().unwrap_or_default(),
                            l["expires_at"].as_str(),
                        ),
                    ]
                })
                .collect();
            crate::output::print_table(
                &["ID", "AGENT", "BACKEND", "SCOPES", "STATE", "EXPIRES"],
                &table,
            );
            Ok(())
        }
    }
}

/// `--scope` values not naming the backend are taken as relative to it.
fn qualify(backend: &str, scope: &str) -> String {
    if scope == backend || scope.starts_with(&format!("{backend}:")) {
        scope.to_owned()
    } else {
        format!("{backend}:{scope}")
    }
}

/// Asks the server for a credential of `backend`.
pub async fn request_credential(
    client: &crate::client::Client,
    backend: &str,
    ttl: Option<String>,
    scopes: &[String],
) -> Result<Value> {
    let body = VendBody {
        ttl,
        scopes: scopes.iter().map(|s| qualify(backend, s)).collect(),
    };
    client.post(&["v1", "credentials", backend], &body).await
}

/// Gets a credential; stdout holds only the requested output.
pub async fn get(
    global: &Global,
    backend: &str,
    ttl: Option<String>,
    scopes: Vec<String>,
) -> Result<()> {
    let format = global.format(&[Format::Text, Format::Json, Format::Env], Format::Text)?;
    let client = agent_client(global).await?;
    let value = request_credential(&client, backend, ttl, &scopes).await?;
    match format {
        Format::Json => print_json(&value),
        Format::Env => {
            let issued: Issued = decode(value)?;
            for (name, value) in issued.env {
                println!("{name}={value}");
            }
            Ok(())
        }
        _ => {
            let issued: Issued = decode(value)?;
            println!("{}", issued.token);
            Ok(())
        }
    }
}

fn decode<T: for<'de> Deserialize<'de>>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| {
        Failure::new(
            EXIT_OTHER,
            format!("unexpected answer from the server: {e}"),
        )
    })
}

/// Lists the agent's live credentials.
pub async fn list(global: &Global) -> Result<()> {
    let format = global.list_format()?;
    let client = agent_client(global).await?;
    let value: Value = client.get(&["v1", "active"]).await?;
    if format == Format::Json {
        return print_json(&value);
    }
    let leases: Vec<LeaseRow> = decode(value)?;
    print_leases(&leases);
    Ok(())
}

/// Every lease the filter matches, page after page (the server answers at most 1000 at a
/// time, newest first; the last id of a page is the cursor of the next).
async fn all_pages(client: &crate::client::Client, query: Vec<(&str, String)>) -> Result<Value> {
    let mut all = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut page_query = query.clone();
        page_query.extend(before.clone().map(|b| ("before", b)));
        let page: Vec<Value> = decode(
            client
                .get_with_query(&["v1", "admin", "tokens"], &page_query)
                .await?,
        )?;
        let last = page
            .last()
            .and_then(|l| l["id"].as_str())
            .map(str::to_owned);
        let full = page.len() >= PAGE;
        all.extend(page);
        match last {
            Some(last) if full => before = Some(last),
            _ => return Ok(Value::Array(all)),
        }
    }
}

/// The server's page size for leases.
const PAGE: usize = 1000;

#[cfg(test)]
mod tests {
    use super::qualify;

    #[test]
    fn scopes_are_qualified_with_the_backend() {
        assert_eq!(
            qualify("daytona", "workspaces:read"),
            "daytona:workspaces:read"
        );
        assert_eq!(qualify("daytona", "daytona"), "daytona");
        assert_eq!(qualify("daytona", "daytona:org:x"), "daytona:org:x");
        assert_eq!(qualify("daytona", "daytona-prod"), "daytona:daytona-prod");
    }
}

//! `creddy get` and `creddy ls`: an agent's credentials.

use creddy_api::credentials::{Credential, VendRequest};
use creddy_api::leases::{Lease, LeaseSummary, Revoked};
use creddy_core::lease::LeaseState;

use crate::cli::{Format, Global};
use crate::credentials::agent_client;
use crate::failure::Result;
use crate::output::{print_json, print_leases};

/// Prints the outcome of a revocation: `✓ Revoked ID` or `Revocation of ID queued`.
fn report_revocation(global: &Global, answer: &Revoked) -> Result<()> {
    if global.list_format()? == Format::Json {
        return print_json(answer);
    }
    let id = &answer.id;
    match answer.state {
        LeaseState::Revoking => eprintln!("Revocation of {id} queued"),
        LeaseState::Revoked => crate::output::confirm(&format!("Revoked {id}")),
        LeaseState::Irrevocable => eprintln!(
            "{id} is irrevocable; a new revocation attempt was queued (to stop the retries: creddy credentials revoke {id} --force --reason TEXT)"
        ),
        LeaseState::Forgotten => crate::output::confirm(&format!(
            "Stopped retrying {id} (forgotten); if its credential still exists upstream, delete it there"
        )),
        other => eprintln!("{id} is {other}"),
    }
    Ok(())
}

/// `creddy revoke ID`: one of the agent's own credentials.
pub async fn revoke_own(global: &Global, id: &str) -> Result<()> {
    let client = agent_client(global).await?;
    let answer: Revoked = client.delete_json(&["v1", "active", id]).await?;
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
            let answer: Option<Revoked> = client
                .delete_json_with_query(&["v1", "admin", "tokens", &id], &query)
                .await?;
            match answer {
                Some(answer) => report_revocation(global, &answer),
                None => Ok(()),
            }
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
            let leases = all_pages(&client, query).await?;
            if format == Format::Json {
                return print_json(&leases);
            }
            let table: Vec<Vec<String>> = leases
                .into_iter()
                .map(|l| {
                    vec![
                        l.id,
                        l.agent_name,
                        l.backend,
                        crate::output::scope_list(&l.scopes),
                        l.state.to_string(),
                        crate::output::lease_expiry(l.state, l.expires_at),
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
) -> Result<Credential> {
    let body = VendRequest {
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
    let issued = request_credential(&client, backend, ttl, &scopes).await?;
    crate::workload::mask_for_github_actions(issued.token.expose());
    for value in issued.env.values() {
        crate::workload::mask_for_github_actions(value.expose());
    }
    match format {
        Format::Json => print_json(&issued),
        Format::Env => {
            for (name, value) in &issued.env {
                println!("{name}={}", value.expose());
            }
            Ok(())
        }
        _ => {
            println!("{}", issued.token.expose());
            Ok(())
        }
    }
}

/// Lists the agent's live credentials.
pub async fn list(global: &Global) -> Result<()> {
    let format = global.list_format()?;
    let client = agent_client(global).await?;
    let leases: Vec<LeaseSummary> = client.get(&["v1", "active"]).await?;
    if format == Format::Json {
        return print_json(&leases);
    }
    print_leases(&leases);
    Ok(())
}

/// Every lease the filter matches, page after page (the server answers at most 1000 at a
/// time, newest first; the last id of a page is the cursor of the next).
async fn all_pages(
    client: &crate::client::Client,
    query: Vec<(&str, String)>,
) -> Result<Vec<Lease>> {
    let mut all = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut page_query = query.clone();
        page_query.extend(before.clone().map(|b| ("before", b)));
        let page: Vec<Lease> = client
            .get_with_query(&["v1", "admin", "tokens"], &page_query)
            .await?;
        let last = page.last().map(|l| l.id.clone());
        let full = page.len() >= PAGE;
        all.extend(page);
        match last {
            Some(last) if full => before = Some(last),
            _ => return Ok(all),
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

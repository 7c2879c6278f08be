//! `creddy status`: the agent looks at itself.

use creddy_api::agents::AgentStatus;

use crate::cli::{Format, Global};
use crate::credentials::agent_client;
use crate::failure::{EXIT_AUTH, Failure, Result};
use crate::output::{print_json, print_table, relative, relative_or, scope_list};

/// Shows the agent's identity, scopes, expiry and open credentials.
pub async fn run(global: &Global) -> Result<()> {
    let client = agent_client(global).await?;
    let status: AgentStatus = client.get(&["v1", "status"]).await.map_err(|f| {
        if f.exit_code == EXIT_AUTH && f.api_code == Some(creddy_api::ErrorCode::Unauthorized) {
            Failure::new(EXIT_AUTH, "Token rejected; re-enroll with creddy enroll").hint(
                "check CREDDY_TOKEN or the agent config; an admin can also create a new agent",
            )
        } else {
            f
        }
    })?;
    if global.list_format()? == Format::Json {
        return print_json(&status);
    }
    println!("agent:      {} ({})", status.name, status.id);
    println!("server:     {}", client.base());
    println!("scopes:     {}", scope_list(&status.scopes));
    println!("policy:     {}", status.policy.as_deref().unwrap_or("-"));
    println!("expires:    {}", relative_or(status.expires_at, "never"));
    println!("last used:  {}", relative_or(status.last_used, "never"));
    println!("amendments: {} pending", status.pending_amendments.len());
    if status.active_credentials.is_empty() {
        println!("credentials: none active");
    } else {
        println!();
        let rows: Vec<Vec<String>> = status
            .active_credentials
            .iter()
            .map(|c| vec![c.id.clone(), c.backend.clone(), relative(c.expires_at)])
            .collect();
        print_table(&["ID", "BACKEND", "EXPIRES"], &rows);
    }
    Ok(())
}

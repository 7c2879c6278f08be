//! `creddy agent create|ls|show|rm`: agents, for admins.

use creddy_api::agents::{Agent, AgentDetail, CreateAgent, CreatedAgent};
use creddy_core::Timestamp;
use serde_json::json;

use crate::cli::{AgentCmd, Format, Global};
use crate::credentials::admin_client;
use crate::failure::Result;
use crate::output::{confirm, print_json, print_leases, print_table, relative_or, scope_list};

/// Runs an agent subcommand.
pub async fn run(global: &Global, cmd: AgentCmd) -> Result<()> {
    let client = admin_client(global)?;
    match cmd {
        AgentCmd::Create {
            name,
            scopes,
            expires_in,
        } => {
            let body = CreateAgent {
                name,
                scopes,
                expires_in,
            };
            let created: CreatedAgent = client.post(&["v1", "admin", "agents"], &body).await?;
            show_created(global.list_format()?, &created)
        }
        AgentCmd::Ls => {
            let agents: Vec<Agent> = client.get(&["v1", "admin", "agents"]).await?;
            if global.list_format()? == Format::Json {
                print_json(&agents)
            } else {
                print_agents(&agents);
                Ok(())
            }
        }
        AgentCmd::Show { name } => {
            let detail: AgentDetail = client.get(&["v1", "admin", "agents", &name]).await?;
            if global.list_format()? == Format::Json {
                print_json(&detail)
            } else {
                print_agent(&detail);
                Ok(())
            }
        }
        AgentCmd::Rm { name } => {
            let AgentDetail { agent, .. } = client.get(&["v1", "admin", "agents", &name]).await?;
            client.delete(&["v1", "admin", "agents", &name]).await?;
            if global.list_format()? == Format::Json {
                print_json(
                    &json!({"name": agent.name, "id": agent.id, "removed": true, "queued_for_revocation": agent.active_leases}),
                )?;
            }
            confirm(&format!(
                "Agent '{}' removed; {} credentials queued for revocation",
                agent.name, agent.active_leases
            ));
            Ok(())
        }
    }
}

/// An absolute time, or `never`.
fn time_or_never(at: Option<Timestamp>) -> String {
    at.map_or_else(|| "never".to_owned(), |t| t.to_string())
}

fn show_created(format: Format, created: &CreatedAgent) -> Result<()> {
    if format == Format::Json {
        return print_json(created);
    }
    let agent = &created.agent;
    confirm(&format!("Agent '{}' created", agent.name));
    for warning in &created.warnings {
        eprintln!("Warning: {warning}");
    }
    println!("id:            {}", agent.id);
    println!("scopes:        {}", scope_list(&agent.scopes));
    println!("expires:       {}", time_or_never(agent.expires_at));
    println!("token:         {}", created.token.expose());
    println!("client_id:     {}", created.oidc.client_id);
    println!("client_secret: {}", created.oidc.client_secret.expose());
    println!();
    println!("export CREDDY_URL={}", created.server_url);
    println!("export CREDDY_TOKEN={}", created.token.expose());
    eprintln!("The token and client secret are shown only now; store them safely.");
    Ok(())
}

fn print_agents(agents: &[Agent]) {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.id.clone(),
                scope_list(&a.scopes),
                a.policy.clone().unwrap_or_else(|| "-".into()),
                a.active_leases.to_string(),
                relative_or(a.last_used, "never"),
                relative_or(a.expires_at, "never"),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME",
            "ID",
            "SCOPES",
            "POLICY",
            "LEASES",
            "LAST USED",
            "EXPIRES",
        ],
        &rows,
    );
}

fn print_agent(detail: &AgentDetail) {
    let agent = &detail.agent;
    println!("name:       {}", agent.name);
    println!("id:         {}", agent.id);
    println!("scopes:     {}", scope_list(&agent.scopes));
    println!("policy:     {}", agent.policy.as_deref().unwrap_or("-"));
    println!("client_id:  {}", agent.client_id);
    println!("created:    {}", agent.created_at);
    println!("last used:  {}", relative_or(agent.last_used, "never"));
    println!("expires:    {}", time_or_never(agent.expires_at));
    println!("leases:     {}", agent.active_leases);
    if !detail.leases.is_empty() {
        println!();
        print_leases(&detail.leases);
    }
}

//! `creddy agent create|ls|show|rm`: agents, for admins.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cli::{AgentCmd, Format, Global};
use crate::credentials::admin_client;
use crate::failure::{EXIT_OTHER, Failure, Result};
use crate::output::{
    LeaseRow, confirm, print_json, print_leases, print_table, relative_text, scope_list,
};

/// An agent as the API returns it.
#[derive(Debug, Deserialize)]
struct AgentView {
    id: String,
    name: String,
    scopes: Vec<String>,
    policy: Option<String>,
    client_id: String,
    created_at: String,
    last_used: Option<String>,
    expires_at: Option<String>,
    active_leases: i64,
    #[serde(default)]
    leases: Vec<LeaseRow>,
}

/// The secrets of a newly created agent.
#[derive(Debug, Deserialize)]
struct Created {
    token: String,
    oidc: Oidc,
    server_url: String,
}

#[derive(Debug, Deserialize)]
struct Oidc {
    client_id: String,
    client_secret: String,
}

#[derive(Debug, Serialize)]
struct CreateBody<'a> {
    name: &'a str,
    scopes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in: Option<&'a str>,
}

/// Runs an agent subcommand.
pub async fn run(global: &Global, cmd: AgentCmd) -> Result<()> {
    let client = admin_client(global)?;
    match cmd {
        AgentCmd::Create {
            name,
            scopes,
            expires_in,
        } => {
            let body = CreateBody {
                name: &name,
                scopes: &scopes,
                expires_in: expires_in.as_deref(),
            };
            let value: Value = client.post(&["v1", "admin", "agents"], &body).await?;
            show_created(global.list_format()?, &value)
        }
        AgentCmd::Ls => {
            let value: Value = client.get(&["v1", "admin", "agents"]).await?;
            if global.list_format()? == Format::Json {
                print_json(&value)
            } else {
                print_agents(decode(value)?)
            }
        }
        AgentCmd::Show { name } => {
            let value: Value = client.get(&["v1", "admin", "agents", &name]).await?;
            if global.list_format()? == Format::Json {
                print_json(&value)
            } else {
                print_agent(decode(value)?)
            }
        }
        AgentCmd::Rm { name } => {
            let agent: AgentView = client.get(&["v1", "admin", "agents", &name]).await?;
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

fn decode<T: for<'de> Deserialize<'de>>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| {
        Failure::new(
            EXIT_OTHER,
            format!("unexpected answer from the server: {e}"),
        )
    })
}

fn show_created(format: Format, value: &Value) -> Result<()> {
    if format == Format::Json {
        return print_json(value);
    }
    let agent: AgentView = decode(value.clone())?;
    let created: Created = decode(value.clone())?;
    confirm(&format!("Agent '{}' created", agent.name));
    for warning in value["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        eprintln!("Warning: {warning}");
    }
    println!("id:            {}", agent.id);
    println!("scopes:        {}", scope_list(&agent.scopes));
    println!(
        "expires:       {}",
        agent.expires_at.as_deref().unwrap_or("never")
    );
    println!("token:         {}", created.token);
    println!("client_id:     {}", created.oidc.client_id);
    println!("client_secret: {}", created.oidc.client_secret);
    println!();
    println!("export CREDDY_URL={}", created.server_url);
    println!("export CREDDY_TOKEN={}", created.token);
    eprintln!("The token and client secret are shown only now; store them safely.");
    Ok(())
}

fn print_agents(agents: Vec<AgentView>) -> Result<()> {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.id.clone(),
                scope_list(&a.scopes),
                a.policy.clone().unwrap_or_else(|| "-".into()),
                a.active_leases.to_string(),
                relative_text(a.last_used.as_deref(), "never"),
                relative_text(a.expires_at.as_deref(), "never"),
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
    Ok(())
}

fn print_agent(agent: AgentView) -> Result<()> {
    println!("name:       {}", agent.name);
    println!("id:         {}", agent.id);
    println!("scopes:     {}", scope_list(&agent.scopes));
    println!("policy:     {}", agent.policy.as_deref().unwrap_or("-"));
    println!("client_id:  {}", agent.client_id);
    println!("created:    {}", agent.created_at);
    println!(
        "last used:  {}",
        relative_text(agent.last_used.as_deref(), "never")
    );
    println!(
        "expires:    {}",
        agent.expires_at.as_deref().unwrap_or("never")
    );
    println!("leases:     {}", agent.active_leases);
    if !agent.leases.is_empty() {
        println!();
        print_leases(&agent.leases);
    }
    Ok(())
}

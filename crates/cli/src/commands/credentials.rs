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

/// `--scope` values not naming the backend are taken as relative to it.
fn qualify(backend: &str, scope: &str) -> String {
    if scope == backend || scope.starts_with(&format!("{backend}:")) {
        scope.to_owned()
    } else {
        format!("{backend}:{scope}")
    }
}

/// Gets a credential; stdout holds only the requested output.
pub async fn get(
    global: &Global,
    backend: &str,
    ttl: Option<String>,
    scopes: Vec<String>,
) -> Result<()> {
    let format = global.format(&[Format::Text, Format::Json, Format::Env], Format::Text)?;
    let client = agent_client(global)?;
    let body = VendBody {
        ttl,
        scopes: scopes.iter().map(|s| qualify(backend, s)).collect(),
    };
    let value: Value = client.post(&["v1", "credentials", backend], &body).await?;
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
    let client = agent_client(global)?;
    let value: Value = client.get(&["v1", "active"]).await?;
    if format == Format::Json {
        return print_json(&value);
    }
    let leases: Vec<LeaseRow> = decode(value)?;
    print_leases(&leases);
    Ok(())
}

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

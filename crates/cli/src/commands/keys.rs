//! `creddy keys ls` and `creddy keys rotate`: the OIDC signing keys.

use serde_json::{Value, json};

use crate::cli::{Format, Global, KeysCmd};
use crate::credentials::admin_client;
use crate::failure::Result;
use crate::output::{confirm, print_json, print_table};

/// Runs a `creddy keys` command.
pub async fn run(global: &Global, cmd: KeysCmd) -> Result<()> {
    let client = admin_client(global)?;
    match cmd {
        KeysCmd::Ls => {
            let keys: Value = client.get(&["v1", "admin", "keys"]).await?;
            if global.list_format()? == Format::Json {
                return print_json(&keys);
            }
            let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            let rows: Vec<Vec<String>> = keys
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| {
                    vec![
                        text(&k["kid"]),
                        text(&k["alg"]),
                        text(&k["state"]),
                        text(&k["created_at"]),
                        text(&k["retires_at"]),
                    ]
                })
                .collect();
            print_table(&["KID", "ALG", "STATE", "CREATED", "RETIRES"], &rows);
            Ok(())
        }
        KeysCmd::Rotate { alg, grace } => {
            let mut body = json!({"alg": alg});
            if let Some(grace) = grace {
                body["grace"] = json!(grace);
            }
            let key: Value = client
                .post(&["v1", "admin", "keys", "rotate"], &body)
                .await?;
            if global.list_format()? == Format::Json {
                return print_json(&key);
            }
            let previous = match key["previous"].as_str() {
                Some(kid) => format!(
                    "; previous key {kid} retires at {}",
                    key["previous_retires_at"].as_str().unwrap_or("-")
                ),
                None => String::new(),
            };
            confirm(&format!(
                "New signing key {} ({}){previous}",
                key["kid"].as_str().unwrap_or_default(),
                key["alg"].as_str().unwrap_or_default()
            ));
            Ok(())
        }
    }
}

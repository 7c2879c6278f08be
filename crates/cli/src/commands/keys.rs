//! `creddy keys ls` and `creddy keys rotate`: the OIDC signing keys.

use creddy_api::keys::{RotateRequest, Rotated, SigningKey};

use crate::cli::{Format, Global, KeysCmd};
use crate::credentials::admin_client;
use crate::failure::Result;
use crate::output::{confirm, print_json, print_table};

/// Runs a `creddy keys` command.
pub async fn run(global: &Global, cmd: KeysCmd) -> Result<()> {
    let client = admin_client(global)?;
    match cmd {
        KeysCmd::Ls => {
            let keys: Vec<SigningKey> = client.get(&["v1", "admin", "keys"]).await?;
            if global.list_format()? == Format::Json {
                return print_json(&keys);
            }
            let rows: Vec<Vec<String>> = keys
                .into_iter()
                .map(|k| {
                    vec![
                        k.kid,
                        k.alg,
                        k.state.to_string(),
                        k.created_at.to_string(),
                        k.retires_at
                            .map_or_else(|| "-".to_owned(), |t| t.to_string()),
                    ]
                })
                .collect();
            print_table(&["KID", "ALG", "STATE", "CREATED", "RETIRES"], &rows);
            Ok(())
        }
        KeysCmd::Rotate { alg, grace } => {
            let body = RotateRequest {
                alg: Some(alg),
                grace,
            };
            let key: Rotated = client
                .post(&["v1", "admin", "keys", "rotate"], &body)
                .await?;
            if global.list_format()? == Format::Json {
                return print_json(&key);
            }
            let previous = match &key.previous {
                Some(kid) => format!(
                    "; previous key {kid} retires at {}",
                    key.previous_retires_at
                        .map_or_else(|| "-".to_owned(), |t| t.to_string())
                ),
                None => String::new(),
            };
            confirm(&format!(
                "New signing key {} ({}){previous}",
                key.kid, key.alg
            ));
            Ok(())
        }
    }
}

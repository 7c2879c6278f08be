//! Enrollment from both sides: `creddy enroll`, `request` and `unenroll` for agents;
//! `creddy pending`, `approve` and `reject` for admins.
//!
//! `enroll` sends the request, waits (a spinner on a terminal, plain lines otherwise,
//! tolerating connection errors), and saves the server URL, vend token and OIDC client
//! credentials to the agent config (mode 0600 in a 0700 directory; `CREDDY_AGENT_CONFIG`
//! names another file, so several agents can live on one machine).

use std::path::{Path, PathBuf};
use std::time::{Duration as StdDuration, Instant};

use creddy_api::agents::AgentStatus;
use creddy_api::enroll::{
    AmendAnswer, AmendRequest, Amended, AmendmentStatus, Approval, ApproveRequest, EnrollAnswer,
    EnrollRequest, PendingRequest, Pickup, Refusal, RejectRequest,
};
use creddy_core::Duration;
use creddy_core::enrollment::EnrollmentStatus;
use creddy_core::secret::Secret;
use serde::Serialize;
use serde_json::json;

use crate::cli::{Format, Global};
use crate::client::{Client, is_loopback, parse_server_url};
use crate::credentials::{
    AdminSources, DEFAULT_SERVER, admin_client, agent_client, agent_config_path, load_agent_config,
};
use crate::failure::{EXIT_CONNECT, EXIT_ENROLLMENT, Failure, Result};
use crate::output::{confirm, print_json, print_table, relative, scope_list};

/// `creddy enroll` options.
#[derive(Debug)]
pub struct EnrollArgs {
    /// The server (positional form).
    pub url: Option<String>,
    /// The agent name (default: the host name).
    pub name: Option<String>,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// Pause between polls.
    pub poll_interval: Duration,
    /// Give up after this long (none: until the request expires).
    pub timeout: Option<Duration>,
    /// Replace an existing agent config.
    pub force: bool,
}

/// What the agent config file holds.
#[derive(Debug, Serialize)]
struct SavedAgent<'a> {
    server: &'a str,
    name: &'a str,
    agent_id: &'a str,
    token: &'a str,
    client_id: &'a str,
    client_secret: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_cert: Option<String>,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "agent".to_owned())
}

/// The local admin token, when the server is on this machine and the token is readable:
/// it approves the enrollment at once (never sent to another machine).
fn local_admin_token(global: &Global, url: &reqwest::Url) -> Option<String> {
    if !is_loopback(url) {
        return None;
    }
    let mut sources = AdminSources::current(global);
    sources.server_flag = Some(url.to_string());
    sources
        .resolve()
        .ok()
        .map(|(_, bearer)| bearer.expose().trim().to_owned())
}

/// `creddy enroll`.
pub async fn enroll(global: &Global, args: EnrollArgs) -> Result<()> {
    let path = agent_config_path().ok_or_else(|| {
        Failure::usage("cannot tell where to save the agent config: HOME is not set")
            .hint("set CREDDY_AGENT_CONFIG to a file path")
    })?;
    if path.exists() && !args.force {
        return Err(Failure::usage(format!(
            "an agent config already exists at {}",
            path.display()
        ))
        .hint("pass --force to replace it, or set CREDDY_AGENT_CONFIG to another file to keep several agents on this machine"));
    }
    let server = args
        .url
        .clone()
        .or_else(|| global.server.clone())
        .or_else(|| std::env::var("CREDDY_URL").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let mut url = parse_server_url(&server)?;
    let mut name = args.name.clone().unwrap_or_else(host_name);
    let resumed = load_pending(&path).filter(|_| !args.force);
    let (secret, id) = if let Some(waiting) = resumed {
        // A request filed earlier is still waiting: wait for it rather than file another.
        url = parse_server_url(&waiting.server)?;
        name.clone_from(&waiting.name);
        eprintln!(
            "Resuming enrollment {} (agent '{}'); pass --force to file a new request instead",
            waiting.id, waiting.name
        );
        (waiting.secret, waiting.id)
    } else {
        let client = Client::new(url.clone(), None, global)?;
        let body = EnrollRequest {
            name: name.clone(),
            scopes: args.scopes.clone(),
            admin_token: local_admin_token(global, &url).map(Secret::new),
        };
        match client.post(&["v1", "enroll"], &body).await? {
            EnrollAnswer::Pending(answer) => {
                eprintln!(
                    "Enrollment requested: {} (agent '{name}', scopes: {})",
                    answer.id,
                    scope_list(&args.scopes)
                );
                let secret = answer
                    .secret
                    .map(|s| s.expose().clone())
                    .unwrap_or_default();
                let waiting = PendingEnrollment {
                    server: url.to_string(),
                    id: answer.id.clone(),
                    name: name.clone(),
                    secret: secret.clone(),
                };
                let body = toml::to_string(&waiting)
                    .map_err(|e| Failure::new(1, format!("cannot encode the request: {e}")))?;
                write_private(&pending_path(&path), &body)?;
                (secret, answer.id)
            }
            decided => return finish_enrollment(global, &path, url.as_str(), decided),
        }
    };
    let client = Client::new(url.clone(), None, global)?;
    eprintln!("Waiting for approval; an admin can run: creddy approve {id}");
    let decided = wait_for_decision(&client, &id, &secret, &args).await;
    // Kept only while the request may still be decided: after a timeout or an
    // interruption, never after an answer.
    let still_waiting = matches!(&decided, Err(e) if e.message.starts_with("timed out"));
    if !still_waiting {
        let _ = std::fs::remove_file(pending_path(&path));
    }
    finish_enrollment(global, &path, url.as_str(), decided?)
}

/// Saves the credentials of an approved enrollment, or fails with its fate.
fn finish_enrollment(
    global: &Global,
    path: &Path,
    server: &str,
    outcome: EnrollAnswer,
) -> Result<()> {
    match outcome {
        EnrollAnswer::Approved(pickup) => {
            save(path, server, &pickup, global.ca_cert.as_deref())?;
            if global.list_format()? == Format::Json {
                print_json(
                    &json!({"id": pickup.id, "status": "approved", "agent_id": pickup.agent_id,
                    "name": pickup.name, "scopes": pickup.scopes, "config": path}),
                )?;
            }
            confirm(&format!(
                "Approved: enrolled as '{}' ({}) with scopes: {}",
                pickup.name,
                pickup.agent_id,
                scope_list(&pickup.scopes)
            ));
            eprintln!("Saved credentials to {}", path.display());
            Ok(())
        }
        EnrollAnswer::Rejected(Refusal { id, reason }) => Err(Failure::new(
            EXIT_ENROLLMENT,
            format!(
                "enrollment {id} was rejected: {}",
                reason.as_deref().unwrap_or("no reason given")
            ),
        )),
        EnrollAnswer::Expired(request) => Err(Failure::new(
            EXIT_ENROLLMENT,
            format!(
                "enrollment {} expired before it was approved or picked up",
                request.id
            ),
        )
        .hint("enroll again and ask an admin to approve it (creddy pending)")),
        EnrollAnswer::Pending(request) => Err(Failure::new(
            EXIT_ENROLLMENT,
            format!("enrollment {} is still pending", request.id),
        )),
    }
}

/// Polls until the request is decided; returns the final answer.
async fn wait_for_decision(
    client: &Client,
    id: &str,
    secret: &str,
    args: &EnrollArgs,
) -> Result<EnrollAnswer> {
    let started = Instant::now();
    let spinner = crate::output::spinner(&format!("waiting for approval of {id}"));
    let interval = StdDuration::from_secs(args.poll_interval.as_seconds());
    let result = loop {
        if let Some(limit) = args.timeout
            && started.elapsed() >= StdDuration::from_secs(limit.as_seconds())
        {
            break Err(Failure::new(
                EXIT_ENROLLMENT,
                format!("timed out after {limit} waiting for approval of {id}"),
            )
            .hint("the request stays pending until it expires and is kept beside the agent config: run the same creddy enroll again to resume waiting, or ask an admin (creddy pending)"));
        }
        tokio::time::sleep(interval).await;
        match client
            .get_with_header::<EnrollAnswer>(
                &["v1", "enroll", "status"],
                ("x-creddy-enrollment-secret", secret),
            )
            .await
        {
            Ok(EnrollAnswer::Pending(_)) => {
                if spinner.is_none() {
                    eprintln!("still waiting for approval of {id}");
                }
            }
            Ok(answer) => break Ok(answer),
            Err(e) if e.exit_code == EXIT_CONNECT => {
                if spinner.is_none() {
                    eprintln!("server unreachable ({}); retrying", e.message);
                }
            }
            Err(e) if e.api_code == Some(creddy_api::ErrorCode::EnrollmentClaimed) => {
                break Err(Failure::new(
                    EXIT_ENROLLMENT,
                    format!("the credentials of {id} were already picked up by another process"),
                ));
            }
            Err(e) => break Err(e),
        }
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    result
}

/// Writes the agent config: directory 0700, file 0600 before any secret is written, then
/// renamed into place.
fn save(path: &Path, server: &str, pickup: &Pickup, ca_cert: Option<&Path>) -> Result<()> {
    let ca_cert = ca_cert
        .map(|ca| std::fs::canonicalize(ca).unwrap_or_else(|_| ca.to_owned()))
        .map(|ca| ca.display().to_string());
    let saved = SavedAgent {
        ca_cert,
        server,
        name: &pickup.name,
        agent_id: &pickup.agent_id,
        token: pickup.token.expose(),
        client_id: &pickup.oidc.client_id,
        client_secret: pickup.oidc.client_secret.expose(),
    };
    let body = toml::to_string(&saved)
        .map_err(|e| Failure::new(1, format!("cannot encode the agent config: {e}")))?;
    write_private(path, &body)
}

/// Writes `body` to `path` with mode 0600 (directory 0700) through a rename, so that a
/// secret never rests in a readable or half-written file.
fn write_private(path: &Path, body: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let fail = |what: &str, e: std::io::Error| {
        Failure::new(1, format!("cannot {what} {}: {e}", path.display()))
            .hint("set CREDDY_AGENT_CONFIG to a writable file path")
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail("create the directory of", e))?;
    }
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| fail("write", e))?;
    file.write_all(body.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail("write", e))?;
    std::fs::rename(&partial, path).map_err(|e| fail("write", e))
}

/// An enrollment still waiting for a decision, kept beside the agent config (0600) so that
/// `creddy enroll` can resume waiting after a timeout or an interruption.
#[derive(Debug, Serialize, serde::Deserialize)]
struct PendingEnrollment {
    server: String,
    id: String,
    name: String,
    secret: String,
}

/// Where the waiting enrollment of the agent config at `config` is kept.
fn pending_path(config: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pending", config.display()))
}

fn load_pending(config: &Path) -> Option<PendingEnrollment> {
    let text = std::fs::read_to_string(pending_path(config)).ok()?;
    toml::from_str(&text).ok()
}

/// `creddy pending`.
pub async fn pending(global: &Global) -> Result<()> {
    let client = admin_client(global)?;
    let rows: Vec<PendingRequest> = client.get(&["v1", "admin", "pending"]).await?;
    if global.list_format()? == Format::Json {
        return print_json(&rows);
    }
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let table: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| {
            vec![
                r.id,
                r.kind.to_string(),
                r.name,
                scope_list(&r.scopes),
                dash(r.policy),
                relative(r.created_at),
                dash(r.ip),
            ]
        })
        .collect();
    // The specification's columns, then the requesting address.
    print_table(
        &[
            "ID",
            "TYPE",
            "NAME",
            "SCOPES",
            "POLICY",
            "REQUESTED",
            "ADDRESS",
        ],
        &table,
    );
    Ok(())
}

/// `creddy approve ID [--can SCOPE…]`.
pub async fn approve(global: &Global, id: &str, scopes: &[String]) -> Result<()> {
    let client = admin_client(global)?;
    let body = ApproveRequest {
        scopes: (!scopes.is_empty()).then(|| scopes.to_vec()),
    };
    let answer: Approval = client
        .post(&["v1", "admin", "pending", id, "approve"], &body)
        .await?;
    if global.list_format()? == Format::Json {
        return print_json(&answer);
    }
    confirm(&format!(
        "Approved {id}: agent '{}' ({}) scopes: {}",
        answer.name,
        answer.agent_id,
        scope_list(&answer.scopes)
    ));
    Ok(())
}

/// `creddy reject ID [--reason TEXT]`.
pub async fn reject(global: &Global, id: &str, reason: Option<String>) -> Result<()> {
    let client = admin_client(global)?;
    let body = RejectRequest { reason };
    client
        .post_no_content(&["v1", "admin", "pending", id, "reject"], &body)
        .await?;
    if global.list_format()? == Format::Json {
        return print_json(&json!({"id": id, "status": "rejected"}));
    }
    confirm(&format!("Rejected {id}"));
    Ok(())
}

/// `creddy request --can SCOPE… [--wait]`.
pub async fn request(global: &Global, scopes: &[String], wait: bool) -> Result<()> {
    let client = agent_client(global).await?;
    let body = AmendRequest {
        scopes: scopes.to_vec(),
    };
    let finished = match client.post(&["v1", "request"], &body).await? {
        AmendAnswer::Pending(request) if wait => {
            eprintln!("Request {} pending approval; waiting", request.id);
            wait_for_amendment(&client, &request.id, scopes).await?
        }
        answer => answer,
    };
    if global.list_format()? == Format::Json {
        print_json(&finished)?;
    }
    match finished {
        AmendAnswer::Approved(_) => {
            confirm(&format!("Scopes added: {}", scope_list(scopes)));
            Ok(())
        }
        AmendAnswer::Pending(request) => {
            eprintln!("Request {} pending approval", request.id);
            Ok(())
        }
        AmendAnswer::Rejected(Refusal { id, reason }) => Err(Failure::new(
            EXIT_ENROLLMENT,
            format!(
                "request {id} was rejected{}",
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
        )),
    }
}

/// Polls the agent's request until it is no longer pending; answers its outcome with the
/// reason of a rejection.
async fn wait_for_amendment(client: &Client, id: &str, scopes: &[String]) -> Result<AmendAnswer> {
    loop {
        tokio::time::sleep(StdDuration::from_secs(2)).await;
        let request: AmendmentStatus = match client.get(&["v1", "request", id]).await {
            Ok(r) => r,
            Err(e) if e.exit_code == EXIT_CONNECT => continue,
            Err(e) => return Err(e),
        };
        let id = request.id;
        return Ok(match request.status {
            EnrollmentStatus::Pending => continue,
            EnrollmentStatus::Approved | EnrollmentStatus::Claimed => {
                AmendAnswer::Approved(Amended {
                    id,
                    scopes: scopes.to_vec(),
                })
            }
            EnrollmentStatus::Expired => AmendAnswer::Rejected(Refusal {
                id,
                reason: Some(
                    request
                        .reason
                        .unwrap_or_else(|| "it expired undecided".to_owned()),
                ),
            }),
            _ => AmendAnswer::Rejected(Refusal {
                id,
                reason: request.reason,
            }),
        });
    }
}

/// `creddy unenroll`.
pub async fn unenroll(global: &Global) -> Result<()> {
    let client = agent_client(global).await?;
    let me: AgentStatus = client.get(&["v1", "status"]).await?;
    client.delete(&["v1", "self"]).await?;
    let name = me.name;
    // Forget the saved config only when it is the agent that just left.
    let config = load_agent_config()?;
    let in_use = std::env::var("CREDDY_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| config.token.clone());
    if config.token.is_some()
        && config.token == in_use
        && let Some(path) = agent_config_path()
    {
        let _ = std::fs::remove_file(&path);
    }
    if global.list_format()? == Format::Json {
        return print_json(&json!({"name": name, "unenrolled": true}));
    }
    confirm(&format!("Unenrolled '{name}'"));
    Ok(())
}

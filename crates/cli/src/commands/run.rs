//! `creddy run --with BACKEND[:SCOPE]… [--ttl D] -- CMD…`: runs a command with fresh
//! credentials in its environment and revokes them as soon as it exits.
//!
//! Any failure to obtain a credential aborts before the command starts (credentials already
//! issued are revoked). The command runs directly (no shell), receives SIGINT, SIGTERM and
//! SIGHUP sent to `creddy run`, and its exit status becomes creddy's (128+N when it dies of
//! signal N; 126 when it cannot be executed, 127 when it is not found). A failed revocation
//! prints a warning; the lease's expiry remains the backstop.

use std::collections::BTreeMap;
use std::process::ExitStatus;

use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::Global;
use crate::client::Client;
use crate::commands::credentials::request_credential;
use crate::credentials::agent_client;
use crate::failure::{EXIT_OTHER, Failure, Result};

/// Issues the credentials, runs the command, revokes them.
pub async fn run(
    global: &Global,
    with: &[String],
    ttl: Option<String>,
    command: &[String],
) -> Result<()> {
    let client = agent_client(global).await?;
    let mut issued: Vec<String> = Vec::new();
    let environment = match gather(&client, with, ttl, &mut issued).await {
        Ok(env) => env,
        Err(failure) => {
            revoke_all(&client, &issued).await;
            return Err(failure);
        }
    };
    let status = spawn_and_wait(command, &environment).await;
    revoke_all(&client, &issued).await;
    let code = status?;
    if code == 0 {
        Ok(())
    } else {
        Err(Failure::silent(code))
    }
}

/// Requests each credential and merges their environment variables.
async fn gather(
    client: &Client,
    with: &[String],
    ttl: Option<String>,
    issued: &mut Vec<String>,
) -> Result<BTreeMap<String, String>> {
    let mut environment = BTreeMap::new();
    for spec in with {
        let (backend, scope) = match spec.split_once(':') {
            Some((b, rest)) => (b, vec![format!("{b}:{rest}")]),
            None => (spec.as_str(), vec![]),
        };
        let answer = request_credential(client, backend, ttl.clone(), &scope).await?;
        issued.push(answer.id.clone());
        let mut vars: BTreeMap<String, String> = answer
            .env
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().clone()))
            .collect();
        if vars.is_empty() {
            let name = format!(
                "CREDDY_{}_TOKEN",
                backend.to_ascii_uppercase().replace('-', "_")
            );
            vars.insert(name, answer.token.expose().clone());
        }
        for (name, value) in vars {
            if environment.insert(name.clone(), value).is_some() {
                return Err(Failure::usage(format!(
                    "two credentials set the environment variable {name}"
                ))
                .hint("request them in separate creddy run invocations"));
            }
        }
    }
    Ok(environment)
}

/// Starts the command and forwards signals until it exits; returns creddy's exit code.
async fn spawn_and_wait(command: &[String], environment: &BTreeMap<String, String>) -> Result<u8> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::usage("no command to run"))?;
    // Watch signals before the command exists, so none sent meanwhile is lost.
    let install = |kind| {
        signal(kind).map_err(|e| Failure::new(EXIT_OTHER, format!("cannot watch signals: {e}")))
    };
    let (mut interrupt, mut terminate, mut hangup) = (
        install(SignalKind::interrupt())?,
        install(SignalKind::terminate())?,
        install(SignalKind::hangup())?,
    );
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .envs(environment)
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::new(127, format!("command not found: {program}")));
        }
        Err(e) => return Err(Failure::new(126, format!("cannot run {program}: {e}"))),
    };
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    let status = loop {
        let forward = tokio::select! {
            status = child.wait() => break status,
            _ = interrupt.recv() => rustix::process::Signal::INT,
            _ = terminate.recv() => rustix::process::Signal::TERM,
            _ = hangup.recv() => rustix::process::Signal::HUP,
        };
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, forward);
        }
    };
    let status =
        status.map_err(|e| Failure::new(EXIT_OTHER, format!("waiting for {program}: {e}")))?;
    Ok(exit_code(status))
}

fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(EXIT_OTHER),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(EXIT_OTHER),
        _ => EXIT_OTHER,
    }
}

async fn revoke_all(client: &Client, ids: &[String]) {
    for id in ids.iter().filter(|id| !id.is_empty()) {
        if let Err(e) = client.delete_json::<Value>(&["v1", "active", id]).await {
            eprintln!(
                "Warning: could not revoke {id} ({}); it expires on its own",
                e.message
            );
        }
    }
}

//! Finding the server and the credentials, one routine per role.
//!
//! Admin commands: server `--server` > `CREDDY_ADMIN_URL` > `http://127.0.0.1:8400`; token
//! `CREDDY_ADMIN_TOKEN` > `<data dir>/admin.token`, trying `--data-dir`/`CREDDY_DATA_DIR`,
//! `/var/lib/creddy` and `~/.local/share/creddy` in that order (first readable file wins).
//! A token read from a file is sent only to a server on this machine.
//!
//! Agent commands: server `--server` > `CREDDY_URL` > `server` in the agent config >
//! `http://127.0.0.1:8400`; token `CREDDY_TOKEN` > `token` in the agent config
//! (`CREDDY_AGENT_CONFIG`, default `~/.config/creddy/agent.toml`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::Global;
use crate::client::{Bearer, Client, is_loopback, parse_server_url};
use crate::failure::{EXIT_AUTH, Failure, Result};

/// The server URL when nothing else names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8400";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// A client for admin commands.
pub fn admin_client(global: &Global) -> Result<Client> {
    let server = global
        .server
        .clone()
        .or_else(|| env("CREDDY_ADMIN_URL"))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let url = parse_server_url(&server)?;
    if let Some(token) = env("CREDDY_ADMIN_TOKEN") {
        return Client::new(url, Some(Bearer::new(token)));
    }
    let candidates = admin_token_candidates(global.data_dir.as_deref());
    let found = candidates
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok().map(|t| (path, t)));
    let Some((path, token)) = found else {
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Err(Failure::new(EXIT_AUTH, "no admin token found").hint(format!(
            "run this on the server's machine as the user that runs it, pass --data-dir, or set CREDDY_ADMIN_TOKEN (looked in: {})",
            tried.join(", ")
        )));
    };
    if !is_loopback(&url) {
        return Err(Failure::new(
            EXIT_AUTH,
            format!(
                "the local admin token from {} is only sent to a server on this machine, not to {url}",
                path.display()
            ),
        )
        .hint("set CREDDY_ADMIN_TOKEN to manage a remote server"));
    }
    Client::new(url, Some(Bearer::new(token)))
}

/// Where the admin token may be, in order.
fn admin_token_candidates(data_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    dirs.extend(data_dir.map(Path::to_path_buf));
    dirs.push(PathBuf::from("/var/lib/creddy"));
    dirs.extend(home().map(|h| h.join(".local/share/creddy")));
    dirs.dedup();
    dirs.into_iter().map(|d| d.join("admin.token")).collect()
}

/// The agent's saved configuration (written by `creddy enroll`; the fields the commands
/// read so far).
#[derive(Debug, Default, Deserialize)]
pub struct AgentConfig {
    /// The server the agent enrolled with.
    pub server: Option<String>,
    /// The vend token.
    pub token: Option<String>,
}

/// The agent config file's path.
pub fn agent_config_path() -> Option<PathBuf> {
    env("CREDDY_AGENT_CONFIG")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config/creddy/agent.toml")))
}

/// Reads the agent config file; a missing file is an empty config.
pub fn load_agent_config() -> Result<AgentConfig> {
    let Some(path) = agent_config_path() else {
        return Ok(AgentConfig::default());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            Failure::usage(format!(
                "invalid agent config {}: {}",
                path.display(),
                e.to_string().trim_end()
            ))
            .hint("fix the file, or remove it and enroll again")
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentConfig::default()),
        Err(e) => Err(Failure::usage(format!(
            "cannot read agent config {}: {e}",
            path.display()
        ))),
    }
}

/// A client for agent commands.
pub fn agent_client(global: &Global) -> Result<Client> {
    let config = load_agent_config()?;
    let server = global
        .server
        .clone()
        .or_else(|| env("CREDDY_URL"))
        .or(config.server)
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let url = parse_server_url(&server)?;
    let token = env("CREDDY_TOKEN").or(config.token).ok_or_else(|| {
        Failure::new(EXIT_AUTH, "no agent credentials found")
            .hint("set CREDDY_TOKEN to the agent's vend token, or enroll with: creddy enroll --server URL --name NAME --can SCOPE")
    })?;
    if url.scheme() == "http" && !is_loopback(&url) {
        eprintln!(
            "Warning: sending the agent token over plain http:// to {url}; use https:// outside a trusted network"
        );
    }
    Client::new(url, Some(Bearer::new(token)))
}

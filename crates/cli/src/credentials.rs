//! Finding the server and the credentials, one routine per role.
//!
//! Admin commands: server `--server` > `CREDDY_ADMIN_URL` > `http://127.0.0.1:8400`; token
//! `CREDDY_ADMIN_TOKEN` > `<data dir>/admin.token`, trying `--data-dir`/`CREDDY_DATA_DIR`,
//! `/var/lib/creddy` and `~/.local/share/creddy` in that order (first readable file wins).
//! A token read from a file is sent only to a server on this machine.
//!
//! Agent commands: server `--server` > `CREDDY_URL` > `server` in the agent config >
//! `http://127.0.0.1:8400`; identity `--oidc`/`CREDDY_OIDC` (the job's OIDC token exchanged,
//! §18) > `CREDDY_TOKEN` > `token` in the agent config (`CREDDY_AGENT_CONFIG`, default
//! `~/.config/creddy/agent.toml`) > client credentials.

use std::path::PathBuf;

use serde::Deserialize;

use crate::cli::Global;
use reqwest::Url;

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

/// Everything the admin credential routine reads, gathered in one place.
#[derive(Debug, Clone, Default)]
pub struct AdminSources {
    /// `--server`.
    pub server_flag: Option<String>,
    /// `CREDDY_ADMIN_URL`.
    pub admin_url: Option<String>,
    /// `CREDDY_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// `--data-dir` / `CREDDY_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// The system-wide data directory, `/var/lib/creddy`.
    pub system_dir: PathBuf,
    /// `$HOME`.
    pub home: Option<PathBuf>,
}

impl AdminSources {
    /// The sources of this process.
    pub fn current(global: &Global) -> Self {
        Self {
            server_flag: global.server.clone(),
            admin_url: env("CREDDY_ADMIN_URL"),
            admin_token: env("CREDDY_ADMIN_TOKEN"),
            data_dir: global.data_dir.clone(),
            system_dir: PathBuf::from("/var/lib/creddy"),
            home: home(),
        }
    }

    /// Where the admin token file may be, in order.
    fn token_files(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        dirs.extend(self.data_dir.clone());
        dirs.push(self.system_dir.clone());
        dirs.extend(self.home.as_ref().map(|h| h.join(".local/share/creddy")));
        dirs.dedup();
        dirs.into_iter().map(|d| d.join("admin.token")).collect()
    }

    /// The admin server URL and token.
    pub fn resolve(&self) -> Result<(Url, Bearer)> {
        let server = self
            .server_flag
            .clone()
            .or_else(|| self.admin_url.clone())
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let url = parse_server_url(&server)?;
        if let Some(token) = &self.admin_token {
            return Ok((url, Bearer::new(token.clone())));
        }
        let candidates = self.token_files();
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
        Ok((url, Bearer::new(token)))
    }
}

/// A client for admin commands.
pub fn admin_client(global: &Global) -> Result<Client> {
    let (url, bearer) = AdminSources::current(global).resolve()?;
    Client::new(url, Some(bearer), global)
}

/// The agent's saved configuration (written by `creddy enroll`; the fields the commands
/// read so far).
#[derive(Debug, Default, Deserialize)]
pub struct AgentConfig {
    /// The server the agent enrolled with.
    pub server: Option<String>,
    /// The vend token.
    pub token: Option<String>,
    /// The OIDC client id.
    pub client_id: Option<String>,
    /// The OIDC client secret.
    pub client_secret: Option<String>,
    /// A CA certificate to trust for the server (saved by `enroll --ca-cert`).
    pub ca_cert: Option<PathBuf>,
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
pub async fn agent_client(global: &Global) -> Result<Client> {
    let config = load_agent_config()?;
    // The CA saved at enrollment, unless --ca-cert or CREDDY_CA_CERT names another.
    let mut with_ca = global.clone();
    if with_ca.ca_cert.is_none() {
        with_ca.ca_cert.clone_from(&config.ca_cert);
    }
    let global = &with_ca;
    let server = global
        .server
        .clone()
        .or_else(|| env("CREDDY_URL"))
        .or(config.server)
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let url = parse_server_url(&server)?;
    if url.scheme() == "http" && !is_loopback(&url) {
        eprintln!(
            "Warning: sending the agent token over plain http:// to {url}; use https:// outside a trusted network"
        );
    }
    if let Some(source) = global.oidc.as_deref().filter(|s| !s.is_empty()) {
        let source = crate::workload::Source::parse(source)?;
        let subject = crate::workload::subject_token(&source).await?;
        let anonymous = Client::new(url.clone(), None, global)?;
        let access = anonymous.exchange_token(&subject).await?;
        return Client::new(url, Some(Bearer::new(access)), global);
    }
    if let Some(token) = env("CREDDY_TOKEN").or(config.token) {
        return Client::new(url, Some(Bearer::new(token)), global);
    }
    let client_id = env("CREDDY_CLIENT_ID").or(config.client_id);
    let client_secret = env("CREDDY_CLIENT_SECRET").or(config.client_secret);
    let (Some(id), Some(secret)) = (client_id, client_secret) else {
        return Err(Failure::new(EXIT_AUTH, "no agent credentials found")
            .hint("set CREDDY_TOKEN to the agent's vend token (or CREDDY_CLIENT_ID and CREDDY_CLIENT_SECRET), or enroll with: creddy enroll --server URL --name NAME --can SCOPE"));
    };
    // Only client credentials: trade them for an access token first.
    let anonymous = Client::new(url.clone(), None, global)?;
    let access = anonymous.client_credentials_token(&id, &secret).await?;
    Client::new(url, Some(Bearer::new(access)), global)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sources(dir: &Path) -> AdminSources {
        AdminSources {
            data_dir: Some(dir.join("data")),
            system_dir: dir.join("system"),
            home: Some(dir.join("home")),
            ..AdminSources::default()
        }
    }

    fn write_token(dir: &Path, text: &str) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join("admin.token"), text).expect("write");
    }

    #[test]
    fn the_token_file_is_found_in_order_and_sent_only_to_loopback() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write_token(&tmp.path().join("home/.local/share/creddy"), "cka_home\n");
        let mut s = sources(tmp.path());
        let (url, _) = s.resolve().expect("found in home");
        assert_eq!(url.as_str(), "http://127.0.0.1:8400/");
        write_token(&tmp.path().join("data"), "cka_data\n");
        let (_, bearer) = s.resolve().expect("found in data dir");
        assert!(format!("{bearer:?}").contains("****"), "redacted");
        for local in [
            "http://localhost:8400",
            "http://127.0.0.2:1",
            "http://[::1]:8400",
        ] {
            s.server_flag = Some(local.into());
            assert!(s.resolve().is_ok(), "{local}");
        }
        s.server_flag = Some("https://creddy.example.com".into());
        let refused = s.resolve().expect_err("remote");
        assert_eq!(refused.exit_code, EXIT_AUTH);
        assert!(
            refused
                .message
                .contains("only sent to a server on this machine")
        );
        s.admin_token = Some("cka_from_env".into());
        assert!(s.resolve().is_ok(), "an explicit token may go anywhere");
    }

    #[test]
    fn a_missing_token_names_the_places_looked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let failure = sources(tmp.path()).resolve().expect_err("none");
        assert_eq!(failure.exit_code, EXIT_AUTH);
        let hint = failure.hint.unwrap_or_default();
        assert!(
            hint.contains("data/admin.token") && hint.contains("system/admin.token"),
            "{hint}"
        );
    }

    #[test]
    fn the_admin_url_comes_from_flag_then_environment() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = sources(tmp.path());
        s.admin_token = Some("cka_x".into());
        s.admin_url = Some("http://127.0.0.1:9000".into());
        assert_eq!(s.resolve().expect("ok").0.port(), Some(9000));
        s.server_flag = Some("http://127.0.0.1:9001".into());
        assert_eq!(s.resolve().expect("ok").0.port(), Some(9001));
    }
}

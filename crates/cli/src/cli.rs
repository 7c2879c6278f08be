//! The command line: every command, flag and environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use creddy_server::LogFormat;

/// creddy: short-lived, scoped credentials for AI agents, and an OIDC identity for them.
#[derive(Debug, Parser)]
#[command(
    name = "creddy",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Start a server:  creddy server\nCreate an agent: creddy agent create ci-agent --can daytona\nAs the agent:    CREDDY_TOKEN=ckr_… creddy status"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Server URL (admin commands: else CREDDY_ADMIN_URL; agent commands: else CREDDY_URL,
    /// then the agent config; default http://127.0.0.1:8400)
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Output format: table (lists) or text (get) by default; json everywhere; env for get
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        hide_possible_values = true
    )]
    pub output: Option<Format>,
    /// Same as -o json
    #[arg(long, global = true)]
    pub json: bool,
    /// Data directory: where the server keeps state and the CLI finds the admin token
    #[arg(long, global = true, env = "CREDDY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Verbose logs on stderr
    #[arg(long, global = true)]
    pub debug: bool,
    /// No colours or symbols styling in output
    #[arg(long, global = true)]
    pub no_color: bool,
    /// A CA certificate (PEM) to trust for the server besides the system roots
    #[arg(long, global = true, env = "CREDDY_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Agent commands: authenticate with the job's OIDC token instead of a creddy secret:
    /// github-actions, file:PATH or env:VAR (audience CREDDY_OIDC_AUDIENCE, default creddy)
    #[arg(long, global = true, env = "CREDDY_OIDC", value_name = "SOURCE")]
    pub oidc: Option<String>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people
    Table,
    /// JSON, the same objects as the HTTP API
    Json,
    /// The secret alone (creddy get)
    Text,
    /// NAME=value lines (creddy get)
    Env,
}

impl Global {
    /// The output format for a command that offers `allowed`, `default` when none is given.
    pub fn format(&self, allowed: &[Format], default: Format) -> crate::failure::Result<Format> {
        let chosen = if self.json {
            Format::Json
        } else {
            self.output.unwrap_or(default)
        };
        if allowed.contains(&chosen) {
            Ok(chosen)
        } else {
            let names: Vec<String> = allowed
                .iter()
                .map(|f| format!("{f:?}").to_lowercase())
                .collect();
            Err(crate::failure::Failure::usage(format!(
                "this command does not offer -o {}; use one of: {}",
                format!("{chosen:?}").to_lowercase(),
                names.join(", ")
            )))
        }
    }

    /// The format of list and detail commands: table or json.
    pub fn list_format(&self) -> crate::failure::Result<Format> {
        self.format(&[Format::Table, Format::Json], Format::Table)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the creddy server in the foreground
    Server(ServerCmd),
    /// Manage agents (admin)
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Show this agent's identity, scopes and credentials
    Status,
    /// Enroll this machine as an agent and wait for an admin or a policy to approve it
    Enroll {
        /// The server, e.g. http://creddy:8400 (or --server)
        #[arg(value_name = "URL")]
        url: Option<String>,
        /// The agent's name (default: this machine's host name)
        #[arg(long)]
        name: Option<String>,
        /// A scope to request, e.g. daytona or daytona:org:myorg (repeatable, at least one)
        #[arg(long = "can", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
        /// Pause between checks while waiting
        #[arg(long, value_name = "DURATION", default_value = "2s")]
        poll_interval: creddy_core::Duration,
        /// Give up after this long (0, the default: wait until the request expires)
        #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_timeout)]
        timeout: WaitLimit,
        /// Replace an existing agent config
        #[arg(long)]
        force: bool,
    },
    /// Ask for more scopes (an admin or a policy approves)
    Request {
        /// A scope to add (repeatable, at least one)
        #[arg(long = "can", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
        /// Wait until the request is decided
        #[arg(long)]
        wait: bool,
    },
    /// Delete this agent on the server (revoking its credentials) and forget its config
    Unenroll,
    /// Print creddy's version (`-o json` for a JSON object)
    Version,
    /// Print a shell completion script: creddy completion bash > /etc/bash_completion.d/creddy
    Completion {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Write the man pages into DIR (one per command; used by the release build)
    #[command(hide = true)]
    Man {
        /// Where to write creddy.1, creddy-server.1, …
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// List enrollments and scope requests waiting for approval (admin)
    Pending,
    /// OIDC signing keys (admin)
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Show the audit trail, newest first (admin); `creddy audit verify` checks it
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        command: Option<AuditCmd>,
        #[command(flatten)]
        filters: AuditFilters,
    },
    /// Approve an enrollment or scope request (admin)
    Approve {
        /// The request's id (enr_…)
        id: String,
        /// Grant these scopes instead of the requested ones (repeatable)
        #[arg(long = "can", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// Reject an enrollment or scope request (admin)
    Reject {
        /// The request's id (enr_…)
        id: String,
        /// Why (shown to the agent)
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Manage backends: configured instances of plugins (admin)
    #[command(subcommand)]
    Backend(BackendCmd),
    /// Get a credential from a backend (prints the secret alone by default)
    Get {
        /// Backend name, e.g. daytona
        backend: String,
        /// Lifetime, e.g. 30m or 1h (default: the backend's default, usually 10m)
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// A scope to request (repeatable); 'workspaces:read' means '<backend>:workspaces:read'
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// git's credential helper for a GitHub backend: short-lived tokens for git clone and
    /// push (git config --global credential.helper '!creddy git-credential')
    #[command(name = "git-credential")]
    GitCredential {
        /// What git asks: get (a token for the repository), store or erase (nothing to do:
        /// tokens expire with their lease)
        #[arg(value_enum)]
        action: GitAction,
        /// The GitHub backend that mints the tokens
        #[arg(long, default_value = "github", value_name = "NAME")]
        backend: String,
        /// Lifetime of each token (default: the backend's default, usually 10m)
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
    },
    /// List this agent's live credentials
    #[command(visible_alias = "list")]
    Ls,
    /// Install and manage plugins (admin)
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Revoke one of this agent's credentials now
    Revoke {
        /// The credential's id (cred_…)
        id: String,
    },
    /// Run a command with credentials in its environment, revoked when it exits
    Run {
        /// A backend, optionally with a scope: daytona or daytona:workspaces:read (repeatable)
        #[arg(long = "with", value_name = "BACKEND[:SCOPE]", required = true)]
        with: Vec<String>,
        /// Lifetime of each credential (default: the backend's default)
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// The command and its arguments
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// All credentials, for admins
    #[command(subcommand)]
    Credentials(CredentialsCmd),
}

/// What git asks a credential helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GitAction {
    /// A credential for the URL git describes on stdin.
    Get,
    /// The credential worked (nothing to keep: the lease ends on its own).
    Store,
    /// The credential was refused (nothing to forget).
    Erase,
}

/// `creddy credentials …`.
#[derive(Debug, Subcommand)]
pub enum CredentialsCmd {
    /// List credentials (default states: pending, active, revoking, irrevocable)
    #[command(visible_alias = "list")]
    Ls {
        /// Only this agent's
        #[arg(long)]
        agent: Option<String>,
        /// Only this backend's
        #[arg(long)]
        backend: Option<String>,
        /// Only these states (comma-separated): pending, active, revoking, revoked, failed,
        /// irrevocable, lapsed, forgotten
        #[arg(long, value_parser = parse_lease_states)]
        state: Option<String>,
    },
    /// Revoke any credential now; --force stops retrying an irrevocable one
    Revoke {
        /// The credential's id (cred_…)
        id: String,
        /// On an irrevocable credential: stop retrying its revocation (it becomes
        /// `forgotten`); check first that it is gone upstream or accept that it is not
        #[arg(long)]
        force: bool,
        /// Why (recorded in the audit trail; with --force)
        #[arg(long, value_name = "TEXT", requires = "force")]
        reason: Option<String>,
    },
}

/// `creddy plugin …`.
#[derive(Debug, Subcommand)]
pub enum PluginCmd {
    /// Install plugins: NAME[@VERSION] from the registry, or a local binary PATH
    #[command(visible_alias = "add")]
    Install {
        /// What to install
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<String>,
        /// Registry URL or directory [default: CREDDY_PLUGIN_REGISTRY, plugins.registry, the bundled registry]
        #[arg(long, env = "CREDDY_PLUGIN_REGISTRY", value_name = "URL|DIR")]
        registry: Option<String>,
        /// Install a binary that has no signature
        #[arg(long)]
        allow_unsigned: bool,
        /// Replace a newer installed version with an older one
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// List plugins: installed ones and what the registry offers
    #[command(visible_alias = "list")]
    Ls {
        /// Only installed plugins; do not read the registry
        #[arg(long)]
        installed: bool,
        /// Registry URL or directory
        #[arg(long, env = "CREDDY_PLUGIN_REGISTRY", value_name = "URL|DIR")]
        registry: Option<String>,
    },
    /// Show an installed plugin: version, signer, SHA-256, scopes, TTL limits, config fields
    Info {
        /// Plugin name
        name: String,
    },
    /// List installed plugins that have a newer release in the registry
    Outdated {
        /// Registry URL or directory
        #[arg(long, env = "CREDDY_PLUGIN_REGISTRY", value_name = "URL|DIR")]
        registry: Option<String>,
    },
    /// Install the latest release of installed plugins (never downgrades)
    Upgrade {
        /// Plugins to upgrade
        names: Vec<String>,
        /// Upgrade every installed plugin
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Registry URL or directory
        #[arg(long, env = "CREDDY_PLUGIN_REGISTRY", value_name = "URL|DIR")]
        registry: Option<String>,
    },
    /// Remove an installed plugin
    #[command(visible_alias = "remove", visible_alias = "delete")]
    Rm {
        /// Plugin name
        name: String,
        /// Remove it even while backends use it (they go to state error)
        #[arg(long)]
        force: bool,
    },
}

/// `creddy backend …`.
#[derive(Debug, Subcommand)]
pub enum BackendCmd {
    /// Configure a backend of an installed plugin; prompts for missing fields on a terminal
    Add {
        /// Plugin type, e.g. daytona
        plugin: String,
        /// Backend name [default: the plugin type]
        #[arg(long)]
        name: Option<String>,
        /// A JSON file with the configuration object (the plugin's field names)
        #[arg(long, value_name = "FILE.json")]
        config: Option<PathBuf>,
        /// Set a field (repeatable)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Set a field to a file's contents (repeatable), e.g. api_key=/run/secrets/key
        #[arg(long = "set-file", value_name = "KEY=PATH")]
        set_file: Vec<String>,
        /// Save without asking the upstream to validate the credentials
        #[arg(long)]
        skip_validate: bool,
    },
    /// List backends
    #[command(visible_alias = "list")]
    Ls,
    /// Show a backend and its configuration (secrets masked), as JSON
    Inspect {
        /// Backend name
        name: String,
    },
    /// Revoke a backend's credentials, then remove it (it drains in the background)
    #[command(visible_alias = "remove", visible_alias = "delete")]
    Rm {
        /// Backend name
        name: String,
        /// Remove now; credentials still open are marked irrevocable
        #[arg(long, conflicts_with = "wait")]
        force: bool,
        /// Wait until every credential is revoked and the backend is gone
        #[arg(long)]
        wait: bool,
    },
}

/// `creddy server`.
#[derive(Debug, Args)]
pub struct ServerCmd {
    /// Listener address [default: 127.0.0.1:8400]
    #[arg(long, env = "CREDDY_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// PostgreSQL URL for shared state (default: SQLite in the data directory)
    #[arg(
        long,
        env = "CREDDY_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Configuration file [default: /etc/creddy/creddy.toml as root, else ~/.config/creddy/creddy.toml]
    #[arg(long, env = "CREDDY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Public base URL and OIDC issuer [default: http://<listen>]
    #[arg(long, env = "CREDDY_ISSUER", value_name = "URL")]
    pub issuer: Option<String>,
    /// Log line format
    #[arg(long, env = "CREDDY_LOG_FORMAT", value_name = "FORMAT", value_parser = parse_log_format)]
    pub log_format: Option<LogFormat>,
    /// Plugin directory [default: /usr/local/lib/creddy/plugins as root, else ~/.local/share/creddy/plugins]
    #[arg(long, env = "CREDDY_PLUGIN_DIR", value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// TLS certificate chain (PEM): with --tls-key, HTTPS on the listener
    #[arg(long, env = "CREDDY_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, env = "CREDDY_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Development mode: state in a temporary directory removed at exit, loopback only, every
    /// bundled plugin installed, and export lines for the admin commands on stdout. Not for
    /// production.
    #[arg(long)]
    pub dev: bool,
    /// With --dev: keep the state in DIR (created if missing, kept at exit)
    #[arg(long, value_name = "DIR", requires = "dev")]
    pub dev_dir: Option<PathBuf>,
}

/// A comma-separated list of lease states, each one creddy knows.
fn parse_lease_states(s: &str) -> Result<String, String> {
    s.split(',')
        .try_for_each(|state| state.parse::<creddy_core::lease::LeaseState>().map(drop))
        .map(|()| s.to_owned())
        .map_err(|unknown| unknown.to_string())
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    s.parse()
}

/// `creddy agent …`.
#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Create an agent and print its credentials (shown once)
    Create {
        /// Agent name: letters, digits, '.', '_', '-'; up to 63 characters
        name: String,
        /// A scope the agent may request (repeatable), e.g. daytona or admin:agents:read
        #[arg(long = "can", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Agent lifetime, e.g. 4h or 7d (default: no expiry)
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// List agents
    #[command(visible_alias = "list")]
    Ls,
    /// Show one agent and its active credentials
    Show {
        /// Agent name
        name: String,
    },
    /// Remove an agent and revoke its credentials
    #[command(visible_alias = "remove", visible_alias = "delete")]
    Rm {
        /// Agent name
        name: String,
    },
}

/// How long to wait at most; `None` for no limit.
#[derive(Debug, Clone, Copy)]
pub struct WaitLimit(pub Option<creddy_core::Duration>);

/// `--timeout`: a duration, or 0 for none.
fn parse_timeout(text: &str) -> Result<WaitLimit, String> {
    if text.trim() == "0" {
        return Ok(WaitLimit(None));
    }
    creddy_core::Duration::parse(text)
        .map(|d| WaitLimit(Some(d)))
        .map_err(|e| e.to_string())
}

/// The filters of `creddy audit`.
#[derive(Debug, Args)]
pub struct AuditFilters {
    /// Only events about this agent (by name)
    #[arg(long)]
    pub agent: Option<String>,
    /// Only events about this backend
    #[arg(long)]
    pub backend: Option<String>,
    /// Only this action, e.g. credential.issued
    #[arg(long)]
    pub action: Option<String>,
    /// Only events about this credential (cred_…)
    #[arg(long)]
    pub lease: Option<String>,
    /// Only events since this time or this long ago (24h)
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// Only events before this time
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// At most this many events (1 to 1000)
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// `creddy audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Recompute the hash chain and keyed hashes; exit 6 at the first broken link
    Verify {
        /// The head hash recorded earlier: its absence shows that newest events were removed
        #[arg(long, value_name = "HASH")]
        expect_head: Option<String>,
    },
}

/// `creddy keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// List the signing keys: current, in grace, retired
    #[command(visible_alias = "list")]
    Ls,
    /// Make a new signing key current; the previous one stays published for the grace period
    Rotate {
        /// The algorithm: EdDSA, or ES256 or RS256 (3072-bit) for relying parties that cannot
        /// verify EdDSA
        #[arg(long, default_value = "EdDSA", value_parser = ["EdDSA", "ES256", "RS256"])]
        alg: String,
        /// How long the previous key stays published (default: oidc.rotation_grace, 24h)
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
    },
}

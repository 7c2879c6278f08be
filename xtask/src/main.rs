//! Release tooling, run as `cargo xtask …` (the alias is in `.cargo/config.toml`):
//!
//! - `cargo xtask dist [--signing-key FILE] [--out DIR]`: the release archive of §17 —
//!   stripped release binaries, the bundled registry signed with the release key (whose public
//!   half is built into `creddy`), man pages and completions generated from the CLI, the
//!   systemd unit, the example configuration, `SHA256SUMS` and its minisign signature. The last
//!   line on stdout is the archive's path.
//! - `cargo xtask registry [--release]`: a signed registry of the first-party plugins in
//!   `target/<profile>/registry`, beside the workspace's `creddy`, which trusts it with no
//!   setting, so a checkout can run `creddy plugin install daytona` and `creddy server --dev`.
//!
//! - `cargo xtask bench [ARGS…]`: the hot-path benchmark (`creddy-bench path`, figures in
//!   `docs/benchmarks.md`): release build, the peer installed from npm with its lockfile,
//!   results in `target/bench/results.json`.
//!
//! The release key is an input: `--signing-key` names an unencrypted minisign secret key
//! (`minisign -G -W`) kept outside the repository. Without it a throwaway key (kept in
//! `target/xtask/` so that rebuilds are incremental) signs an archive for local use only.

mod archive;
mod bench;
mod workspace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// creddy's release tooling.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the release archive: target/dist/creddy-<version>-<os>-<arch>.tar.gz and SHA256SUMS
    Dist {
        /// The release key: an unencrypted minisign secret key (minisign -G -W) [default: a
        /// throwaway key, for local use only]
        #[arg(long, value_name = "FILE")]
        signing_key: Option<PathBuf>,
        /// Where to write the archive and SHA256SUMS [default: target/dist]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Build creddy and the first-party plugins and sign them into target/<profile>/registry
    Registry {
        /// Use the release profile (target/release) instead of the dev profile (target/debug)
        #[arg(long)]
        release: bool,
    },
    /// Run the hot-path benchmark: token endpoint beside oidc-provider, vends, revocation
    /// burst, `creddy get`; on SQLite and PostgreSQL (arguments go to `creddy-bench path`:
    /// --store sqlite|postgres|both, --rounds N, --seconds S, --connections N, --gets N,
    /// --no-peer, --out FILE)
    Bench {
        /// Arguments for creddy-bench path
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dist { signing_key, out } => archive::dist(signing_key, out).map(|path| {
            println!("{}", path.display());
        }),
        Command::Bench { args } => bench::bench(&args),
        Command::Registry { release } => workspace::workspace_registry(release).map(|dir| {
            eprintln!("Next: {}/creddy server --dev", dir.display());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}

//! The commands, one module per area.

mod agent;
mod audit;
mod backend;
mod credentials;
mod dev;
mod enroll;
mod git_credential;
mod keys;
mod plugin;
mod run;
mod server;
mod status;

use crate::cli::{Cli, Command};
use crate::failure::Result;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Server(cmd) => server::run(&cli.global, cmd).await,
        Command::Agent(cmd) => agent::run(&cli.global, cmd).await,
        Command::Status => status::run(&cli.global).await,
        Command::Enroll {
            url,
            name,
            scopes,
            poll_interval,
            timeout,
            force,
        } => {
            let args = enroll::EnrollArgs {
                url,
                name,
                scopes,
                poll_interval,
                timeout: timeout.0,
                force,
            };
            enroll::enroll(&cli.global, args).await
        }
        Command::Request { scopes, wait } => enroll::request(&cli.global, &scopes, wait).await,
        Command::Unenroll => enroll::unenroll(&cli.global).await,
        Command::Version => version(&cli.global),
        Command::Completion { shell } => completion(shell),
        Command::Man { dir } => man_pages(&dir),
        Command::Pending => enroll::pending(&cli.global).await,
        Command::Keys(cmd) => keys::run(&cli.global, cmd).await,
        Command::Audit { command, filters } => audit::run(&cli.global, command, filters).await,
        Command::Approve { id, scopes } => enroll::approve(&cli.global, &id, &scopes).await,
        Command::Reject { id, reason } => enroll::reject(&cli.global, &id, reason).await,
        Command::Backend(cmd) => backend::run(&cli.global, cmd).await,
        Command::Get {
            backend,
            ttl,
            scopes,
        } => credentials::get(&cli.global, &backend, ttl, scopes).await,
        Command::Ls => credentials::list(&cli.global).await,
        Command::GitCredential {
            action,
            backend,
            ttl,
        } => git_credential::run(&cli.global, action, &backend, ttl).await,
        Command::Plugin(cmd) => plugin::run(&cli.global, cmd).await,
        Command::Revoke { id } => credentials::revoke_own(&cli.global, &id).await,
        Command::Credentials(cmd) => credentials::admin(&cli.global, cmd).await,
        Command::Run { with, ttl, command } => run::run(&cli.global, &with, ttl, &command).await,
    }
}

/// `creddy version`: `creddy <version> (<os>/<arch>, commit <hash>)` on stdout, or the same
/// facts as JSON with `-o json`; the platform is named as releases and registries name it
/// (`linux/amd64`), the release key by its id.
fn version(global: &crate::cli::Global) -> crate::failure::Result<()> {
    let (os, arch) = creddy_plugin::registry::current_platform();
    let commit = env!("CREDDY_COMMIT");
    if global.list_format()? == crate::cli::Format::Json {
        let release_key = crate::release::release_key()
            .and_then(|k| creddy_plugin::signing::TrustedKey::parse(k).ok())
            .map(|k| k.id().to_owned());
        return crate::output::print_json(&serde_json::json!({"version": creddy_server::VERSION,
            "os": os, "arch": arch, "commit": commit, "release_key": release_key}));
    }
    println!(
        "creddy {} ({os}/{arch}, commit {commit})",
        creddy_server::VERSION
    );
    Ok(())
}

/// `creddy man DIR` (hidden): one man page per command, generated from the clap definition.
fn man_pages(dir: &std::path::Path) -> crate::failure::Result<()> {
    use clap::CommandFactory;
    let fail = |e: std::io::Error| {
        crate::failure::Failure::new(
            crate::failure::EXIT_OTHER,
            format!("cannot write man pages into {}: {e}", dir.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    clap_mangen::generate_to(crate::cli::Cli::command(), dir).map_err(fail)
}

/// `creddy completion SHELL`: the completion script on stdout (a closed stdout is quiet).
fn completion(shell: clap_complete::Shell) -> crate::failure::Result<()> {
    use clap::CommandFactory;
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(
        shell,
        &mut crate::cli::Cli::command(),
        "creddy",
        &mut script,
    );
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(crate::failure::Failure::new(
            crate::failure::EXIT_OTHER,
            format!("cannot write the completion script: {e}"),
        )),
        _ => Ok(()),
    }
}

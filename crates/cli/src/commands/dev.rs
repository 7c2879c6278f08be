//! `creddy server --dev` (§17): a working server in one command. State lives in a temporary
//! directory removed at exit (or `--dev-dir DIR`, kept), the listener is loopback only, every
//! plugin of the bundled registry is installed (verified against the keys the binary trusts
//! with no setting), and once the server is up the `export` lines for the admin commands are
//! printed on stdout, with a warning on stderr that this is not for production. Everything
//! else is a normal server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use creddy_server::Server;

use crate::cli::ServerCmd;
use crate::failure::{EXIT_OTHER, Failure, Result};

/// The development site: its directory and where the server keeps things in it.
pub struct DevSite {
    /// Removed when dropped, unless the directory was given.
    _temporary: Option<tempfile::TempDir>,
    dir: PathBuf,
    /// The server's data directory.
    pub data_dir: PathBuf,
    /// The plugin directory.
    pub plugin_dir: PathBuf,
}

impl DevSite {
    /// Checks the flags, makes the directory, installs the bundled plugins and points `cmd`
    /// at the site.
    pub async fn prepare(cmd: &mut ServerCmd) -> Result<Self> {
        let listen = cmd
            .listen
            .clone()
            .unwrap_or_else(|| creddy_server::config::DEFAULT_LISTEN.to_owned());
        let loopback = listen
            .parse::<SocketAddr>()
            .map(|a| a.ip().is_loopback())
            .unwrap_or(false);
        if !loopback {
            return Err(Failure::usage(format!(
                "--dev serves on a loopback address only, not '{listen}'"
            ))
            .hint("use --listen 127.0.0.1:PORT, or run a normal server (without --dev) to serve other machines"));
        }
        if cmd.database_url.is_some() {
            return Err(Failure::usage(
                "--dev keeps its state in SQLite in its own directory; drop --database-url (or unset CREDDY_DATABASE_URL)",
            ));
        }
        let (temporary, dir) = match &cmd.dev_dir {
            Some(dir) => {
                create_private_dir(dir)?;
                (None, dir.clone())
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("creddy-dev-")
                    .tempdir()
                    .map_err(|e| {
                        Failure::new(
                            EXIT_OTHER,
                            format!("cannot create a temporary directory: {e}"),
                        )
                    })?;
                let path = temp.path().to_owned();
                (Some(temp), path)
            }
        };
        let site = Self {
            _temporary: temporary,
            data_dir: dir.join("data"),
            plugin_dir: dir.join("plugins"),
            dir,
        };
        if cmd.config.is_none() {
            // No operator's configuration file: the defaults, written down for inspection.
            let config = site.dir.join("creddy.toml");
            if !config.exists() {
                std::fs::write(&config, "# creddy server --dev: defaults\n").map_err(|e| {
                    Failure::new(
                        EXIT_OTHER,
                        format!("cannot write {}: {e}", config.display()),
                    )
                })?;
            }
            cmd.config = Some(config);
        }
        site.install_plugins().await?;
        cmd.listen = Some(listen);
        cmd.plugin_dir = Some(site.plugin_dir.clone());
        Ok(site)
    }

    /// Installs every plugin of the bundled registry (at most once per version).
    async fn install_plugins(&self) -> Result<()> {
        match super::plugin::install_bundled(&self.plugin_dir).await? {
            None => eprintln!(
                "Warning: no bundled registry beside this binary, so no plugin was installed \
                 (a release archive has one; in a checkout run `cargo xtask registry` first)"
            ),
            Some(names) if names.is_empty() => {
                eprintln!("Warning: the bundled registry offers no plugins")
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// The warning and the export lines, once the server is up.
    pub fn announce(&self, server: &Server, tls: bool) -> Result<()> {
        let token = server
            .admin_token()
            .map_err(|e| Failure::new(EXIT_OTHER, e.to_string()))?
            .ok_or_else(|| Failure::new(EXIT_OTHER, "the server wrote no admin token"))?;
        let kept = if self._temporary.is_some() {
            "removed at exit"
        } else {
            "kept"
        };
        eprintln!(
            "WARNING: development mode, not for production: state in {} ({kept}), loopback only, bundled plugins installed.\n\
             Paste these lines into another terminal to use the admin commands:",
            self.dir.display()
        );
        let scheme = if tls { "https" } else { "http" };
        println!("export CREDDY_ADMIN_URL={scheme}://{}", server.addr());
        println!("export CREDDY_ADMIN_TOKEN={}", token.expose());
        println!("export CREDDY_PLUGIN_DIR={}", self.plugin_dir.display());
        Ok(())
    }
}

/// Creates `dir` (and its parents) with mode 0700 for the last component.
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Failure::usage(format!("cannot create --dev-dir {}: {e}", dir.display())))
}

//! `creddy plugin install|ls|info|rm`.
//!
//! Plugins are installed into the plugin directory (one rule with the server:
//! `CREDDY_PLUGIN_DIR` > `plugins.dir` > `/usr/local/lib/creddy/plugins` as root >
//! `~/.local/share/creddy/plugins`). A registry install verifies the index's and the
//! manifest's signatures against the trusted keys, the manifest's name and version, and the
//! binary's size and SHA-256, before anything is written; a mismatch exits 6.

use std::path::PathBuf;

use creddy_core::{Clock, SystemClock};
use creddy_plugin::host::describe;
use creddy_plugin::installed::InstalledPlugin;
use creddy_plugin::registry::{self, Index, Manifest, RegistryError, Release, current_platform};
use creddy_plugin::signing::TrustedKey;
use creddy_plugin::version::Version;
use creddy_server::config::{Environment, plugin_config, trusted_keys};
use serde_json::json;

use crate::cli::{Format, Global, PluginCmd};
use crate::failure::{EXIT_INTEGRITY, EXIT_OTHER, Failure, Result};
use crate::output::{confirm, print_json, print_table};

/// The public registry.
const DEFAULT_REGISTRY: &str = "https://plugins.creddy.dev";

/// Where plugins come from and go.
struct PluginEnv {
    dir: PathBuf,
    registry: String,
    /// Asked for what the bundled registry lacks (the network registry), when the registry
    /// is the bundled one.
    fallback: Option<String>,
    trusted: Vec<TrustedKey>,
    allow_unsigned: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn plugin_env(registry_flag: Option<String>) -> Result<PluginEnv> {
    let environment = Environment::current();
    let file = plugin_config(env("CREDDY_CONFIG").map(PathBuf::from), &environment)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let dir = env("CREDDY_PLUGIN_DIR")
        .map(PathBuf::from)
        .or(file.dir.clone().filter(|d| !d.as_os_str().is_empty()))
        .or_else(|| environment.default_plugin_dir())
        .ok_or_else(|| {
            Failure::usage("no plugin directory: HOME is not set; set CREDDY_PLUGIN_DIR")
        })?;
    let chosen = registry_flag.or(file.registry.clone().filter(|r| !r.is_empty()));
    let (registry, fallback) = match (chosen, crate::release::bundled_registry()) {
        (Some(registry), _) => (registry, None),
        (None, Some(bundled)) => (
            bundled.dir.display().to_string(),
            Some(DEFAULT_REGISTRY.to_owned()),
        ),
        (None, None) => (DEFAULT_REGISTRY.to_owned(), None),
    };
    let keys = trusted_keys(
        &crate::release::builtin_keys(),
        &file,
        env("CREDDY_PLUGIN_TRUSTED_KEYS").as_deref(),
        "",
    )
    .map_err(|e| Failure::usage(e.to_string()))?;
    Ok(PluginEnv {
        dir,
        registry,
        fallback,
        trusted: parse_keys(&keys)?,
        allow_unsigned: file.allow_unsigned,
    })
}

/// Minisign public keys, already checked by `config::trusted_keys` or `build.rs`.
fn parse_keys(keys: &[String]) -> Result<Vec<TrustedKey>> {
    keys.iter()
        .map(|k| TrustedKey::parse(k).map_err(|e| Failure::usage(e.to_string())))
        .collect()
}

/// Runs a plugin subcommand.
pub async fn run(global: &Global, cmd: PluginCmd) -> Result<()> {
    match cmd {
        PluginCmd::Install {
            specs,
            registry,
            allow_unsigned,
            allow_downgrade,
        } => {
            let env = plugin_env(registry)?;
            let mut installed = Vec::new();
            for spec in specs {
                installed.push(install(&env, &spec, allow_unsigned, allow_downgrade).await?);
            }
            ask_server_to_reload(global).await;
            print_installed(global, &installed)
        }
        PluginCmd::Ls {
            installed,
            registry,
        } => list(global, &plugin_env(registry)?, installed).await,
        PluginCmd::Info { name } => info(global, &plugin_env(None)?, &name).await,
        PluginCmd::Outdated { registry } => {
            let env = plugin_env(registry)?;
            let rows = outdated(&env).await?;
            if global.list_format()? == Format::Json {
                let json: Vec<_> = rows
                    .iter()
                    .map(|(n, i, l)| json!({"name": n, "installed": i, "latest": l}))
                    .collect();
                return print_json(&json);
            }
            let table: Vec<Vec<String>> = rows.into_iter().map(|(n, i, l)| vec![n, i, l]).collect();
            print_table(&["NAME", "INSTALLED", "LATEST"], &table);
            Ok(())
        }
        PluginCmd::Upgrade {
            names,
            all,
            registry,
        } => {
            let env = plugin_env(registry)?;
            if names.is_empty() && !all {
                return Err(Failure::usage("name the plugins to upgrade, or pass --all"));
            }
            let candidates = outdated(&env).await?;
            let chosen: Vec<_> = candidates
                .into_iter()
                .filter(|(n, _, _)| all || names.contains(n))
                .collect();
            if chosen.is_empty() {
                confirm("Everything is up to date");
            }
            let any = !chosen.is_empty();
            let mut installed = Vec::new();
            for (name, _, latest) in chosen {
                installed.push(install(&env, &format!("{name}@{latest}"), false, false).await?);
            }
            if any {
                ask_server_to_reload(global).await;
            }
            print_installed(global, &installed)
        }
        PluginCmd::Rm { name, force } => {
            let env = plugin_env(None)?;
            InstalledPlugin::load(&env.dir, &name, true)
                .map_err(|e| Failure::new(EXIT_OTHER, e.to_string()))?;
            let users = refuse_while_in_use(global, &name, force).await?;
            std::fs::remove_dir_all(env.dir.join(&name)).map_err(|e| {
                Failure::new(
                    EXIT_OTHER,
                    format!("cannot remove {}: {e}", env.dir.join(&name).display()),
                )
            })?;
            confirm(&format!("Removed plugin '{name}'"));
            if !users.is_empty() {
                stop_backends_of(global, &name, &users).await;
            }
            Ok(())
        }
    }
}

/// Installs the newest release of every plugin of the bundled registry into `dir`, verified
/// against the keys the binary trusts with no setting (for `creddy server --dev`); a plugin
/// already installed at that version is kept. Returns the plugins offered, or `None` without
/// a bundled registry.
pub async fn install_bundled(dir: &std::path::Path) -> Result<Option<Vec<String>>> {
    let Some(bundled) = crate::release::bundled_registry() else {
        return Ok(None);
    };
    let env = PluginEnv {
        dir: dir.to_owned(),
        registry: bundled.dir.display().to_string(),
        fallback: None,
        trusted: parse_keys(&crate::release::builtin_keys())?,
        allow_unsigned: false,
    };
    let (index, _) = index(&env).await?;
    for (name, entry) in &index.plugins {
        let current = InstalledPlugin::load(dir, name, true).map(|p| p.record.version);
        if current.as_deref() != Ok(entry.latest.as_str()) {
            install(&env, &format!("{name}@{}", entry.latest), false, false).await?;
        }
    }
    Ok(Some(index.plugins.into_keys().collect()))
}

/// With `-o json`, what was installed (the install records) on stdout.
fn print_installed(
    global: &Global,
    installed: &[creddy_plugin::installed::InstallRecord],
) -> Result<()> {
    if global.output == Some(Format::Json) {
        return print_json(&installed);
    }
    Ok(())
}

/// Asks the local server to restart its plugins from the new binaries.
async fn ask_server_to_reload(global: &Global) {
    let reloaded = match crate::credentials::admin_client(global) {
        Ok(client) => client
            .post::<_, serde_json::Value>(&["v1", "admin", "plugins", "reload"], &json!({}))
            .await
            .is_ok(),
        Err(_) => false,
    };
    if reloaded {
        confirm("Server reloaded its plugins");
    } else {
        eprintln!("Server not reachable; the plugin loads at next start");
    }
}

/// `(name, installed, latest)` for installed plugins with a newer release.
async fn outdated(env: &PluginEnv) -> Result<Vec<(String, String, String)>> {
    let (index, _) = index(env).await?;
    Ok(InstalledPlugin::list(&env.dir, true)
        .into_iter()
        .filter_map(|p| p.ok())
        .filter_map(|p| {
            let latest = index.plugins.get(&p.record.name)?.latest.clone();
            (Version::parse(&latest) > Version::parse(&p.record.version)).then_some((
                p.record.name,
                p.record.version,
                latest,
            ))
        })
        .collect())
}

/// After a forced removal, asks the local server to restart the backends of the removed
/// plugin, so that they stop serving at once (they go to `error`).
async fn stop_backends_of(global: &Global, name: &str, users: &[String]) {
    let stopped = match crate::credentials::admin_client(global) {
        Ok(client) => client
            .post::<_, serde_json::Value>(&["v1", "admin", "plugins", name, "reload"], &json!({}))
            .await
            .is_ok(),
        Err(_) => false,
    };
    if stopped {
        confirm(&format!(
            "Server stopped the backends of '{name}': {} (now in error)",
            users.join(", ")
        ));
    } else {
        eprintln!(
            "Warning: the server could not be told; its backends {} keep the old process until it reloads (creddy plugin reload) or restarts",
            users.join(", ")
        );
    }
}

/// Asks the local server which backends use the plugin; refuses unless forced, and returns
/// them. A server that cannot be asked does not block the removal.
async fn refuse_while_in_use(global: &Global, name: &str, force: bool) -> Result<Vec<String>> {
    let Ok(client) = crate::credentials::admin_client(global) else {
        return Ok(Vec::new());
    };
    let backends: Vec<creddy_api::backends::Backend> =
        match client.get(&["v1", "admin", "backends"]).await {
            Ok(b) => b,
            Err(_) => {
                eprintln!("Warning: could not ask the server whether backends use '{name}'");
                return Ok(Vec::new());
            }
        };
    let users: Vec<String> = backends
        .into_iter()
        .filter(|b| b.plugin == name)
        .map(|b| b.name)
        .collect();
    if users.is_empty() || force {
        return Ok(users);
    }
    Err(Failure::new(
        EXIT_OTHER,
        format!("plugin '{name}' is used by backends: {}", users.join(", ")),
    )
    .hint("remove those backends first (creddy backend rm NAME), or pass --force"))
}

fn registry_failure(e: RegistryError) -> Failure {
    let code = match e {
        RegistryError::Signature(_) | RegistryError::Checksum(_) => EXIT_INTEGRITY,
        _ => EXIT_OTHER,
    };
    let hint = match &e {
        RegistryError::Signature(_) => Some(
            "the registry's files are not signed by a key you trust; do not install from it unless you trust its signer",
        ),
        RegistryError::Checksum(_) => {
            Some("the download does not match its signed manifest; do not use this registry")
        }
        _ => None,
    };
    let failure = Failure::new(code, e.to_string());
    match hint {
        Some(h) => failure.hint(h),
        None => failure,
    }
}

/// Reads one file of a registry (directory, `file://` or `http(s)://`), at most `limit` bytes.
async fn fetch(registry: &str, relative: &str, limit: u64) -> Result<Vec<u8>> {
    let location = format!("{}/{relative}", registry.trim_end_matches('/'));
    if let Some(rest) = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
    {
        let _ = rest;
        return download(&location, limit).await;
    }
    let path = PathBuf::from(location.strip_prefix("file://").unwrap_or(&location));
    let size = std::fs::metadata(&path)
        .map_err(|e| Failure::new(EXIT_OTHER, format!("cannot read {}: {e}", path.display())))?
        .len();
    if size > limit {
        return Err(Failure::new(
            EXIT_OTHER,
            format!("{} is larger than {limit} bytes", path.display()),
        ));
    }
    std::fs::read(&path)
        .map_err(|e| Failure::new(EXIT_OTHER, format!("cannot read {}: {e}", path.display())))
}

async fn download(url: &str, limit: u64) -> Result<Vec<u8>> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .connect_timeout(std::time::Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| Failure::new(EXIT_OTHER, e.to_string()))?;
    let mut response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| {
            Failure::new(
                crate::failure::EXIT_CONNECT,
                format!("cannot download {url}: {e}"),
            )
            .hint(format!(
                "creddy looked for the plugin registry at {url}; point it elsewhere with --registry URL|DIR, CREDDY_PLUGIN_REGISTRY or plugins.registry in the server's config, or install a local binary: creddy plugin install ./creddy-NAME --allow-unsigned"
            ))
        })?;
    let progress = progress_bar(response.content_length(), url);
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        Failure::new(
            crate::failure::EXIT_CONNECT,
            format!("downloading {url}: {e}"),
        )
    })? {
        bytes.extend_from_slice(&chunk);
        if let Some(bar) = &progress {
            bar.set_position(bytes.len() as u64);
        }
        if bytes.len() as u64 > limit {
            return Err(Failure::new(
                EXIT_OTHER,
                format!("{url} is larger than {limit} bytes"),
            ));
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(bytes)
}

/// A progress bar on stderr for downloads of a known size over 64 KiB, only on a terminal.
fn progress_bar(length: Option<u64>, url: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    let length = length.filter(|l| *l > 64 * 1024)?;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(length);
    let style =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(format!(
        "Downloading {}",
        url.rsplit('/').next().unwrap_or(url)
    ));
    Some(bar)
}

const SMALL_FILE: u64 = 1024 * 1024;

async fn fetch_text(registry: &str, relative: &str) -> Result<String> {
    String::from_utf8(fetch(registry, relative, SMALL_FILE).await?)
        .map_err(|_| Failure::new(EXIT_OTHER, format!("{relative} is not text")))
}

async fn index(env: &PluginEnv) -> Result<(Index, String)> {
    index_of(env, &env.registry).await
}

async fn index_of(env: &PluginEnv, registry: &str) -> Result<(Index, String)> {
    let bytes = fetch(registry, "index.json", SMALL_FILE).await?;
    let signature = fetch_text(registry, "index.json.minisig").await?;
    Index::verified(&bytes, &signature, &env.trusted).map_err(registry_failure)
}

fn is_path(spec: &str) -> bool {
    spec.contains('/') || spec.starts_with('.') || spec.ends_with(".tar.gz")
}

async fn install(
    env: &PluginEnv,
    spec: &str,
    allow_unsigned: bool,
    allow_downgrade: bool,
) -> Result<creddy_plugin::installed::InstallRecord> {
    let release = if is_path(spec) || is_url(spec) {
        file_release(env, spec, allow_unsigned || env.allow_unsigned).await?
    } else {
        registry_release(env, spec).await?
    };
    let name = release.manifest.name.clone();
    if let Ok(current) = InstalledPlugin::load(&env.dir, &name, true) {
        let older =
            Version::parse(&release.manifest.version) < Version::parse(&current.record.version);
        if older && !allow_downgrade {
            return Err(Failure::usage(format!(
                "{name} {} is installed; {} is older",
                current.record.version, release.manifest.version
            ))
            .hint("pass --allow-downgrade to install the older version anyway"));
        }
    }
    let now = SystemClock.now().to_rfc3339();
    let record = registry::install(&env.dir, &release, &now).map_err(registry_failure)?;
    confirm(&format!("Installed {name} {}", release.manifest.version));
    eprintln!("Next: creddy backend add {name}");
    Ok(record)
}

/// A release from the registry: the bundled one first when it is in use, then the network
/// registry for a plugin or version it lacks. Only "not found" falls through; a bundled
/// registry that fails its checks is an integrity failure.
async fn registry_release(env: &PluginEnv, spec: &str) -> Result<Release> {
    let (name, version) = match spec.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    };
    let registries = std::iter::once(&env.registry).chain(env.fallback.as_ref());
    let mut last = None;
    for registry in registries {
        eprintln!(
            "Resolving {name}@{} from {registry}",
            version.unwrap_or("latest"),
        );
        let (index, _) = index_of(env, registry).await?;
        match index.resolve(name, version) {
            Ok(found) => return release_from(env, registry, name, &found).await,
            Err(e @ RegistryError::NotFound(_)) => last = Some(e),
            Err(e) => return Err(registry_failure(e)),
        }
    }
    Err(registry_failure(last.unwrap_or_else(|| {
        RegistryError::NotFound(format!("no registry offers {name}"))
    })))
}

/// Fetches and verifies one resolved release of `registry`.
async fn release_from(
    env: &PluginEnv,
    registry: &str,
    name: &str,
    version: &str,
) -> Result<Release> {
    let base = format!("{name}/{version}");
    let manifest_bytes = fetch(registry, &format!("{base}/manifest.json"), SMALL_FILE).await?;
    let manifest_signature = fetch_text(registry, &format!("{base}/manifest.json.minisig")).await?;
    let (manifest, signer) = Manifest::verified(
        &manifest_bytes,
        &manifest_signature,
        &env.trusted,
        name,
        version,
        creddy_server::VERSION,
    )
    .map_err(registry_failure)?;
    confirm(&format!("Signature verified (key {signer})"));
    let binary = manifest
        .binary_for_this_platform()
        .map_err(registry_failure)?
        .clone();
    if binary.size > registry::MAX_BINARY_SIZE {
        return Err(Failure::new(
            EXIT_OTHER,
            format!("{} is larger than 256 MiB", binary.filename),
        ));
    }
    let bytes = match &binary.url {
        Some(url) => download(url, binary.size).await?,
        None => {
            fetch(
                registry,
                &format!("{base}/{}", binary.filename),
                binary.size,
            )
            .await?
        }
    };
    binary.check(&bytes).map_err(registry_failure)?;
    let (os, arch) = current_platform();
    confirm(&format!(
        "SHA-256 verified for creddy-{name} {version} ({os}/{arch})"
    ));
    Ok(Release {
        manifest,
        manifest_bytes,
        manifest_signature,
        binary: bytes,
        signer: Some(signer),
        source: registry.to_owned(),
    })
}

fn is_url(spec: &str) -> bool {
    ["https://", "http://", "file://"]
        .iter()
        .any(|p| spec.starts_with(p))
}

fn is_bundle(name: &str) -> bool {
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// A plugin from a path or URL: a `.tar.gz` bundle (signed when it holds `manifest.json` and
/// its `.minisig`) or a bare binary (unsigned).
async fn file_release(env: &PluginEnv, spec: &str, allow_unsigned: bool) -> Result<Release> {
    let bytes = if spec.starts_with("https://") || spec.starts_with("http://") {
        download(spec, registry::MAX_BINARY_SIZE).await?
    } else {
        let path = spec.strip_prefix("file://").unwrap_or(spec);
        let size = std::fs::metadata(path)
            .map_err(|e| Failure::usage(format!("cannot read {path}: {e}")))?
            .len();
        if size > registry::MAX_BINARY_SIZE {
            return Err(Failure::usage(format!("{path} is larger than 256 MiB")));
        }
        std::fs::read(path).map_err(|e| Failure::usage(format!("cannot read {path}: {e}")))?
    };
    let file_name = spec.rsplit('/').next().unwrap_or(spec).to_owned();
    let source = if is_url(spec) {
        spec.to_owned()
    } else {
        std::fs::canonicalize(spec)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| spec.to_owned())
    };
    if is_bundle(&file_name) {
        bundle_release(env, &bytes, source, allow_unsigned)
    } else {
        unsigned_release(&file_name, bytes, source, allow_unsigned)
    }
}

/// The regular files of a `.tar.gz`, by base name, at most 256 MiB in all.
fn unpack(bytes: &[u8]) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
    use std::io::Read;
    let bad =
        |e: std::io::Error| Failure::usage(format!("the bundle is not a readable .tar.gz: {e}"));
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut files = std::collections::BTreeMap::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        total += entry.size();
        if total > registry::MAX_BINARY_SIZE {
            return Err(Failure::usage("the bundle unpacks to more than 256 MiB"));
        }
        let name = entry
            .path()
            .map_err(bad)?
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(bad)?;
        files.insert(name, content);
    }
    Ok(files)
}

/// A bundle: treated like a registry release when signed, like a bare binary otherwise.
fn bundle_release(
    env: &PluginEnv,
    bytes: &[u8],
    source: String,
    allow_unsigned: bool,
) -> Result<Release> {
    let mut files = unpack(bytes)?;
    let (Some(manifest_bytes), Some(signature)) = (
        files.remove("manifest.json"),
        files.remove("manifest.json.minisig"),
    ) else {
        let binaries: Vec<String> = files
            .keys()
            .filter(|n| n.starts_with("creddy-"))
            .cloned()
            .collect();
        let [only] = binaries.as_slice() else {
            return Err(Failure::usage(
                "the bundle holds neither a signed manifest nor exactly one creddy-<name> binary",
            ));
        };
        let binary = files.remove(only).unwrap_or_default();
        return unsigned_release(&only.clone(), binary, source, allow_unsigned);
    };
    let signature = String::from_utf8(signature)
        .map_err(|_| Failure::new(EXIT_INTEGRITY, "the bundle's signature is not text"))?;
    let claimed: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| Failure::usage(format!("the bundle's manifest.json is unreadable: {e}")))?;
    let (manifest, signer) = Manifest::verified(
        &manifest_bytes,
        &signature,
        &env.trusted,
        &claimed.name,
        &claimed.version,
        creddy_server::VERSION,
    )
    .map_err(registry_failure)?;
    confirm(&format!("Signature verified (key {signer})"));
    let entry = manifest
        .binary_for_this_platform()
        .map_err(registry_failure)?
        .clone();
    let binary = files.remove(&entry.filename).ok_or_else(|| {
        Failure::usage(format!(
            "the bundle lacks {}, which its manifest lists",
            entry.filename
        ))
    })?;
    entry.check(&binary).map_err(registry_failure)?;
    let (os, arch) = current_platform();
    confirm(&format!(
        "SHA-256 verified for creddy-{} {} ({os}/{arch})",
        manifest.name, manifest.version
    ));
    Ok(Release {
        manifest,
        manifest_bytes,
        manifest_signature: signature,
        binary,
        signer: Some(signer),
        source,
    })
}

/// A bare binary: unsigned, so only with `--allow-unsigned`.
fn unsigned_release(
    file: &str,
    binary: Vec<u8>,
    source: String,
    allow_unsigned: bool,
) -> Result<Release> {
    let name = file
        .strip_prefix("creddy-")
        .filter(|n| creddy_plugin::installed::is_plugin_name(n))
        .ok_or_else(|| {
            Failure::usage(format!(
                "'{file}' is not a plugin binary name; plugin binaries are named creddy-<name>"
            ))
        })?;
    if !allow_unsigned {
        return Err(Failure::new(EXIT_INTEGRITY, format!("{source} is a bare binary without a signature"))
            .hint("install from a signed registry or bundle, or pass --allow-unsigned if you trust this file"));
    }
    eprintln!(
        "Warning: installing an unsigned plugin; the server runs it only with plugins.allow_unsigned = true"
    );
    Ok(Release {
        manifest: Manifest {
            schema: 1,
            name: name.to_owned(),
            version: "0.0.0-local".to_owned(),
            description: String::new(),
            protocol_version: 1,
            min_creddy_version: "0.0.0".to_owned(),
            released_at: String::new(),
            binaries: vec![],
        },
        manifest_bytes: vec![],
        manifest_signature: String::new(),
        binary,
        signer: None,
        source,
    })
}

async fn list(global: &Global, env: &PluginEnv, installed_only: bool) -> Result<()> {
    let format = global.list_format()?;
    let installed: Vec<InstalledPlugin> = InstalledPlugin::list(&env.dir, true)
        .into_iter()
        .filter_map(|p| p.ok())
        .collect();
    let index = if installed_only {
        None
    } else {
        index(env).await.ok().map(|(i, _)| i)
    };
    let mut names: Vec<String> = installed.iter().map(|p| p.record.name.clone()).collect();
    if let Some(index) = &index {
        names.extend(index.plugins.keys().cloned());
    }
    names.sort();
    names.dedup();
    let rows: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            let here = installed.iter().find(|p| &p.record.name == name);
            let offered = index.as_ref().and_then(|i| i.plugins.get(name));
            json!({
                "name": name,
                "installed": here.map(|p| p.record.version.clone()),
                "latest": offered.map(|o| o.latest.clone()),
                "description": offered.map(|o| o.description.clone()).unwrap_or_default(),
                "signed": here.map(|p| p.record.signed),
            })
        })
        .collect();
    if format == Format::Json {
        return print_json(&rows);
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                text(&r["name"]),
                text(&r["installed"]),
                text(&r["latest"]),
                text(&r["description"]),
            ]
        })
        .collect();
    print_table(&["NAME", "INSTALLED", "LATEST", "DESCRIPTION"], &table);
    Ok(())
}

async fn info(global: &Global, env: &PluginEnv, name: &str) -> Result<()> {
    let format = global.list_format()?;
    let plugin = InstalledPlugin::load(&env.dir, name, true)
        .map_err(|e| Failure::new(EXIT_OTHER, e.to_string()))?;
    creddy_plugin::host::verify_installation(&plugin, &env.trusted).map_err(|e| {
        Failure::new(EXIT_INTEGRITY, e.to_string())
            .hint(format!("reinstall it: creddy plugin install {name}"))
    })?;
    let description = describe(&plugin, &env.trusted, creddy_server::VERSION)
        .await
        .map_err(|e| {
            Failure::new(
                EXIT_OTHER,
                format!("cannot ask the plugin about itself: {e}"),
            )
        })?;
    let value = json!({
        "name": name,
        "version": plugin.record.version,
        "description": description.info.description,
        "protocol_version": 1,
        "min_creddy_version": description.info.min_creddy_version,
        "signed": plugin.record.signed,
        "signer": plugin.record.signer,
        "sha256": plugin.record.sha256,
        "directory": env.dir.join(name),
        "source": plugin.record.source,
        "scopes": description.scopes,
        "constraints": description.constraints,
        "config_fields": description.config_schema.fields,
    });
    if format == Format::Json {
        return print_json(&value);
    }
    let line = |k: &str, v: &serde_json::Value| {
        println!(
            "{k:<19}{}",
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        )
    };
    for key in [
        "name",
        "version",
        "description",
        "protocol_version",
        "min_creddy_version",
        "signer",
        "sha256",
        "directory",
        "source",
    ] {
        line(&format!("{key}:"), &value[key]);
    }
    // Durations as people write them (`1m`, `10m`, `1d`); `-` where the plugin sets none.
    let ttl = |key: &str| {
        value["constraints"][key]
            .as_u64()
            .and_then(creddy_core::Duration::from_seconds)
            .map_or_else(|| "-".to_owned(), |d| d.to_string())
    };
    println!(
        "ttl:               min {}, default {}, max {}",
        ttl("min_ttl"),
        ttl("default_ttl"),
        ttl("max_ttl")
    );
    println!("scopes:");
    for scope in &description.scopes {
        println!("  {:<28}{}", scope.pattern, scope.description);
    }
    println!("config fields:");
    for field in &description.config_schema.fields {
        let required = if field.required {
            "required"
        } else {
            "optional"
        };
        let default = field
            .default
            .as_deref()
            .map(|d| format!(" (default: {d})"))
            .unwrap_or_default();
        println!(
            "  {:<24}{:?} {required}  {}{default}",
            field.name, field.field_type, field.description
        );
    }
    Ok(())
}

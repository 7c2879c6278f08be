//! `cargo xtask dist`: the release archive of §17, laid out under one top directory
//! `creddy-<version>/`, and `SHA256SUMS` with its minisign signature.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use creddy_plugin::publish::{Signer, SigningKey};
use creddy_plugin::registry::current_platform;
use sha2::{Digest, Sha256};

use crate::workspace::{PLUGINS, Workspace, plugin_info, read_key, timestamp, write_registry};

/// Where each generated completion script goes, by shell.
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "share/bash-completion/completions/creddy"),
    ("zsh", "share/zsh/site-functions/_creddy"),
    ("fish", "share/fish/vendor_completions.d/creddy.fish"),
];

/// Files copied from the repository: `(source, place in the archive)`.
const COPIED: &[(&str, &str)] = &[
    ("packaging/creddy.service", "share/creddy/creddy.service"),
    ("creddy.example.toml", "share/creddy/creddy.example.toml"),
    ("README.md", "README.md"),
    ("LICENSE", "LICENSE"),
];

/// Builds the archive; returns its path.
pub fn dist(signing_key: Option<PathBuf>, out: Option<PathBuf>) -> Result<PathBuf, String> {
    let workspace = Workspace::locate();
    let key = release_key(&workspace, signing_key)?;
    let profile = workspace.build(true, Some(&key.public_key()))?;
    let signer = Signer {
        key: &key,
        timestamp: timestamp(),
    };
    let version = env!("CARGO_PKG_VERSION");
    let top = format!("creddy-{version}");
    let stage_root = workspace.target.join("xtask").join("stage");
    if stage_root.exists() {
        std::fs::remove_dir_all(&stage_root).map_err(|e| io(&stage_root, e))?;
    }
    let stage = stage_root.join(&top);
    lay_out(&workspace, &profile, &stage, &signer)?;

    let out = out.unwrap_or_else(|| workspace.target.join("dist"));
    std::fs::create_dir_all(&out).map_err(|e| io(&out, e))?;
    let (os, arch) = current_platform();
    let name = format!("creddy-{version}-{os}-{arch}.tar.gz");
    let archive = out.join(&name);
    write_tar_gz(&stage_root, &top, &archive, signer.timestamp)?;
    write_sums(&out, &archive, &name, &signer)?;
    let archive = archive.canonicalize().map_err(|e| io(&archive, e))?;
    eprintln!(
        "\u{2713} {} (release key {}), SHA256SUMS and SHA256SUMS.minisig in {}",
        name,
        key.key_id(),
        out.display()
    );
    Ok(archive)
}

/// The release key, or a throwaway key kept in `target/xtask/` with a loud warning.
fn release_key(workspace: &Workspace, given: Option<PathBuf>) -> Result<SigningKey, String> {
    if let Some(path) = given {
        return read_key(&path);
    }
    let (key, path) = workspace.kept_key("throwaway-release")?;
    eprintln!(
        "WARNING: no --signing-key: this archive is signed with a throwaway key ({}, key {}).\n\
         WARNING: it is for local use only; its creddy trusts no published release key.",
        path.display(),
        key.key_id()
    );
    Ok(key)
}

fn io(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

/// Everything under `creddy-<version>/`.
fn lay_out(
    workspace: &Workspace,
    profile: &Path,
    stage: &Path,
    signer: &Signer<'_>,
) -> Result<(), String> {
    let creddy = stage.join("bin/creddy");
    strip(&profile.join("creddy"), &creddy)?;
    let stripped = workspace.target.join("xtask").join("stripped-plugins");
    let plugins = stage_plugins(profile, &stripped)?;
    write_registry(&stage.join("lib/creddy/registry"), signer, &plugins)?;

    let man = stage.join("share/man/man1");
    run(Command::new(&creddy).arg("man").arg(&man))?;
    for (shell, place) in COMPLETIONS {
        let script = run(Command::new(&creddy).args(["completion", shell]))?;
        write_file(&stage.join(place), &script, 0o644)?;
    }
    for (source, place) in COPIED {
        let bytes = std::fs::read(workspace.root.join(source))
            .map_err(|e| io(&workspace.root.join(source), e))?;
        write_file(&stage.join(place), &bytes, 0o644)?;
    }
    Ok(())
}

/// Stripped copies of the first-party plugins in `dir`, each with what it says of itself.
fn stage_plugins(
    profile: &Path,
    dir: &Path,
) -> Result<Vec<(PathBuf, crate::workspace::PluginInfo)>, String> {
    PLUGINS
        .iter()
        .map(|name| {
            let binary = dir.join(format!("creddy-{name}"));
            strip(&profile.join(format!("creddy-{name}")), &binary)?;
            plugin_info(&binary).map(|info| (binary, info))
        })
        .collect()
}

/// Writes a stripped copy of `source` to `dest` (0755).
fn strip(source: &Path, dest: &Path) -> Result<(), String> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    let status = Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(dest)
        .arg(source)
        .status()
        .map_err(|e| format!("cannot run strip (from binutils; install it): {e}"))?;
    if !status.success() {
        return Err(format!("strip {} failed ({status})", source.display()));
    }
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755)).map_err(|e| io(dest, e))
}

/// Runs a command; returns its stdout, or its stderr as the error.
fn run(command: &mut Command) -> Result<Vec<u8>, String> {
    let output = command
        .env_remove("NO_COLOR")
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output.stdout)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io(path, e))
}

/// Every path under `dir`, sorted, directories before their contents.
fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| io(dir, e)))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        found.push(entry.clone());
        if entry.is_dir() {
            walk(&entry, found)?;
        }
    }
    Ok(())
}

/// `archive` holding `root/top` and everything under it: sorted entries, owner root, one
/// modification time, modes 0755 (directories and executables) or 0644.
fn write_tar_gz(root: &Path, top: &str, archive: &Path, mtime: u64) -> Result<(), String> {
    let file = std::fs::File::create(archive).map_err(|e| io(archive, e))?;
    let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    let mut tar = tar::Builder::new(gzip);
    let mut paths = vec![root.join(top)];
    walk(&root.join(top), &mut paths)?;
    for path in paths {
        let relative = path.strip_prefix(root).map_err(|e| e.to_string())?;
        let metadata = std::fs::metadata(&path).map_err(|e| io(&path, e))?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        let executable = metadata.permissions().mode() & 0o111 != 0;
        if metadata.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, relative, std::io::empty())
        } else {
            header.set_mode(if executable { 0o755 } else { 0o644 });
            header.set_size(metadata.len());
            let content = std::fs::File::open(&path).map_err(|e| io(&path, e))?;
            tar.append_data(&mut header, relative, content)
        }
        .map_err(|e| io(archive, e))?;
    }
    tar.into_inner()
        .and_then(flate2::write::GzEncoder::finish)
        .map_err(|e| io(archive, e))?;
    Ok(())
}

/// `SHA256SUMS` (as `sha256sum` writes it) and `SHA256SUMS.minisig`, plus the public key as
/// `minisign.pub` for convenience (verify against the key published with the release).
fn write_sums(out: &Path, archive: &Path, name: &str, signer: &Signer<'_>) -> Result<(), String> {
    let bytes = std::fs::read(archive).map_err(|e| io(archive, e))?;
    let sums = format!("{}  {name}\n", hex::encode(Sha256::digest(&bytes)));
    let path = out.join("SHA256SUMS");
    signer
        .write_signed(&path, sums.as_bytes())
        .map_err(|e| io(&path, e))?;
    write_file(
        &out.join("minisign.pub"),
        signer.key.public_key_file().as_bytes(),
        0o644,
    )
}

//! Builds a development plugin registry from binaries of the workspace, signed with a
//! development key, so a local build installs plugins exactly as users do:
//!
//! ```text
//! creddy-dev-registry --out DIR [--key FILE] NAME=BINARY[@VERSION]...
//! ```
//!
//! The key is created (mode 0600) when FILE does not exist; it defaults to
//! `DIR/../dev-signing.key`, outside the registry. The public key is written to
//! `DIR/dev-key.pub` and printed as a `CREDDY_PLUGIN_TRUSTED_KEYS=…` line; trust it only on
//! development machines.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use creddy_testkit::registry::{Publish, publish};
use creddy_testkit::signing::DevKey;

const USAGE: &str = "usage: creddy-dev-registry --out DIR [--key FILE] NAME=BINARY[@VERSION]...";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("Error: {message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn load_or_create_key(path: &PathBuf) -> Result<DevKey, String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return DevKey::from_text(&text)
            .ok_or_else(|| format!("{} is not a development key", path.display()));
    }
    let key = DevKey::generate();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{}\n", key.to_text()).as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(key)
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut out, mut key_path, mut releases) = (None, None, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().map(PathBuf::from),
            "--key" => key_path = args.next().map(PathBuf::from),
            spec => {
                let (name, rest) = spec
                    .split_once('=')
                    .ok_or_else(|| format!("'{spec}' is not NAME=BINARY"))?;
                let (binary, version) = rest
                    .rsplit_once('@')
                    .unwrap_or((rest, env!("CARGO_PKG_VERSION")));
                releases.push((name.to_owned(), PathBuf::from(binary), version.to_owned()));
            }
        }
    }
    let out = out.ok_or("--out DIR is required")?;
    if releases.is_empty() {
        return Err("name at least one plugin".into());
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let key_path = key_path.unwrap_or_else(|| out.parent().unwrap_or(&out).join("dev-signing.key"));
    let key = load_or_create_key(&key_path)?;
    let publishes: Vec<Publish<'_>> = releases
        .iter()
        .map(|(name, binary, version)| Publish {
            name,
            version,
            description: "development build",
            binary,
        })
        .collect();
    publish(&out, &key, &publishes).map_err(|e| e.to_string())?;
    std::fs::write(out.join("dev-key.pub"), format!("{}\n", key.public_key()))
        .map_err(|e| e.to_string())?;
    println!("CREDDY_PLUGIN_TRUSTED_KEYS={}", key.public_key());
    Ok(())
}

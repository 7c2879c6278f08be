//! `cargo xtask bench [ARGS…]`: the hot-path benchmark in one command. It builds the release
//! binaries (creddy, the Daytona plugin and stand-in, the test plugin, the load generator and
//! the benchmark), installs the peer (`oidc-provider` from npm, exactly as `bench/peer`'s
//! lockfile pins it) when Node.js is there, and runs `creddy-bench path ARGS…` from the
//! repository root; the figures go to stdout (Markdown) and `target/bench/results.json`.

use std::path::Path;
use std::process::Command;

use crate::workspace::Workspace;

/// Builds, installs the peer and runs the benchmark with `args`.
pub fn bench(args: &[String]) -> Result<(), String> {
    let workspace = Workspace::locate();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("==> cargo build --release (creddy, plugins, stand-in, load generator)");
    let built = Command::new(cargo)
        .current_dir(&workspace.root)
        .args(["build", "--release", "--locked"])
        .args([
            "-p",
            "creddy",
            "-p",
            "creddy-daytona",
            "-p",
            "creddy-daytona-standin",
        ])
        .args(["-p", "creddy-testkit", "--bins"])
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !built.success() {
        return Err("the release build failed".into());
    }
    let mut args = args.to_vec();
    if !args.iter().any(|a| a == "--no-peer") {
        install_peer(&workspace.root.join("bench/peer"))?;
    }
    if !args.iter().any(|a| a == "--out") {
        let out = workspace.target.join("bench/results.json");
        args.extend(["--out".to_owned(), out.display().to_string()]);
    }
    let status = Command::new(workspace.target.join("release/creddy-bench"))
        .current_dir(&workspace.root)
        .arg("path")
        .args(&args)
        .status()
        .map_err(|e| format!("creddy-bench: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("the benchmark failed (its output says why)".into())
    }
}

/// `npm ci` in the peer's directory, unless its lockfile is already installed.
fn install_peer(dir: &Path) -> Result<(), String> {
    let installed = dir.join("node_modules/.package-lock.json");
    let fresh = |lock: &Path| lock.metadata().and_then(|m| m.modified()).ok();
    if fresh(&installed).is_some() && fresh(&installed) >= fresh(&dir.join("package-lock.json")) {
        return Ok(());
    }
    eprintln!("==> npm ci (the peer: oidc-provider, pinned by bench/peer/package-lock.json)");
    let status = Command::new("npm")
        .current_dir(dir)
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .status()
        .map_err(|e| format!("npm: {e}; install Node.js 20 or later, or run with --no-peer"))?;
    if status.success() {
        Ok(())
    } else {
        Err("npm ci failed in bench/peer".into())
    }
}

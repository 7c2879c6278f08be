//! Build inputs of the binary (§17):
//!
//! - the commit, for `creddy version`: `CREDDY_COMMIT` when the release build sets it, else
//!   `git rev-parse --short=12 HEAD`, else `unknown` (a source tarball without `.git`);
//! - the release public key, `CREDDY_RELEASE_PUBKEY` (a minisign public key, `RW…`): the key
//!   the bundled registry is signed with, trusted with no setting. Checked here, so a release
//!   cannot be built with a key the binary would not read. Unset in ordinary builds.

fn main() {
    release_key();
    println!("cargo:rerun-if-env-changed=CREDDY_COMMIT");
    for path in [
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/packed-refs",
    ] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("CREDDY_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            std::process::Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CREDDY_COMMIT={commit}");
}

/// Refuses a `CREDDY_RELEASE_PUBKEY` that is not a minisign Ed25519 public key line.
fn release_key() {
    println!("cargo:rerun-if-env-changed=CREDDY_RELEASE_PUBKEY");
    let Ok(key) = std::env::var("CREDDY_RELEASE_PUBKEY") else {
        return;
    };
    let key = key.trim();
    let base64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    // 42 bytes ("Ed", key id, Ed25519 key) are 56 base64 characters without padding.
    let valid =
        key.is_empty() || (key.len() == 56 && key.starts_with("RW") && key.chars().all(base64));
    assert!(
        valid,
        "CREDDY_RELEASE_PUBKEY must be a minisign public key line (RW… 56 characters), not {key:?}"
    );
}

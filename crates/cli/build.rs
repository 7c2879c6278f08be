//! Records the commit creddy is built from, for `creddy version` (§17): `CREDDY_COMMIT` when
//! the release build sets it, else `git rev-parse --short=12 HEAD`, else `unknown` (a source
//! tarball without `.git`).

fn main() {
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

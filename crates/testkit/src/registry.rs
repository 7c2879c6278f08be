//! Signed plugin installation for tests: a release published to a registry with a test key
//! and installed from it through the same verification steps as `creddy plugin install`.

use std::path::Path;

use creddy_plugin::publish::{Publish, Signer, SigningKey, publish};

/// The timestamp test registries are signed at (2026-01-01).
pub const TEST_TIMESTAMP: u64 = 1_767_225_600;

/// Publishes releases to the registry in `out`, signed by `key` at [`TEST_TIMESTAMP`].
pub fn publish_signed(out: &Path, key: &SigningKey, releases: &[Publish<'_>]) {
    let signer = Signer {
        key,
        timestamp: TEST_TIMESTAMP,
    };
    publish(out, &signer, releases)
        .unwrap_or_else(|e| panic!("publishing to {}: {e}", out.display()));
}

/// Publishes `binary` as plugin `name` 0.1.0 to a registry in `registry_dir` and installs it
/// from there into `plugin_dir` through the same verification steps as `creddy plugin
/// install`. Returns the installed binary's path and SHA-256.
pub fn install_signed(
    binary: &Path,
    registry_dir: &Path,
    plugin_dir: &Path,
    name: &str,
    key: &SigningKey,
) -> crate::plugins::Installed {
    use creddy_plugin::registry::{Index, Manifest, Release, install};
    use creddy_plugin::signing::TrustedKey;
    let release = Publish {
        name,
        version: "0.1.0",
        description: "signed test plugin",
        binary,
        min_creddy_version: "0.1.0",
    };
    publish_signed(registry_dir, key, &[release]);
    let trusted = [TrustedKey::parse(&key.public_key()).expect("the text parses")];
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let text = |p: &Path| String::from_utf8(read(p)).unwrap_or_default();
    let (index, _) = Index::verified(
        &read(&registry_dir.join("index.json")),
        &text(&registry_dir.join("index.json.minisig")),
        &trusted,
    )
    .expect("the signature verifies");
    let version = index.resolve(name, None).expect("the registry offers it");
    let dir = registry_dir.join(name).join(&version);
    let manifest_bytes = read(&dir.join("manifest.json"));
    let manifest_signature = text(&dir.join("manifest.json.minisig"));
    let (manifest, signer) = Manifest::verified(
        &manifest_bytes,
        &manifest_signature,
        &trusted,
        name,
        &version,
        "0.1.0",
    )
    .expect("the signature verifies");
    let entry = manifest
        .binary_for_this_platform()
        .expect("the registry has a binary for this platform")
        .clone();
    let bytes = read(&dir.join(&entry.filename));
    entry.check(&bytes).expect("the check passes");
    let record = install(
        plugin_dir,
        &Release {
            manifest,
            manifest_bytes,
            manifest_signature,
            binary: bytes,
            signer: Some(signer),
            source: registry_dir.display().to_string(),
        },
        "2026-01-01T00:00:00Z",
    )
    .expect("the plugin installs");
    crate::plugins::Installed {
        binary: plugin_dir.join(name).join(format!("creddy-{name}")),
        sha256: record.sha256,
    }
}

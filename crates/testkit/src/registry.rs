//! A development registry built from the workspace's plugin binaries and signed with a
//! development key, laid out exactly like a published one.

use std::collections::BTreeMap;
use std::path::Path;

use creddy_plugin::registry::{Binary, Index, IndexEntry, Manifest, current_platform};
use sha2::{Digest, Sha256};

use crate::signing::DevKey;

/// One plugin release to publish.
#[derive(Debug, Clone)]
pub struct Publish<'a> {
    /// The plugin's name.
    pub name: &'a str,
    /// The release's version.
    pub version: &'a str,
    /// One line for people.
    pub description: &'a str,
    /// The executable to publish.
    pub binary: &'a Path,
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes)
}

fn comment(file: &str) -> String {
    format!("timestamp:1767225600\tfile:{file}")
}

/// Writes (or adds to) a registry in `out`, signing the index and every manifest.
pub fn publish(out: &Path, key: &DevKey, releases: &[Publish<'_>]) -> std::io::Result<()> {
    let (os, arch) = current_platform();
    let index_path = out.join("index.json");
    let mut index = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Index>(&b).ok())
        .unwrap_or(Index {
            schema: 1,
            plugins: BTreeMap::new(),
        });
    for release in releases {
        let bytes = std::fs::read(release.binary)?;
        let filename = format!("creddy-{}-{os}-{arch}", release.name);
        let dir = out.join(release.name).join(release.version);
        write(&dir.join(&filename), &bytes)?;
        let manifest = Manifest {
            schema: 1,
            name: release.name.to_owned(),
            version: release.version.to_owned(),
            description: release.description.to_owned(),
            protocol_version: 1,
            min_creddy_version: "0.1.0".to_owned(),
            released_at: "2026-01-01T00:00:00Z".to_owned(),
            binaries: vec![Binary {
                os: os.to_owned(),
                arch: arch.to_owned(),
                filename,
                size: bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(&bytes)),
                url: None,
            }],
        };
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
        write(&dir.join("manifest.json"), &manifest_bytes)?;
        write(
            &dir.join("manifest.json.minisig"),
            key.sign(&manifest_bytes, &comment("manifest.json"))
                .as_bytes(),
        )?;
        let entry = index
            .plugins
            .entry(release.name.to_owned())
            .or_insert_with(|| IndexEntry {
                description: release.description.to_owned(),
                latest: release.version.to_owned(),
                versions: vec![],
            });
        if !entry.versions.iter().any(|v| v == release.version) {
            entry.versions.push(release.version.to_owned());
        }
        let newest = entry
            .versions
            .iter()
            .filter_map(|v| creddy_plugin::version::Version::parse(v).map(|p| (p, v.clone())))
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, v)| v);
        entry.latest = newest.unwrap_or_else(|| release.version.to_owned());
    }
    let index_bytes = serde_json::to_vec_pretty(&index).map_err(std::io::Error::other)?;
    write(&index_path, &index_bytes)?;
    write(
        &out.join("index.json.minisig"),
        key.sign(&index_bytes, &comment("index.json")).as_bytes(),
    )
}

/// Publishes `binary` as plugin `name` 0.1.0 to a registry in `registry_dir` and installs it
/// from there into `plugin_dir` through the same verification steps as `creddy plugin
/// install`. Returns the installed binary's path and SHA-256.
pub fn install_signed(
    binary: &Path,
    registry_dir: &Path,
    plugin_dir: &Path,
    name: &str,
    key: &DevKey,
) -> crate::plugins::Installed {
    use creddy_plugin::registry::{Index, Release, install};
    use creddy_plugin::signing::TrustedKey;
    let release = Publish {
        name,
        version: "0.1.0",
        description: "signed test plugin",
        binary,
    };
    publish(registry_dir, key, &[release]).unwrap_or_else(|e| panic!("{e}"));
    let trusted = [TrustedKey::parse(&key.public_key()).unwrap_or_else(|e| panic!("{e}"))];
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let text = |p: &Path| String::from_utf8(read(p)).unwrap_or_default();
    let (index, _) = Index::verified(
        &read(&registry_dir.join("index.json")),
        &text(&registry_dir.join("index.json.minisig")),
        &trusted,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let version = index.resolve(name, None).unwrap_or_else(|e| panic!("{e}"));
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
    .unwrap_or_else(|e| panic!("{e}"));
    let entry = manifest
        .binary_for_this_platform()
        .unwrap_or_else(|e| panic!("{e}"))
        .clone();
    let bytes = read(&dir.join(&entry.filename));
    entry.check(&bytes).unwrap_or_else(|e| panic!("{e}"));
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
    .unwrap_or_else(|e| panic!("{e}"));
    crate::plugins::Installed {
        binary: plugin_dir.join(name).join(format!("creddy-{name}")),
        sha256: record.sha256,
    }
}

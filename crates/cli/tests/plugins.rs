//! Installing plugins from a signed registry with the real binary, as users do.

use creddy_plugin::publish::{Publish, SigningKey};
use creddy_testkit::plugins::test_plugin_binary;
use creddy_testkit::registry::publish_signed;
use serde_json::Value;
use tempfile::TempDir;

use crate::kit::{Run, creddy};

struct Setup {
    home: TempDir,
    key: SigningKey,
}

impl Setup {
    fn new() -> Self {
        let setup = Self {
            home: TempDir::new().expect("TempDir is created"),
            key: SigningKey::generate(),
        };
        std::fs::write(setup.home.path().join("empty.toml"), "").expect("the file is written");
        setup.publish("0.1.0");
        setup
    }

    fn registry(&self) -> std::path::PathBuf {
        self.home.path().join("registry")
    }

    fn plugins(&self) -> std::path::PathBuf {
        self.home.path().join("plugins")
    }

    fn publish(&self, version: &str) {
        let binary = test_plugin_binary();
        let release = Publish {
            name: "sample",
            version,
            description: "A sample plugin",
            binary: &binary,
            min_creddy_version: "0.1.0",
        };
        publish_signed(&self.registry(), &self.key, &[release]);
    }

    fn run(&self, args: &[&str], trusted: &str) -> Run {
        let registry = self.registry().display().to_string();
        let plugins = self.plugins().display().to_string();
        let config = self.home.path().join("empty.toml").display().to_string();
        creddy(
            self.home.path(),
            args,
            &[
                ("CREDDY_PLUGIN_REGISTRY", &registry),
                ("CREDDY_PLUGIN_DIR", &plugins),
                ("CREDDY_PLUGIN_TRUSTED_KEYS", trusted),
                ("CREDDY_CONFIG", &config),
            ],
        )
    }

    fn trusted(&self) -> String {
        self.key.public_key()
    }
}

#[test]
fn a_plugin_installs_from_a_signed_registry_and_describes_itself() {
    let setup = Setup::new();
    let installed = setup.run(&["plugin", "install", "sample"], &setup.trusted());
    installed.ok();
    for line in [
        "Resolving sample@latest from",
        "Signature verified (key ",
        "SHA-256 verified for creddy-sample 0.1.0",
        "Installed sample 0.1.0",
        "Next: creddy backend add sample",
        "Server not reachable; the plugin loads at next start",
    ] {
        assert!(
            installed.stderr.contains(line),
            "{line}:\n{}",
            installed.stderr
        );
    }
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(setup.plugins().join("sample/install.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(record["signed"], true);
    assert_eq!(record["version"], "0.1.0");
    let info = setup.run(
        &["plugin", "info", "sample", "-o", "json"],
        &setup.trusted(),
    );
    let info: Value = serde_json::from_str(info.ok()).unwrap_or_default();
    assert_eq!(info["constraints"]["max_ttl"], 86_400);
    assert_eq!(info["config_fields"][0]["name"], "api_key");
    let shown = setup.run(&["plugin", "info", "sample"], &setup.trusted());
    let text = shown.ok();
    assert!(
        text.contains("ttl:               min 1m, default 10m, max 1d"),
        "readable TTLs: {text}"
    );
    assert!(text.contains("(default: hello)"), "field defaults: {text}");
    let listed = setup.run(&["plugin", "ls"], &setup.trusted());
    assert!(
        listed.ok().contains("sample") && listed.stdout.contains("0.1.0"),
        "{}",
        listed.stdout
    );

    setup.publish("0.2.0");
    setup
        .run(&["plugin", "install", "sample"], &setup.trusted())
        .ok();
    setup
        .run(&["plugin", "install", "sample@v0.1.0"], &setup.trusted())
        .fails(2, "--allow-downgrade");
    setup
        .run(
            &["plugin", "install", "sample@0.1.0", "--allow-downgrade"],
            &setup.trusted(),
        )
        .ok();
    setup
        .run(&["plugin", "install", "sample@9.9.9"], &setup.trusted())
        .fails(1, "no version 9.9.9");
    setup
        .run(&["plugin", "rm", "sample"], &setup.trusted())
        .ok();
    assert!(!setup.plugins().join("sample").exists());
}

#[test]
fn bad_signatures_and_checksums_refuse_the_install_with_exit_6() {
    let setup = Setup::new();
    let stranger = SigningKey::generate().public_key();
    setup
        .run(&["plugin", "install", "sample"], &stranger)
        .fails(6, "not trusted");
    setup
        .run(&["plugin", "install", "sample"], "")
        .fails(6, "not trusted");

    let binary = setup
        .registry()
        .join("sample/0.1.0")
        .read_dir()
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("creddy-sample"))
        .map(|e| e.path())
        .unwrap_or_default();
    let mut bytes = std::fs::read(&binary).unwrap_or_default();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&binary, &bytes).expect("the file is written");
    setup
        .run(&["plugin", "install", "sample"], &setup.trusted())
        .fails(6, "SHA-256 mismatch");

    let manifest = setup.registry().join("sample/0.1.0/manifest.json");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_default()
        .replace("A sample plugin", "An evil plugin");
    std::fs::write(&manifest, text).expect("the file is written");
    setup
        .run(&["plugin", "install", "sample"], &setup.trusted())
        .fails(6, "does not match its content");
    assert!(
        !setup.plugins().join("sample").exists(),
        "nothing was installed"
    );
}

#[test]
fn a_local_binary_needs_allow_unsigned() {
    let setup = Setup::new();
    let dir = setup.home.path().join("build");
    std::fs::create_dir_all(&dir).expect("the directory is made");
    let binary = dir.join("creddy-local");
    std::fs::copy(test_plugin_binary(), &binary).expect("the file is copied");
    let path = binary.display().to_string();
    setup
        .run(&["plugin", "install", &path], "")
        .fails(6, "without a signature");
    let installed = setup.run(
        &["plugin", "install", &path, "--allow-unsigned", "-o", "json"],
        "",
    );
    let records: Value = serde_json::from_str(installed.ok()).unwrap_or_default();
    assert_eq!(
        records[0]["name"], "local",
        "-o json lists what was installed"
    );
    assert_eq!(records[0]["signed"], false);
    assert!(
        installed.stderr.contains("unsigned"),
        "{}",
        installed.stderr
    );
    assert!(
        installed.stderr.contains("\u{2713} Installed local"),
        "{}",
        installed.stderr
    );
    let plain = crate::kit::creddy(
        setup.home.path(),
        &["plugin", "install", &path, "--allow-unsigned"],
        &[
            ("CREDDY_PLUGIN_DIR", &setup.plugins().display().to_string()),
            ("NO_COLOR", "1"),
        ],
    );
    plain.ok();
    assert!(
        plain.stderr.contains("OK: Installed local"),
        "NO_COLOR: {}",
        plain.stderr
    );
    let listed = setup.run(&["plugin", "ls", "--installed", "-o", "json"], "");
    let listed: Value = serde_json::from_str(listed.ok()).unwrap_or_default();
    assert_eq!(listed[0]["name"], "local");
    assert_eq!(listed[0]["signed"], false);
    std::fs::write(
        setup.plugins().join("local/creddy-local"),
        b"#!/bin/sh\necho tampered\n",
    )
    .expect("the file is written");
    setup
        .run(&["plugin", "info", "local"], "")
        .fails(6, "does not match the installed");
}

/// Serves a directory over HTTP on loopback with Python's standard library server.
struct StaticServer {
    child: std::process::Child,
    url: String,
}

impl StaticServer {
    fn start(dir: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a loopback port is free");
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 is needed to serve a registry over HTTP: {e}"));
        // Wait until it accepts connections (bounded; no fixed sleep).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the HTTP server did not start"
            );
            std::thread::yield_now();
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_http_registry_serves_installs_and_upgrades() {
    let setup = Setup::new();
    let http = StaticServer::start(&setup.registry());
    let install = setup.run(
        &["plugin", "install", "sample", "--registry", &http.url],
        &setup.trusted(),
    );
    install.ok();
    assert!(
        install.stderr.contains(&format!("from {}", http.url)),
        "{}",
        install.stderr
    );
    let current = setup.run(
        &["plugin", "outdated", "--registry", &http.url],
        &setup.trusted(),
    );
    assert_eq!(
        current.ok().lines().count(),
        1,
        "only the header: {}",
        current.stdout
    );
    setup.publish("0.3.0");
    let outdated = setup.run(
        &["plugin", "outdated", "--registry", &http.url, "-o", "json"],
        &setup.trusted(),
    );
    let outdated: Value = serde_json::from_str(outdated.ok()).unwrap_or_default();
    assert_eq!(outdated[0]["installed"], "0.1.0");
    assert_eq!(outdated[0]["latest"], "0.3.0");
    setup
        .run(
            &["plugin", "upgrade", "--registry", &http.url],
            &setup.trusted(),
        )
        .fails(2, "--all");
    setup
        .run(
            &["plugin", "upgrade", "--all", "--registry", &http.url],
            &setup.trusted(),
        )
        .ok();
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(setup.plugins().join("sample/install.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(record["version"], "0.3.0");
    let again = setup.run(
        &["plugin", "upgrade", "sample", "--registry", &http.url],
        &setup.trusted(),
    );
    assert!(again.stderr.contains("up to date"), "{}", again.stderr);
}

/// Packs files into a `.tar.gz`.
fn bundle(path: &std::path::Path, files: &[(&str, Vec<u8>)]) {
    let file = std::fs::File::create(path).expect("the file is created");
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::fast(),
    ));
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        builder
            .append_data(&mut header, name, content.as_slice())
            .expect("the entry is appended");
    }
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("the archive is written");
}

#[test]
fn bundles_install_signed_and_urls_serve_bare_binaries() {
    let setup = Setup::new();
    let release = setup.registry().join("sample/0.1.0");
    let binary_name = std::fs::read_dir(&release)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("creddy-sample"))
        .unwrap_or_default();
    let read = |name: &str| std::fs::read(release.join(name)).unwrap_or_default();
    let files = [
        ("manifest.json", read("manifest.json")),
        ("manifest.json.minisig", read("manifest.json.minisig")),
        (binary_name.as_str(), read(&binary_name)),
    ];
    let signed = setup.home.path().join("sample.tar.gz");
    bundle(&signed, &files);
    let installed = setup.run(
        &["plugin", "install", &signed.display().to_string()],
        &setup.trusted(),
    );
    installed.ok();
    assert!(
        installed.stderr.contains("Signature verified"),
        "{}",
        installed.stderr
    );
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(setup.plugins().join("sample/install.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(record["signed"], true);

    let mut tampered = files.clone();
    tampered[2].1.push(0);
    let bad = setup.home.path().join("tampered.tgz");
    bundle(&bad, &tampered);
    setup
        .run(
            &["plugin", "install", &bad.display().to_string()],
            &setup.trusted(),
        )
        .fails(6, "the download is incomplete or altered");
    setup
        .run(
            &["plugin", "install", &signed.display().to_string()],
            &SigningKey::generate().public_key(),
        )
        .fails(6, "not trusted");

    let served = setup.home.path().join("served");
    std::fs::create_dir_all(&served).expect("the directory is made");
    std::fs::copy(test_plugin_binary(), served.join("creddy-fetched")).expect("the file is copied");
    let http = StaticServer::start(&served);
    let url = format!("{}/creddy-fetched", http.url);
    setup
        .run(&["plugin", "install", &url], "")
        .fails(6, "without a signature");
    setup
        .run(&["plugin", "install", &url, "--allow-unsigned"], "")
        .ok();
    assert!(setup.plugins().join("fetched/creddy-fetched").is_file());
}

#[test]
fn an_unreachable_registry_says_where_creddy_looked_and_how_to_point_elsewhere() {
    let home = TempDir::new().expect("TempDir is created");
    let plugins = home.path().join("plugins").display().to_string();
    let run = creddy(
        home.path(),
        &["plugin", "install", "daytona"],
        &[
            ("CREDDY_PLUGIN_REGISTRY", "http://127.0.0.1:1/registry"),
            ("CREDDY_PLUGIN_DIR", &plugins),
        ],
    );
    run.fails(3, "cannot download http://127.0.0.1:1/registry");
    assert!(
        run.stderr
            .contains("creddy looked for the plugin registry at")
            && run.stderr.contains("CREDDY_PLUGIN_REGISTRY")
            && run.stderr.contains("--registry"),
        "{}",
        run.stderr
    );
}

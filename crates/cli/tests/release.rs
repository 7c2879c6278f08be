//! The release archive (§17) as a user gets it: built by `cargo xtask dist` (once per test
//! run; `.ci/run` builds it before the tests and names it in `CREDDY_DIST_ARCHIVE`), checked
//! against `SHA256SUMS` and its signature, unpacked into an empty prefix, and run with an
//! empty `HOME`, no trust settings and no network route: the seed's flow against the Daytona
//! stand-in, tampered registries refused, `creddy server --dev`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use creddy_plugin::publish::SigningKey;
use creddy_plugin::signing::{TrustedKey, verify};
use creddy_testkit::plugins::workspace_binary;
use creddy_testkit::server::{ServerProcess, StandinProcess};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::kit::{ClockFile, Run, eventually, exported, http, run_binary};

const MASTER: &str = "dtn_release000000000000000000000000000000000000000000000000000master";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The build's `target` directory (the test binary is in `target/<profile>/deps`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()))
}

/// The archive: `CREDDY_DIST_ARCHIVE`, else built once for this test run (the tests of one
/// run share a parent process) by `cargo xtask dist`.
fn archive() -> PathBuf {
    if let Some(path) = std::env::var_os("CREDDY_DIST_ARCHIVE").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let dir = target_dir().join("xtask");
    std::fs::create_dir_all(&dir).expect("the directory is made");
    let lock = std::fs::File::create(dir.join("test-dist.lock")).expect("the file is created");
    lock.lock().expect("the lock is taken");
    let stamp = dir.join(format!("test-dist.{}", std::os::unix::process::parent_id()));
    if let Ok(path) = std::fs::read_to_string(&stamp) {
        return PathBuf::from(path.trim());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(&root)
        .args(["xtask", "dist", "--out"])
        .arg(dir.join("test-dist"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cargo xtask dist: {e}"));
    assert!(output.status.success(), "cargo xtask dist failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout.lines().last().unwrap_or_default().trim().to_owned();
    // Stamps of earlier runs name an archive this build has replaced.
    for old in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = old.file_name().to_string_lossy().into_owned();
        if name.starts_with("test-dist.") && name != "test-dist.lock" {
            let _ = std::fs::remove_file(old.path());
        }
    }
    std::fs::write(&stamp, &path).expect("the file is written");
    PathBuf::from(path)
}

/// The archive unpacked into an empty prefix with the system's `tar`, as a user would.
struct Prefix {
    dir: TempDir,
}

impl Prefix {
    fn unpack(archive: &Path) -> Self {
        let dir = TempDir::new().expect("TempDir is created");
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(archive)
            .arg("-C")
            .arg(dir.path())
            .arg("--strip-components=1")
            .status()
            .unwrap_or_else(|e| panic!("tar: {e}"));
        assert!(status.success(), "unpacking {}", archive.display());
        Self { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn creddy(&self) -> PathBuf {
        self.path("bin/creddy")
    }

    fn registry(&self) -> PathBuf {
        self.path("lib/creddy/registry")
    }

    /// Runs the archive's `creddy` with `HOME` at `home`, only `PATH` inherited, plus `envs`.
    fn run(&self, home: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
        run_binary(&self.creddy(), home, args, envs)
    }

    /// The release key id the archive's `creddy` carries.
    fn release_key_id(&self) -> String {
        let home = TempDir::new().expect("TempDir is created");
        let version: Value =
            serde_json::from_str(self.run(home.path(), &["version", "-o", "json"], &[]).ok())
                .expect("the text is JSON of the expected shape");
        version["release_key"]
            .as_str()
            .unwrap_or_else(|| panic!("the archive's creddy carries no release key: {version}"))
            .to_owned()
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text(path: &Path) -> String {
    String::from_utf8(read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_archive_is_signed_complete_and_stripped() {
    let archive = archive();
    let out = archive.parent().unwrap_or_else(|| panic!("no parent"));
    let name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(name, format!("creddy-{VERSION}-linux-amd64.tar.gz"));

    // SHA256SUMS names the archive with its hash, signed by the key built into the binary.
    let sums = text(&out.join("SHA256SUMS"));
    let digest = creddy_plugin::host::verify::sha256_file(&archive).expect("the file is hashed");
    assert_eq!(sums, format!("{digest}  {name}\n"));
    let public = TrustedKey::parse(&text(&out.join("minisign.pub"))).expect("the text parses");
    let signer = verify(
        std::slice::from_ref(&public),
        sums.as_bytes(),
        &text(&out.join("SHA256SUMS.minisig")),
        "SHA256SUMS",
    )
    .expect("the signature verifies");
    let prefix = Prefix::unpack(&archive);
    assert_eq!(
        signer,
        prefix.release_key_id(),
        "signed by the key creddy trusts"
    );
    let altered = sums.replace(&digest[..8], "00000000");
    assert!(
        verify(
            &[public],
            altered.as_bytes(),
            &text(&out.join("SHA256SUMS.minisig")),
            "SHA256SUMS"
        )
        .is_err(),
        "an altered SHA256SUMS fails its signature"
    );
    if Command::new("minisign").arg("-v").output().is_ok() {
        let checked = Command::new("minisign")
            .args(["-V", "-m"])
            .arg(out.join("SHA256SUMS"))
            .arg("-p")
            .arg(out.join("minisign.pub"))
            .output()
            .expect("the command runs");
        assert!(checked.status.success(), "minisign -V: {checked:?}");
    }

    // One top directory, owned by root in the archive.
    let listing = Command::new("tar")
        .args(["-tzvf"])
        .arg(&archive)
        .output()
        .expect("the command runs");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for line in listing.lines() {
        assert!(line.contains(" 0/0 "), "owned by root: {line}");
        assert!(
            line.contains(&format!(" creddy-{VERSION}")),
            "under creddy-{VERSION}/: {line}"
        );
    }

    // The §17 layout.
    for file in [
        "bin/creddy",
        "lib/creddy/registry/index.json",
        "lib/creddy/registry/index.json.minisig",
        "share/man/man1/creddy.1",
        "share/man/man1/creddy-server.1",
        "share/man/man1/creddy-plugin-install.1",
        "share/bash-completion/completions/creddy",
        "share/zsh/site-functions/_creddy",
        "share/fish/vendor_completions.d/creddy.fish",
        "share/creddy/creddy.service",
        "share/creddy/creddy.example.toml",
        "README.md",
        "LICENSE",
    ] {
        assert!(prefix.path(file).is_file(), "{file} is missing");
    }
    assert!(text(&prefix.path("share/man/man1/creddy-server.1")).contains("\\-\\-tls\\-cert"));
    assert!(text(&prefix.path("share/bash-completion/completions/creddy")).contains("enroll"));
    assert!(text(&prefix.path("share/zsh/site-functions/_creddy")).starts_with("#compdef creddy"));
    assert!(
        text(&prefix.path("share/fish/vendor_completions.d/creddy.fish"))
            .contains("complete -c creddy")
    );
    let index: Value = serde_json::from_slice(&read(&prefix.registry().join("index.json")))
        .expect("the bytes are JSON of the expected shape");
    for plugin in ["daytona", "github"] {
        assert_eq!(
            index["plugins"][plugin]["latest"], VERSION,
            "first-party plugins of the same version: {plugin}"
        );
    }

    // Stripped: no symbol table in the binaries.
    let plugin = prefix
        .registry()
        .join(format!("daytona/{VERSION}/creddy-daytona-linux-amd64"));
    for binary in [prefix.creddy(), plugin] {
        let bytes = read(&binary);
        assert!(
            !bytes.windows(7).any(|w| w == b".symtab"),
            "{} is not stripped",
            binary.display()
        );
    }

    systemd_unit_verifies(&prefix);
}

/// `systemd-analyze verify` accepts the unit with no warning, its binary at the unpacked
/// prefix and its man page found there (skipped where systemd-analyze is not installed).
fn systemd_unit_verifies(prefix: &Prefix) {
    let unit = text(&prefix.path("share/creddy/creddy.service"));
    for hardening in [
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/creddy",
        "User=creddy",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(hardening), "the unit lacks {hardening}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: the unit's syntax is not checked here");
        return;
    }
    let dir = TempDir::new().expect("TempDir is created");
    let placed = dir.path().join("creddy.service");
    let creddy = prefix.creddy().display().to_string();
    std::fs::write(&placed, unit.replace("/usr/local/bin/creddy", &creddy))
        .expect("the file is written");
    let checked = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&placed)
        .env("MANPATH", prefix.path("share/man"))
        .output()
        .expect("the command runs");
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(
        checked.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

/// Runs the `offline` test of this binary in a new network namespace whose only interface is
/// the loopback.
#[test]
fn the_seed_flow_runs_from_the_archive_with_no_network() {
    let archive = archive();
    // Built before leaving the network: the stand-in stands for Daytona's cloud.
    workspace_binary("creddy-daytona-standin", "daytona-standin");
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let mut command = Command::new("unshare");
    if !rustix::process::geteuid().is_root() {
        command.arg("--map-root-user");
    }
    let output = command
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(&exe)
        .args([
            "release::offline",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CREDDY_DIST_ARCHIVE", &archive)
        .env(OFFLINE, "1")
        .output()
        .unwrap_or_else(|e| panic!("unshare: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the offline flow failed:\n{stdout}\n{stderr}"
    );
}

/// Set for the run inside the network namespace.
const OFFLINE: &str = "CREDDY_TEST_OFFLINE";

#[test]
#[ignore = "runs inside a network namespace, from the_seed_flow_runs_from_the_archive_with_no_network"]
fn offline() {
    assert!(
        std::env::var_os(OFFLINE).is_some(),
        "run through the_seed_flow_runs_from_the_archive_with_no_network"
    );
    // This process's network namespace (sysfs would show the mounter's).
    let interfaces: Vec<String> = std::fs::read_to_string("/proc/self/net/dev")
        .expect("the file is readable")
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_owned()))
        .collect();
    assert_eq!(interfaces, ["lo"], "no network route but the loopback");

    let prefix = Prefix::unpack(&archive());
    let release_key = prefix.release_key_id();
    let work = TempDir::new().expect("TempDir is created");
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).expect("the directory is made");
    let standin = StandinProcess::start(
        &workspace_binary("creddy-daytona-standin", "daytona-standin"),
        &work.path().join("daytona.json"),
    );
    http()
        .post(format!("{}/_standin/seed", standin.control_url()))
        .json(&creddy_daytona_standin::master_seed(MASTER, "org-1"))
        .send()
        .expect("the server answers");

    // Locations only (as root the defaults are system paths): no registry, no trusted key.
    let path = |p: &str| work.path().join(p).display().to_string();
    let (data, plugins, config) = (path("data"), path("plugins"), path("creddy.toml"));
    std::fs::write(&config, "").expect("the file is written");
    let clock = ClockFile::new(work.path().join("clock"));
    let clock_path = clock.env_value();
    let home_text = home.display().to_string();
    let site = [
        ("HOME", home_text.as_str()),
        ("CREDDY_DATA_DIR", data.as_str()),
        ("CREDDY_PLUGIN_DIR", plugins.as_str()),
        ("CREDDY_CONFIG", config.as_str()),
    ];
    let mut server_env = site.to_vec();
    server_env.push(("CREDDY_TEST_CLOCK_FILE", clock_path.as_str()));
    let server =
        ServerProcess::start(&prefix.creddy(), &[], &server_env).expect("the server starts");
    let url = server.url();
    let mut admin_env = site.to_vec();
    admin_env.push(("CREDDY_ADMIN_URL", url.as_str()));

    // Step 2: the plugin from the bundled registry, verified against the built-in key.
    let installed = prefix.run(&home, &["plugin", "install", "daytona"], &admin_env);
    installed.ok();
    let registry = prefix.registry().display().to_string();
    for line in [
        format!("Resolving daytona@latest from {registry}"),
        format!("Signature verified (key {release_key})"),
        format!("Installed daytona {VERSION}"),
        "Server reloaded its plugins".to_owned(),
    ] {
        assert!(
            installed.stderr.contains(&line),
            "{line:?} in:\n{}",
            installed.stderr
        );
    }

    // Step 3: the backend; then an agent and a key that works upstream.
    let key_file = work.path().join("daytona.key");
    std::fs::write(&key_file, MASTER).expect("the file is written");
    let (key_arg, base_arg) = (
        format!("api_key={}", key_file.display()),
        format!("base_url={}", standin.api_url),
    );
    prefix
        .run(
            &home,
            &[
                "backend",
                "add",
                "daytona",
                "--set-file",
                &key_arg,
                "--set",
                &base_arg,
                "--set",
                "organization_id=org-1",
            ],
            &admin_env,
        )
        .ok();
    let token = exported(
        prefix
            .run(
                &home,
                &["agent", "create", "ci-agent", "--can", "daytona"],
                &admin_env,
            )
            .ok(),
        "CREDDY_TOKEN",
    );
    let agent_env = [
        ("HOME", home_text.as_str()),
        ("CREDDY_URL", url.as_str()),
        ("CREDDY_TOKEN", token.as_str()),
    ];
    let dtn = prefix
        .run(&home, &["get", "daytona", "--ttl", "1m"], &agent_env)
        .ok()
        .trim()
        .to_owned();
    assert!(dtn.starts_with("dtn_"), "{dtn}");
    let sandbox = http()
        .post(format!("{}/sandbox", standin.api_url))
        .bearer_auth(&dtn)
        .json(&json!({"name": "offline-box"}))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(sandbox, 200, "the minted key works upstream");

    // Step 8: expiry deletes the key upstream.
    clock.advance(120);
    eventually("the expired key deleted upstream", || {
        let state: Value = http()
            .get(format!("{}/_standin/state", standin.control_url()))
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null);
        state["deleted_keys"].as_array().is_some_and(|keys| {
            keys.iter().any(|k| {
                k.as_str()
                    .is_some_and(|k| k.starts_with("creddy-ci-agent-"))
            })
        })
    });
    drop(server);

    tampered_registries_are_refused(&archive(), &home);
    unreachable_registry_says_where_it_looked(&archive(), &home);
}

/// Alters an unpacked archive.
type Tamper = dyn Fn(&Prefix);

/// A plugin-directory writer or a mirror that alters the archive's registry gets exit 6 and
/// nothing installed: a changed binary, a changed manifest, and a registry re-signed with
/// another key that also planted that key beside it.
fn tampered_registries_are_refused(archive: &Path, home: &Path) {
    let tamperings: [(&str, &Tamper, &str); 3] = [
        (
            "binary",
            &|p| {
                let binary = p
                    .registry()
                    .join(format!("daytona/{VERSION}/creddy-daytona-linux-amd64"));
                let mut bytes = read(&binary);
                let last = bytes.len() - 1;
                bytes[last] ^= 0x01;
                std::fs::write(&binary, bytes).expect("the file is written");
            },
            "SHA-256",
        ),
        (
            "manifest",
            &|p| {
                let manifest = p
                    .registry()
                    .join(format!("daytona/{VERSION}/manifest.json"));
                let changed = text(&manifest).replace("Ephemeral", "Trustworthy");
                std::fs::write(&manifest, changed).expect("the file is written");
            },
            "does not match its content",
        ),
        (
            "re-signed registry",
            &|p| {
                let attacker = SigningKey::generate();
                for file in [
                    "index.json".to_owned(),
                    format!("daytona/{VERSION}/manifest.json"),
                ] {
                    let path = p.registry().join(&file);
                    let signature = attacker.sign_file(&read(&path), "x", 1);
                    std::fs::write(path.with_extension("json.minisig"), signature)
                        .expect("the file is written");
                }
                std::fs::write(
                    p.registry()
                        .join(creddy_plugin::registry::WORKSPACE_KEY_FILE),
                    attacker.public_key_file(),
                )
                .expect("the file is written");
            },
            "not trusted",
        ),
    ];
    for (what, tamper, message) in tamperings {
        let prefix = Prefix::unpack(archive);
        tamper(&prefix);
        let plugins = TempDir::new().expect("TempDir is created");
        let plugin_dir = plugins.path().display().to_string();
        let refused = prefix.run(
            home,
            &["plugin", "install", "daytona"],
            &[
                ("CREDDY_PLUGIN_DIR", &plugin_dir),
                ("CREDDY_CONFIG", "/dev/null"),
            ],
        );
        assert_eq!(refused.code, Some(6), "tampered {what}: {refused:?}");
        assert!(
            refused.stderr.contains(message),
            "tampered {what}: {}",
            refused.stderr
        );
        assert!(
            !plugins.path().join("daytona").exists(),
            "tampered {what}: nothing installed"
        );
    }
}

/// Without a bundled registry and with no network, the error names where creddy looked and
/// how to point it elsewhere.
fn unreachable_registry_says_where_it_looked(archive: &Path, home: &Path) {
    let prefix = Prefix::unpack(archive);
    std::fs::remove_dir_all(prefix.registry()).expect("the directory is removed");
    let plugins = TempDir::new().expect("TempDir is created");
    let plugin_dir = plugins.path().display().to_string();
    let failed = prefix.run(
        home,
        &["plugin", "install", "daytona"],
        &[
            ("CREDDY_PLUGIN_DIR", &plugin_dir),
            ("CREDDY_CONFIG", "/dev/null"),
        ],
    );
    failed.fails(3, "https://plugins.creddy.dev/index.json");
    assert!(failed.stderr.contains("--registry"), "{}", failed.stderr);
}

/// `creddy server --dev` from the archive: bundled plugins installed, export lines that work,
/// loopback only, the temporary state removed at exit and `--dev-dir` kept.
#[test]
fn server_dev_works_in_one_command() {
    let prefix = Prefix::unpack(&archive());
    let home = TempDir::new().expect("TempDir is created");
    prefix
        .run(
            home.path(),
            &["server", "--dev", "--listen", "0.0.0.0:8400"],
            &[],
        )
        .fails(2, "loopback");

    let (mut dev, exports) = start_dev(&prefix, home.path(), &[]);
    let (url, token, plugins) = (
        exported(&exports, "CREDDY_ADMIN_URL"),
        exported(&exports, "CREDDY_ADMIN_TOKEN"),
        exported(&exports, "CREDDY_PLUGIN_DIR"),
    );
    assert!(token.starts_with("cka_"), "{token}");
    eventually("the development warning", || {
        dev.log().contains("not for production")
    });
    let admin_env = [
        ("CREDDY_ADMIN_URL", url.as_str()),
        ("CREDDY_ADMIN_TOKEN", token.as_str()),
        ("CREDDY_PLUGIN_DIR", plugins.as_str()),
    ];
    let installed = prefix.run(
        home.path(),
        &["plugin", "ls", "--installed", "-o", "json"],
        &admin_env,
    );
    let installed: Value =
        serde_json::from_str(installed.ok()).expect("the text is JSON of the expected shape");
    assert_eq!(installed[0]["name"], "daytona", "{installed}");
    let agent = prefix.run(
        home.path(),
        &["agent", "create", "dev-agent", "--can", "daytona"],
        &admin_env,
    );
    agent.ok();
    let state_dir = Path::new(&plugins)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    assert!(state_dir.join("data/creddy.db").is_file());
    assert_eq!(dev.signal_and_wait("TERM"), Some(0));
    assert!(
        !state_dir.exists(),
        "the temporary state is removed at exit"
    );

    // --dev-dir keeps the state: the same admin token on the next start.
    let kept = home.path().join("dev");
    let kept_text = kept.display().to_string();
    let (mut first, exports) = start_dev(&prefix, home.path(), &["--dev-dir", &kept_text]);
    let token = exported(&exports, "CREDDY_ADMIN_TOKEN");
    let first_url = exported(&exports, "CREDDY_ADMIN_URL");
    prefix
        .run(
            home.path(),
            &["agent", "create", "kept-agent", "--can", "daytona"],
            &[
                ("CREDDY_ADMIN_URL", &first_url),
                ("CREDDY_ADMIN_TOKEN", &token),
            ],
        )
        .ok();
    first.signal_and_wait("TERM");
    assert!(kept.join("data/creddy.db").is_file(), "--dev-dir is kept");
    let (second, exports) = start_dev(&prefix, home.path(), &["--dev-dir", &kept_text]);
    assert_eq!(exported(&exports, "CREDDY_ADMIN_TOKEN"), token);
    let listed = prefix.run(
        home.path(),
        &["agent", "ls", "-o", "json"],
        &[
            ("CREDDY_ADMIN_URL", &exported(&exports, "CREDDY_ADMIN_URL")),
            ("CREDDY_ADMIN_TOKEN", &token),
        ],
    );
    assert!(listed.ok().contains("\"kept-agent\""), "{}", listed.stdout);
    drop(second);
}

/// `creddy server --dev ARGS…` from the archive on a free loopback port, once its export
/// lines are out; returns the server and those lines.
fn start_dev(prefix: &Prefix, home: &Path, args: &[&str]) -> (ServerProcess, String) {
    let mut all = vec!["--dev"];
    all.extend_from_slice(args);
    let home = home.display().to_string();
    let server = ServerProcess::start(&prefix.creddy(), &all, &[("HOME", &home)])
        .expect("the server starts");
    eventually("the export lines", || server.stdout().lines().count() >= 3);
    let exports = server.stdout();
    (server, exports)
}

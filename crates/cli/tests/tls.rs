//! Native TLS with the real binaries (§17): a CA and certificates made by the test, the CLI
//! trusting the CA through --ca-cert, refusals for a wrong CA and for plain HTTP, and a
//! certificate replaced on SIGHUP without a restart.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use creddy_testkit::store::Dialect;

use crate::kit::{Site, creddy, eventually};

/// A certificate authority made for one test.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("CertificateParams is created");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("a key is generated");
        Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key)
                .expect("the CA certificate is made"),
        }
    }

    /// Writes the CA certificate to `path`.
    fn write(&self, path: &Path) {
        std::fs::write(path, self.issuer.pem()).expect("the file is written");
    }

    /// Writes a server certificate for 127.0.0.1 and localhost, and its key (0600).
    fn issue(&self, cert: &Path, key: &Path) {
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("CertificateParams is created");
        let pair = rcgen::KeyPair::generate().expect("a key is generated");
        let signed = params
            .signed_by(&pair, &self.issuer)
            .expect("the certificate is signed");
        std::fs::write(cert, signed.pem()).expect("the file is written");
        std::fs::write(key, pair.serialize_pem()).expect("the file is written");
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600))
            .expect("the mode is set");
    }
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn the_server_speaks_https_and_serves_a_renewed_certificate_without_a_restart() {
    let certs = tempfile::TempDir::new().expect("TempDir is created");
    let (cert, key) = (
        certs.path().join("server.pem"),
        certs.path().join("server.key"),
    );
    let (ca_pem, other_pem) = (certs.path().join("ca.pem"), certs.path().join("other.pem"));
    let ca = TestCa::new("creddy test CA");
    ca.write(&ca_pem);
    ca.issue(&cert, &key);
    let other = TestCa::new("another CA");
    other.write(&other_pem);

    let site = Site::start_blocking(
        Dialect::Sqlite,
        &["--tls-cert", &text(&cert), "--tls-key", &text(&key)],
    );
    let https = site.server.url().replacen("http://", "https://", 1);
    let dir = text(&site.data_dir);
    let admin = |ca: &PathBuf, args: &[&str]| {
        let mut full = vec!["--server", https.as_str(), "--data-dir", dir.as_str()];
        let ca = text(ca);
        full.extend(["--ca-cert", ca.as_str()]);
        full.extend_from_slice(args);
        creddy(site.home.path(), &full, &[])
    };
    assert!(
        site.server.log().contains(&format!("issuer {https}")),
        "the default issuer is https: {}",
        site.server.log()
    );
    let ca_text = text(&ca_pem);
    let created = admin(&ca_pem, &["agent", "create", "tls-agent", "--can", "test"]);
    created.ok();
    let token = crate::kit::exported(created.stdout.as_str(), "CREDDY_TOKEN");
    let status = creddy(
        site.home.path(),
        &["--ca-cert", &text(&ca_pem), "status"],
        &[("CREDDY_URL", &https), ("CREDDY_TOKEN", &token)],
    );
    assert!(status.ok().contains("tls-agent"), "{}", status.stdout);

    // The vend flow over HTTPS: a backend added, a credential issued, listed and revoked.
    site.install_test_plugin("test");
    let state = format!("state_dir={}", site.upstream().display());
    admin(
        &ca_pem,
        &[
            "backend",
            "add",
            "test",
            "--set",
            "api_key=upstream-master-key-tls",
            "--set",
            &state,
        ],
    )
    .ok();
    let agent = |args: &[&str]| {
        let mut full = vec!["--ca-cert", ca_text.as_str()];
        full.extend_from_slice(args);
        creddy(
            site.home.path(),
            &full,
            &[("CREDDY_URL", &https), ("CREDDY_TOKEN", &token)],
        )
    };
    let issued: serde_json::Value =
        serde_json::from_str(agent(&["get", "test", "--ttl", "5m", "-o", "json"]).ok())
            .expect("the text is JSON of the expected shape");
    let id = issued["id"].as_str().unwrap_or_default().to_owned();
    assert!(id.starts_with("cred_"), "{issued}");
    assert!(agent(&["ls"]).ok().contains(&id));
    agent(&["revoke", &id]).ok();

    // `enroll --ca-cert` saves the CA into the agent config; later commands use it.
    let agent_config = site.home.path().join("enrolled.toml");
    let agent_env = [("CREDDY_AGENT_CONFIG", text(&agent_config))];
    let agent_env: Vec<(&str, &str)> = agent_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    creddy(
        site.home.path(),
        &[
            "--data-dir",
            &dir,
            "--ca-cert",
            &text(&ca_pem),
            "enroll",
            &https,
            "--name",
            "tls-enrolled",
            "--can",
            "*",
        ],
        &agent_env,
    )
    .ok();
    let saved = std::fs::read_to_string(&agent_config).unwrap_or_default();
    assert!(saved.contains("ca_cert = "), "{saved}");
    let status = creddy(site.home.path(), &["status"], &agent_env);
    assert!(status.ok().contains("tls-enrolled"), "{}", status.stdout);

    // A client that does not trust the CA, or that speaks plain HTTP, gets nothing.
    let refused = admin(&other_pem, &["agent", "ls"]);
    assert_ne!(refused.code, Some(0), "{}", refused.stderr);
    let plain = creddy(
        site.home.path(),
        &[
            "--server",
            &site.server.url(),
            "--data-dir",
            &dir,
            "agent",
            "ls",
        ],
        &[],
    );
    assert_ne!(
        plain.code,
        Some(0),
        "plain HTTP to the TLS port: {}",
        plain.stdout
    );

    // A renewed certificate (here from another CA) is served after SIGHUP, without a restart.
    other.issue(&cert, &key);
    site.server.signal("HUP");
    eventually("the renewed certificate", || {
        admin(&other_pem, &["agent", "ls"]).code == Some(0)
    });
    let old_ca = admin(&ca_pem, &["agent", "ls"]);
    assert_ne!(old_ca.code, Some(0), "the old certificate is gone");
    assert!(site.server.log().contains("TLS certificate reloaded"));
}

//! Workload identity end to end (§18): a job shaped like a GitHub Actions job, whose
//! `ACTIONS_ID_TOKEN_REQUEST_*` variables point at the test kit's runner endpoint, runs
//! `creddy get daytona --ttl 30m` with no creddy secret and gets a Daytona key that works on
//! the stand-in; a job of another repository, or one without `id-token: write`, is refused
//! with the claim and the remedy named.

use creddy_testkit::issuer::{Alg, Issuer, trust_table};
use creddy_testkit::plugins::{install_as, workspace_binary};
use creddy_testkit::server::StandinProcess;
use creddy_testkit::store::Dialect;
use serde_json::json;

use crate::kit::{Site, creddy, http};

const MASTER: &str = "dtn_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// A creddy server trusting the test kit's issuer for `acme/widgets`, with the Daytona
/// backend on a stand-in.
struct Ci {
    runtime: tokio::runtime::Runtime,
    issuer: Issuer,
    kid: String,
    site: Site,
    standin: StandinProcess,
}

impl Ci {
    fn start() -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime for the issuer");
        let issuer = runtime.block_on(Issuer::start());
        let kid = issuer.add_key(Alg::Rs256, true);
        let trust = trust_table(
            "github",
            issuer.url(),
            r#"repository = "acme/widgets", ref = "refs/heads/*""#,
            "gh-{repository}",
            &["daytona"],
            r#"max_ttl = "1h""#,
        );
        let site = Site::start_with_config(Dialect::Sqlite, &trust, &[]);
        let home = site.home.path();
        install_as(
            &workspace_binary("creddy-daytona", "creddy-daytona"),
            &home.join("plugins"),
            "daytona",
        );
        let standin = StandinProcess::start(
            &workspace_binary("creddy-daytona-standin", "daytona-standin"),
            &home.join("daytona.json"),
        );
        http()
            .post(format!("{}/_standin/seed", standin.control_url()))
            .json(&creddy_daytona_standin::master_seed(MASTER, "org-1"))
            .send()
            .expect("the stand-in answers");
        let key_file = home.join("daytona.key");
        std::fs::write(&key_file, MASTER).expect("the file is written");
        site.admin(&[
            "backend",
            "add",
            "daytona",
            "--set-file",
            &format!("api_key={}", key_file.display()),
            "--set",
            &format!("base_url={}", standin.api_url),
            "--set",
            "organization_id=org-1",
        ])
        .ok();
        Self {
            runtime,
            issuer,
            kid,
            site,
            standin,
        }
    }

    /// The environment of a GitHub Actions job of `repository` on `main` (the runner's
    /// ID-token endpoint played by the test kit), with the creddy server's URL.
    fn job(&self, repository: &str) -> Vec<(String, String)> {
        let claims = self
            .issuer
            .github_claims(repository, "refs/heads/main", "ignored", now());
        let (request_url, request_token) = self.issuer.serve_runner(&self.kid, claims);
        [
            ("CREDDY_URL", self.site.server.url()),
            ("CREDDY_OIDC", "github-actions".to_owned()),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", request_url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", request_token),
            ("GITHUB_ACTIONS", "true".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec()
    }

    /// Whether `key` may create a sandbox on the stand-in.
    fn works(&self, key: &str) -> bool {
        http()
            .post(format!("{}/sandbox", self.standin.api_url))
            .bearer_auth(key)
            .json(&json!({"name": format!("from-ci-{}", &key[4..12])}))
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200)
    }
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn a_github_actions_job_gets_a_daytona_key_with_no_creddy_secret() {
    let ci = Ci::start();
    let (site, issuer, kid) = (&ci.site, &ci.issuer, &ci.kid);
    let home = site.home.path();
    let url = site.server.url();
    let job = |repository: &str| {
        let env = ci.job(repository);
        let run = creddy(home, &["get", "daytona", "--ttl", "30m"], &pairs(&env));
        (run, env[3].1.clone())
    };
    let (run, request_token) = job("acme/widgets");
    let key = run.ok().trim().to_owned();
    assert!(key.starts_with("dtn_"), "stdout is the key alone: {key}");
    assert!(
        run.stderr.contains(&format!("::add-mask::{key}")),
        "the key is masked in the job's log: {}",
        run.stderr
    );
    assert!(ci.works(&key), "the key works upstream");
    let agents = site.admin(&["agent", "ls", "-o", "json"]);
    assert!(agents.ok().contains("gh-acme-widgets"), "{}", agents.stdout);
    assert!(
        !site.server.log().contains(&request_token),
        "the runner's request token never reaches creddy"
    );

    // Another repository's job: refused, naming the claim and the remedy.
    let (refused, _) = job("acme/gadgets");
    refused.fails(4, "claim 'repository' is 'acme/gadgets'");
    assert!(
        refused.stderr.contains("trust's claims"),
        "{}",
        refused.stderr
    );
    assert!(refused.stdout.is_empty(), "nothing on stdout");

    // A job without `permissions: id-token: write` has no request variables.
    let bare = creddy(
        home,
        &["get", "daytona"],
        &[
            ("CREDDY_URL", url.as_str()),
            ("CREDDY_OIDC", "github-actions"),
        ],
    );
    bare.fails(4, "id-token: write");

    // The same job with its token in a file (a Kubernetes projected token's way).
    let token_file = home.join("oidc-token");
    let claims = issuer.github_claims("acme/widgets", "refs/heads/dev", "creddy", now());
    std::fs::write(&token_file, issuer.sign(kid, &claims)).expect("the file is written");
    let source = format!("file:{}", token_file.display());
    let from_file = creddy(
        home,
        &["--oidc", &source, "get", "daytona", "--ttl", "2h"],
        &[("CREDDY_URL", url.as_str())],
    );
    from_file.fails(2, "trust 'github' max_ttl");
    drop(ci.runtime);
}

/// The GitHub Action's two shell steps (`action.yml`), run here as the runner would: the
/// install step fetches a release archive, checks it against `SHA256SUMS` (a tampered sum
/// stops it) and puts `creddy` on `$GITHUB_PATH`; the get step, with that `creddy`, exports
/// the Daytona variables to `$GITHUB_ENV` in the delimiter form and masks the key.
#[test]
fn the_github_action_installs_a_checked_release_and_exports_the_credential() {
    let ci = Ci::start();
    let home = ci.site.home.path();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let version = env!("CARGO_PKG_VERSION");
    let (os, arch) = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => ("linux", "amd64"),
        ("linux", "aarch64") => ("linux", "arm64"),
        (os, arch) => (os, arch),
    };
    // A release as `cargo xtask dist` lays it out: creddy-<v>/bin/creddy, and SHA256SUMS.
    let releases = home.join("releases");
    let stage = home.join("stage").join(format!("creddy-{version}/bin"));
    std::fs::create_dir_all(&stage).expect("the stage is made");
    std::fs::copy(crate::kit::bin(), stage.join("creddy")).expect("the binary is copied");
    let published = releases.join(format!("v{version}"));
    std::fs::create_dir_all(&published).expect("the release directory is made");
    let archive = format!("creddy-{version}-{os}-{arch}.tar.gz");
    let shell = |script: &str, envs: &[(&str, &str)]| -> crate::kit::Run {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .envs(envs.iter().copied())
            .output()
            .expect("bash runs")
            .into()
    };
    let packed = shell(
        &format!(
            "tar -czf '{}' -C '{}' 'creddy-{version}' && cd '{}' && sha256sum '{archive}' > SHA256SUMS",
            published.join(&archive).display(),
            home.join("stage").display(),
            published.display()
        ),
        &[],
    );
    packed.ok();

    let runner_temp = home.join("runner-temp");
    std::fs::create_dir_all(&runner_temp).expect("RUNNER_TEMP is made");
    let github_path = home.join("github-path");
    let release_url = format!("file://{}", releases.display());
    let install = repo
        .join("packaging/action/install.sh")
        .display()
        .to_string();
    let install_env = [
        ("CREDDY_VERSION", version),
        ("CREDDY_RELEASE_URL", release_url.as_str()),
        ("RUNNER_TEMP", &runner_temp.display().to_string()),
        ("GITHUB_PATH", &github_path.display().to_string()),
    ]
    .map(|(k, v)| (k, v.to_owned()));
    let install_pairs: Vec<(&str, &str)> =
        install_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    shell(&install, &install_pairs).ok();
    let bin_dir = std::fs::read_to_string(&github_path).expect("GITHUB_PATH is written");
    let bin_dir = bin_dir.trim().to_owned();
    assert!(
        std::path::Path::new(&bin_dir).join("creddy").is_file(),
        "{bin_dir}"
    );

    // A release whose SHA256SUMS does not match its archive is not installed.
    let sums = published.join("SHA256SUMS");
    let good = std::fs::read_to_string(&sums).expect("the sums are there");
    std::fs::write(&sums, format!("{}{}", "0".repeat(64), &good[64..])).expect("tampered");
    let tampered = shell(&install, &install_pairs);
    assert_ne!(tampered.code, Some(0), "{}", tampered.stderr);
    assert!(
        tampered
            .stderr
            .contains("does not match the release's SHA256SUMS"),
        "{}",
        tampered.stderr
    );

    let github_env = home.join("github-env");
    let get = repo.join("packaging/action/get.sh").display().to_string();
    let path = format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let mut env = ci.job("acme/widgets");
    env.extend(
        [
            ("PATH", path),
            ("GITHUB_ENV", github_env.display().to_string()),
            ("CREDDY_BACKEND", "daytona".to_owned()),
            ("CREDDY_TTL", "30m".to_owned()),
            ("CREDDY_SCOPE", String::new()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let got = shell(&get, &pairs(&env));
    got.ok();
    let exported = std::fs::read_to_string(&github_env).expect("GITHUB_ENV is written");
    let mut lines = exported.lines();
    let header = lines.next().unwrap_or_default();
    let (name, delimiter) = header.split_once("<<").unwrap_or_default();
    assert_eq!(name, "DAYTONA_API_KEY", "{exported}");
    assert!(
        delimiter.starts_with("creddy_") && delimiter.len() == 39,
        "{header}"
    );
    let key = lines.next().unwrap_or_default();
    assert!(key.starts_with("dtn_"), "{exported}");
    assert_eq!(lines.next(), Some(delimiter));
    assert!(exported.contains("DAYTONA_API_URL<<"), "{exported}");
    assert!(
        got.stderr.contains(&format!("::add-mask::{key}")),
        "{}",
        got.stderr
    );
    assert!(
        !got.stdout.contains(key),
        "the key is not printed to the log"
    );
    assert!(ci.works(key), "the exported key works upstream");
    drop(ci.runtime);
}

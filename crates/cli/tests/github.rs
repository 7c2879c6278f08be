//! The GitHub flow (§19) with real processes: the server, the GitHub plugin installed from a
//! signed registry, `backend add github` answering the schema's prompts (the App's key read
//! from a file), an agent narrowed to one repository, `creddy get` and `creddy run`, `git
//! clone` and `git push` through `creddy git-credential` against the test kit's git front,
//! revocation at lease end and at `creddy revoke`, and the audit trail. The stand-in for
//! GitHub runs in this test's process.

use std::path::Path;
use std::sync::Arc;

use creddy_plugin::publish::{Publish, SigningKey};
use creddy_testkit::git_front::GitFront;
use creddy_testkit::github::GithubStandin;
use creddy_testkit::plugins::workspace_binary;
use creddy_testkit::registry::publish_signed;
use creddy_testkit::store::Dialect;
use serde_json::Value;

use crate::kit::{ClockFile, Site, bin, creddy, eventually, exported};

/// A creddy server trusting a fresh release key, the GitHub stand-in with `acme/widgets` and
/// `acme/gadgets` (the App installed on `acme` for both), and git over HTTPS for them.
struct Github {
    /// Serves the stand-in and its git front for as long as the test runs.
    _runtime: tokio::runtime::Runtime,
    standin: GithubStandin,
    git: GitFront,
    clock: ClockFile,
    site: Site,
    key: SigningKey,
    trusted: String,
}

impl Github {
    fn start() -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime for the stand-in");
        let standin = runtime.block_on(GithubStandin::start(Arc::new(
            creddy_core::ManualClock::starting_now(),
        )));
        standin.add_repository("acme", "widgets", &[("README.md", "# widgets\n")]);
        standin.add_repository("acme", "gadgets", &[("README.md", "# gadgets\n")]);
        standin.install(
            "acme",
            None,
            &[
                ("contents", "write"),
                ("metadata", "read"),
                ("pull_requests", "write"),
                ("issues", "write"),
            ],
        );
        let git = runtime.block_on(standin.serve_git());
        let scratch = tempfile::TempDir::new().expect("TempDir is created");
        let clock = ClockFile::new(scratch.keep().join("clock"));
        let key = SigningKey::generate();
        let trusted = key.public_key();
        let site = Site::start_with_env(
            Dialect::Sqlite,
            &[],
            &[
                ("CREDDY_PLUGIN_TRUSTED_KEYS", &trusted),
                ("CREDDY_TEST_CLOCK_FILE", &clock.env_value()),
            ],
        );
        Self {
            _runtime: runtime,
            standin,
            git,
            clock,
            site,
            key,
            trusted,
        }
    }

    /// Publishes the plugin to a signed registry and installs it as an operator would.
    fn install_plugin(&self) {
        let home = self.site.home.path();
        let registry = home.join("registry");
        let binary = workspace_binary("creddy-github", "creddy-github");
        publish_signed(
            &registry,
            &self.key,
            &[Publish {
                name: "github",
                version: "0.1.0",
                description: "GitHub App installation tokens for chosen repositories",
                binary: &binary,
                min_creddy_version: "0.1.0",
            }],
        );
        let env = [
            ("CREDDY_PLUGIN_REGISTRY", path_text(&registry)),
            ("CREDDY_PLUGIN_DIR", path_text(&home.join("plugins"))),
            ("CREDDY_PLUGIN_TRUSTED_KEYS", self.trusted.clone()),
            ("CREDDY_CONFIG", path_text(&home.join("creddy.toml"))),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let installed = creddy(home, &["plugin", "install", "github"], &env);
        installed.ok();
        assert!(
            installed.stderr.contains("Installed github 0.1.0"),
            "{}",
            installed.stderr
        );
    }

    /// `backend add github` on a terminal: the App's key from a file, the rest answered to
    /// the schema's prompts.
    fn add_backend(&self) {
        let home = self.site.home.path();
        let pem = home.join("app.pem");
        std::fs::write(&pem, self.standin.app().private_key_pem).expect("the key is written");
        let key_arg = format!("private_key={}", pem.display());
        let (url, dir, home_text) = (
            self.site.server.url(),
            path_text(&self.site.data_dir),
            path_text(home),
        );
        let mut terminal = creddy_testkit::pty::Terminal::spawn(
            bin(),
            &[
                "--server",
                &url,
                "--data-dir",
                &dir,
                "backend",
                "add",
                "github",
                "--set-file",
                &key_arg,
            ],
            &[("HOME", &home_text)],
        );
        terminal.expect("[app_id, required]");
        terminal.send_line(&self.standin.app().id.to_string());
        terminal.expect("[installation_id, optional]");
        terminal.send_line("");
        terminal.expect("[base_url, default https://api.github.com]");
        terminal.send_line(self.standin.url());
        terminal.expect("[git_url, optional]");
        terminal.send_line(self.git.url());
        terminal.expect("[default_permissions, default");
        terminal.send_line("");
        let (code, screen) = terminal.finish();
        assert_eq!(code, Some(0), "{screen}");
        assert!(screen.contains("Validating with github... ok"), "{screen}");
    }

    /// Runs `git ARGS` in `dir` with creddy as its only credential helper, as the agent of
    /// `token`; the configuration comes through the environment, never the arguments.
    fn git(&self, dir: &Path, token: &str, args: &[&str]) -> std::process::Output {
        let helper = format!("!{} git-credential", bin().display());
        let config = [
            ("credential.helper", ""),
            ("credential.helper", helper.as_str()),
            ("credential.useHttpPath", "true"),
            ("user.name", "coder"),
            ("user.email", "coder@example.com"),
        ];
        let mut command = std::process::Command::new("git");
        command
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.site.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSL_CAINFO", self.git.ca_file())
            .env("CREDDY_URL", self.site.server.url())
            .env("CREDDY_TOKEN", token)
            .env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (key, value)) in config.iter().enumerate() {
            command
                .env(format!("GIT_CONFIG_KEY_{i}"), key)
                .env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
        command.output().expect("git runs")
    }

    /// The stand-in's token that is `value`.
    fn token(&self, value: &str) -> creddy_testkit::github::Token {
        self.standin.tokens()[value].clone()
    }
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

fn succeeded(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_github_flow_from_install_to_git_push_and_revocation() {
    let github = Github::start();
    github.install_plugin();
    github.add_backend();
    let site = &github.site;
    let coder = exported(
        site.admin(&[
            "agent",
            "create",
            "coder",
            "--can",
            "github:acme/widgets:contents:write",
        ])
        .ok(),
        "CREDDY_TOKEN",
    );

    // `creddy get github`: a token narrowed to the one repository and permission.
    let value = site
        .agent(&coder, &["get", "github"])
        .ok()
        .trim()
        .to_owned();
    assert!(value.starts_with("ghs_"), "{value}");
    let minted = github.token(&value);
    assert_eq!(
        minted.repositories,
        Some(["acme/widgets".to_owned()].into()),
        "narrowed to acme/widgets"
    );
    assert_eq!(
        minted.permissions,
        [
            ("contents".to_owned(), "write".to_owned()),
            ("metadata".to_owned(), "read".to_owned())
        ]
        .into()
    );
    assert!(
        !github
            .standin
            .token_allows(&value, "acme", "gadgets", false),
        "the other repository is out of its reach"
    );

    // `creddy run`: GH_TOKEN and GITHUB_TOKEN for a gh-style program, revoked when it ends.
    let script = format!(
        "import os, urllib.request as u\n\
         assert os.environ['GH_TOKEN'] == os.environ['GITHUB_TOKEN']\n\
         r = u.Request('{}/repos/acme/widgets/contents/README.md', headers={{'Authorization': 'token ' + os.environ['GH_TOKEN']}})\n\
         print(u.urlopen(r).status)\n\
         open('{}', 'w').write(os.environ['GH_TOKEN'])\n",
        github.standin.url(),
        path_text(&site.home.path().join("run-token")),
    );
    let ran = site.agent(
        &coder,
        &["run", "--with", "github", "--", "python3", "-c", &script],
    );
    assert_eq!(ran.ok().trim(), "200");
    let run_token = std::fs::read_to_string(site.home.path().join("run-token"))
        .expect("the program wrote its token");
    assert!(
        github.token(&run_token).revoked,
        "revoked upstream as soon as the program ended"
    );

    // git clone and push through the credential helper.
    let work = site.home.path().join("work");
    std::fs::create_dir_all(&work).expect("a directory");
    let widgets = format!("{}/acme/widgets.git", github.git.url());
    succeeded(&github.git(&work, &coder, &["clone", "-q", &widgets, "widgets"]));
    let clone = work.join("widgets");
    assert_eq!(
        std::fs::read_to_string(clone.join("README.md")).unwrap_or_default(),
        "# widgets\n"
    );
    std::fs::write(clone.join("CHANGELOG.md"), "- written by an agent\n").expect("written");
    succeeded(&github.git(&clone, &coder, &["add", "CHANGELOG.md"]));
    succeeded(&github.git(&clone, &coder, &["commit", "-qm", "Add a changelog"]));
    succeeded(&github.git(&clone, &coder, &["push", "-q", "origin", "main"]));
    let bare = github.git.bare("acme", "widgets");
    let pushed = succeeded(&github.git(
        &work,
        &coder,
        &["--git-dir", &path_text(&bare), "log", "--format=%s", "-1"],
    ));
    assert_eq!(pushed.trim(), "Add a changelog", "the push landed");

    // Another repository: the helper has no grant for it, and a token of widgets is refused
    // by the git front (the token in the environment, never in an argument).
    let gadgets = format!("{}/acme/gadgets.git", github.git.url());
    let refused = github.git(&work, &coder, &["clone", "-q", &gadgets, "gadgets"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("holds no 'github' grant that reaches acme/gadgets"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let basic = base64_basic(&value);
    let mut direct = std::process::Command::new("git");
    direct
        .args(["clone", "-q", &gadgets, "gadgets-direct"])
        .current_dir(&work)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", site.home.path())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSL_CAINFO", github.git.ca_file())
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env(
            "GIT_CONFIG_VALUE_0",
            format!("Authorization: Basic {basic}"),
        );
    let direct = direct.output().expect("git runs");
    assert!(!direct.status.success());
    assert!(
        github
            .standin
            .log()
            .iter()
            .any(|l| l.path.starts_with("/acme/gadgets.git") && l.status == 403),
        "the git front refused the token for another repository"
    );

    // Another host (the same server named differently): the helper's token is revoked at once
    // and git gets nothing.
    let elsewhere = widgets.replace("127.0.0.1", "localhost");
    let other_host = github.git(&work, &coder, &["clone", "-q", &elsewhere, "elsewhere"]);
    assert!(!other_host.status.success());
    let said = String::from_utf8_lossy(&other_host.stderr);
    assert!(said.contains("not localhost:"), "{said}");
    let live = github
        .standin
        .tokens()
        .values()
        .filter(|t| !t.revoked)
        .count();
    assert_eq!(
        live, 3,
        "get and the helper's clone and push; the other host's was revoked"
    );

    // Revocation at `creddy revoke`, and at the lease's end.
    let issued: Value =
        serde_json::from_str(site.agent(&coder, &["get", "github", "-o", "json"]).ok())
            .unwrap_or_default();
    let (id, revoked_now) = (
        issued["id"].as_str().unwrap_or_default().to_owned(),
        issued["token"].as_str().unwrap_or_default().to_owned(),
    );
    site.agent(&coder, &["revoke", &id]).ok();
    assert!(
        github.token(&revoked_now).revoked,
        "revoked at creddy revoke"
    );
    assert!(
        !github.token(&value).revoked,
        "the first token is still live"
    );
    github.clock.advance(11 * 60);
    eventually("the first token's lease to end upstream", || {
        github.token(&value).revoked
    });
    eventually(
        "every token's lease, the git helper's too, to end upstream",
        || github.standin.tokens().values().all(|t| t.revoked),
    );
    assert_eq!(
        github.standin.tokens().len(),
        6,
        "get, run, the helper's clone and push, the other host's, and the one revoked by hand"
    );

    // The audit trail tells the story; neither the App's key nor a token is in it or the log.
    let trail: Value = serde_json::from_str(
        site.admin(&[
            "audit",
            "--backend",
            "github",
            "-o",
            "json",
            "--limit",
            "100",
        ])
        .ok(),
    )
    .unwrap_or_default();
    let actions: Vec<&str> = trail
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for expected in ["backend.added", "credential.issued", "credential.revoked"] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    let text = trail.to_string();
    let log = site.server.log();
    let pem = github.standin.app().private_key_pem;
    let key_line = pem.lines().nth(1).unwrap_or_default().to_owned();
    for secret in [value.as_str(), revoked_now.as_str(), key_line.as_str()] {
        assert!(!text.contains(secret), "a secret in the audit trail");
        assert!(!log.contains(secret), "a secret in the server log");
    }
}

/// `x-access-token:TOKEN`, base64, as git's Basic credentials.
fn base64_basic(token: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
}

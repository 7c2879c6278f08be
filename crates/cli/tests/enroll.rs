//! Enrollment between separate processes (issue #6): a server, an enrolling agent (`creddy
//! enroll` waiting in the background) and an approving admin, each a real process; then the
//! policies of the server's file: auto-approval, deny, `max_agents`, the rate of approvals,
//! agent lifetimes, `max_ttl`, expired requests and the per-address limit.
//!
//! Server time is moved with the test clock file; the only real-time wait is the CLI's own
//! `--timeout`, which is what the test checks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use creddy_testkit::store::Dialect;
use serde_json::Value;

use crate::kit::{ClockFile, Run, Site, bin, creddy, eventually};

const MASTER_KEY: &str = "upstream-master-key-enroll";

/// A server with the test backend, and a separate home for each agent process.
struct Rig {
    site: Site,
    clock: ClockFile,
}

impl Rig {
    fn start(config: &str) -> Self {
        let scratch = tempfile::TempDir::new().expect("TempDir is created");
        let clock = ClockFile::new(scratch.keep().join("clock"));
        let clock_text = clock.env_value();
        let site = Site::start_with_config(
            Dialect::Sqlite,
            config,
            &[("CREDDY_TEST_CLOCK_FILE", &clock_text)],
        );
        site.install_test_plugin("test");
        let state = format!("state_dir={}", site.upstream().display());
        let key = format!("api_key={MASTER_KEY}");
        site.admin(&["backend", "add", "test", "--set", &key, "--set", &state])
            .ok();
        Self { site, clock }
    }

    fn advance(&self, seconds: i64) {
        self.clock.advance(seconds);
    }

    /// An agent's home: its own `HOME` and agent config file.
    fn agent_home(&self, name: &str) -> PathBuf {
        let home = self.site.home.path().join("agents").join(name);
        std::fs::create_dir_all(&home).expect("the directory is made");
        home
    }

    /// Runs an agent command with the agent's config (and no token in the environment).
    fn agent(&self, home: &Path, args: &[&str]) -> Run {
        let url = self.site.server.url();
        let mut full = vec!["--server", url.as_str()];
        full.extend_from_slice(args);
        creddy(home, &full, &[("CREDDY_AGENT_CONFIG", &config_of(home))])
    }

    /// Starts `creddy enroll` in the background.
    fn enroll(&self, home: &Path, args: &[&str]) -> Child {
        Command::new(bin())
            .arg("enroll")
            .arg(self.site.server.url())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("CREDDY_AGENT_CONFIG", config_of(home))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the process starts")
    }

    /// The ids of waiting requests, as `creddy pending -o json` lists them.
    fn pending(&self) -> Vec<Value> {
        let listed = self.site.admin(&["pending", "-o", "json"]);
        serde_json::from_str::<Vec<Value>>(listed.ok()).unwrap_or_default()
    }

    fn pending_id(&self, name: &str) -> String {
        let mut id = String::new();
        eventually(&format!("a pending request of {name}"), || {
            id = self
                .pending()
                .iter()
                .find(|p| p["name"] == name)
                .and_then(|p| p["id"].as_str())
                .unwrap_or_default()
                .to_owned();
            !id.is_empty()
        });
        id
    }
}

fn config_of(home: &Path) -> String {
    home.join("agent.toml").display().to_string()
}

fn finish(child: Child) -> Run {
    child.wait_with_output().expect("the command ends").into()
}

#[test]
fn an_agent_enrolls_an_admin_approves_and_the_agent_lives_and_leaves() {
    let rig = Rig::start("");
    let home = rig.agent_home("ci");
    let waiting = rig.enroll(
        &home,
        &[
            "--name",
            "ci-agent",
            "--can",
            "test",
            "--poll-interval",
            "1s",
        ],
    );
    let id = rig.pending_id("ci-agent");
    let table = rig.site.admin(&["pending"]);
    assert!(
        table.ok().contains("ID")
            && table.stdout.contains("enroll")
            && table.stdout.contains("ci-agent")
            && table.stdout.contains("ADDRESS")
            && table.stdout.contains("127.0.0.1"),
        "{}",
        table.stdout
    );
    let approved = rig.site.admin(&["approve", &id]);
    approved.ok();
    assert!(
        approved
            .stderr
            .contains(&format!("Approved {id}: agent 'ci-agent' (ag_")),
        "{}",
        approved.stderr
    );
    let enrolled = finish(waiting);
    enrolled.ok();
    assert!(
        enrolled.stderr.contains(&format!(
            "Enrollment requested: {id} (agent 'ci-agent', scopes: test)"
        )),
        "{}",
        enrolled.stderr
    );
    assert!(
        enrolled
            .stderr
            .contains("Approved: enrolled as 'ci-agent' (ag_")
            && enrolled.stderr.contains("Saved credentials to"),
        "{}",
        enrolled.stderr
    );
    let config = home.join("agent.toml");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600), "the agent config is private");
    let saved = std::fs::read_to_string(&config).unwrap_or_default();
    for key in [
        "server",
        "name",
        "agent_id",
        "token = \"ckr_",
        "client_id",
        "client_secret = \"cks_",
    ] {
        assert!(saved.contains(key), "{key} in {saved}");
    }

    // The saved config is all later commands need.
    let key = rig.agent(&home, &["get", "test"]);
    assert!(!key.ok().trim().is_empty(), "{}", key.stdout);
    let status = rig.agent(&home, &["status"]);
    assert!(status.ok().contains("ci-agent"), "{}", status.stdout);
    rig.agent(&home, &["enroll", "--name", "again", "--can", "test"])
        .fails(2, "an agent config already exists");

    // Amendments.
    let asked = rig.agent(&home, &["request", "--can", "test:read"]);
    asked.ok();
    assert!(
        asked.stderr.contains("pending approval"),
        "{}",
        asked.stderr
    );
    let amendment = rig.pending_id("ci-agent");
    rig.site.admin(&["approve", &amendment]).ok();
    let status = rig.agent(&home, &["status", "-o", "json"]);
    let status: Value = serde_json::from_str(status.ok()).unwrap_or_default();
    assert_eq!(status["scopes"], serde_json::json!(["test", "test:read"]));
    // `request --wait` ends with the rejection and its reason.
    let waiting = Command::new(bin())
        .args([
            "--server",
            &rig.site.server.url(),
            "request",
            "--can",
            "test",
            "--wait",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("CREDDY_AGENT_CONFIG", config_of(&home))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the process starts");
    let amendment = rig.pending_id("ci-agent");
    rig.site
        .admin(&["reject", &amendment, "--reason", "test is enough"])
        .ok();
    finish(waiting).fails(5, "was rejected: test is enough");

    // Leaving revokes the agent's credentials and forgets the config.
    let left = rig.agent(&home, &["unenroll"]);
    left.ok();
    assert!(
        left.stderr.contains("Unenrolled 'ci-agent'"),
        "{}",
        left.stderr
    );
    assert!(!config.exists(), "the agent config is removed");
    eventually("the credential revoked upstream", || {
        std::fs::read_dir(rig.site.upstream().join("revoked")).map_or(0, |d| d.count()) == 1
    });

    // A rejection ends the waiting command with exit 5 and the reason.
    let home2 = rig.agent_home("rejected");
    let waiting = rig.enroll(
        &home2,
        &[
            "--name",
            "dev-box",
            "--can",
            "test",
            "--poll-interval",
            "1s",
        ],
    );
    let id = rig.pending_id("dev-box");
    let rejected = rig
        .site
        .admin(&["reject", &id, "--reason", "not on this server"]);
    rejected.ok();
    assert!(rejected.stderr.contains(&format!("Rejected {id}")));
    finish(waiting).fails(5, "was rejected: not on this server");

    // Giving up waiting is exit 5 too; the request stays for an admin.
    let home3 = rig.agent_home("impatient");
    rig.agent(
        &home3,
        &[
            "enroll",
            "--name",
            "impatient",
            "--can",
            "test",
            "--poll-interval",
            "1s",
            "--timeout",
            "2s",
        ],
    )
    .fails(5, "timed out after 2s waiting for approval");
    let id = rig.pending_id("impatient");
    let kept = std::path::PathBuf::from(format!("{}.pending", config_of(&home3)));
    assert!(kept.exists(), "the waiting request is kept for a resume");
    // Running enroll again resumes waiting for the same request, which an admin approves.
    let resumed = rig.enroll(
        &home3,
        &[
            "--name",
            "impatient",
            "--can",
            "test",
            "--poll-interval",
            "1s",
        ],
    );
    rig.site.admin(&["approve", &id]).ok();
    let resumed = finish(resumed);
    resumed.ok();
    assert!(
        resumed
            .stderr
            .contains(&format!("Resuming enrollment {id}")),
        "{}",
        resumed.stderr
    );
    assert!(!kept.exists(), "the request is forgotten once decided");
    assert!(
        !rig.pending().iter().any(|p| p["name"] == "impatient"),
        "no second request was filed"
    );

    // Refusals that help.
    rig.agent(
        &home3,
        &["enroll", "--name", "impatient", "--can", "test", "--force"],
    )
    .fails(1, "already used by an agent or an open enrollment");
    let unknown = rig.agent(
        &home3,
        &[
            "enroll",
            "--name",
            "other",
            "--can",
            "github:repo",
            "--force",
        ],
    );
    unknown.fails(2, "scope 'github:repo' names no backend of this server");
    assert!(!unknown.stderr.contains("'test'"), "{}", unknown.stderr);

    // On the server's machine, with the local admin token at hand, enrollment is immediate.
    let local = rig.agent_home("local");
    let data_dir = rig.site.data_dir.display().to_string();
    let direct = rig.agent(
        &local,
        &[
            "--data-dir",
            &data_dir,
            "enroll",
            "--name",
            "on-the-server",
            "--can",
            "test",
        ],
    );
    direct.ok();
    assert!(
        direct
            .stderr
            .contains("Approved: enrolled as 'on-the-server'")
            && !direct.stderr.contains("Waiting for approval"),
        "{}",
        direct.stderr
    );
}

#[test]
fn an_expired_request_ends_the_wait_and_credentials_are_picked_up_once() {
    let rig = Rig::start("enrollment = { pending_ttl = \"10m\" }\n");
    let home = rig.agent_home("slow");
    let waiting = rig.enroll(
        &home,
        &["--name", "slow", "--can", "test", "--poll-interval", "1s"],
    );
    rig.pending_id("slow");
    rig.advance(601);
    finish(waiting).fails(5, "expired before it was approved");

    // The poll secret hands the credentials out once.
    let http = crate::kit::http();
    let url = rig.site.server.url();
    let asked: Value = http
        .post(format!("{url}/v1/enroll"))
        .json(&serde_json::json!({"name": "once", "scopes": ["test"]}))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_default();
    let secret = asked["secret"].as_str().unwrap_or_default().to_owned();
    rig.site
        .admin(&["approve", asked["id"].as_str().unwrap_or_default()])
        .ok();
    let poll = || {
        http.get(format!("{url}/v1/enroll/status"))
            .header("X-Creddy-Enrollment-Secret", &secret)
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(poll(), 200);
    assert_eq!(poll(), 410, "a second pickup is refused");
}

const POLICIES: &str = r#"
limits = { enroll_per_ip = "12/minute" }

[[policies]]
name = "ci-runners"
match = { name_pattern = "ci-*" }
allow = { scopes = ["test"], max_ttl = "15m", max_agent_lifetime = "1h" }
limits = { max_agents = 2 }

[[policies]]
name = "no-test"
match = { name_pattern = "blocked-*" }
deny = { scopes = ["test"] }

[[policies]]
name = "everyone-else"
match = { name_pattern = "*" }
"#;

#[test]
fn policies_approve_deny_limit_and_narrow_between_processes() {
    let rig = Rig::start(POLICIES);
    let ci1 = rig.agent_home("ci-1");
    let auto = rig.agent(&ci1, &["enroll", "--name", "ci-1", "--can", "test"]);
    auto.ok();
    assert!(
        auto.stderr.contains("Approved: enrolled as 'ci-1'"),
        "approved by the policy at once: {}",
        auto.stderr
    );

    // max_ttl narrows `creddy get`.
    rig.agent(&ci1, &["get", "test", "--ttl", "1h"])
        .fails(2, "ci-runners");
    let narrow = rig.agent(&ci1, &["get", "test", "--ttl", "10m", "-o", "json"]);
    let narrow: Value = serde_json::from_str(narrow.ok()).unwrap_or_default();
    assert_eq!(narrow["ttl_seconds"], 600);

    // Deny rejects (exit 5), it never falls back to the manual queue.
    let blocked = rig.agent_home("blocked");
    rig.agent(
        &blocked,
        &["enroll", "--name", "blocked-1", "--can", "test"],
    )
    .fails(5, "denied by policy 'no-test': test");
    assert!(rig.pending().is_empty());

    // max_agents: the third ci agent waits for a person, who cannot exceed it either.
    let ci2 = rig.agent_home("ci-2");
    rig.agent(&ci2, &["enroll", "--name", "ci-2", "--can", "test"])
        .ok();
    let ci3 = rig.agent_home("ci-3");
    let waiting = rig.enroll(
        &ci3,
        &["--name", "ci-3", "--can", "test", "--poll-interval", "1s"],
    );
    let id = rig.pending_id("ci-3");
    let reason = rig.pending()[0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("max_agents (2)"), "{reason}");
    rig.site
        .admin(&["approve", &id])
        .fails(1, "already governs 2 agents");
    rig.site.admin(&["reject", &id]).ok();
    finish(waiting).fails(5, "rejected");

    // Agent lifetime from the policy: the agent expires after an hour.
    rig.advance(3_601);
    rig.agent(&ci1, &["status"]).fails(4, "");

    // A flood of requests from one address is rate-limited (12 per minute here; denied
    // names answer at once, and count like any other request).
    let flood = rig.agent_home("flood");
    let mut refused = None;
    // Twice the limit and one: the fixed window may roll over once while the flood runs.
    for i in 0..25 {
        let name = format!("blocked-flood-{i}");
        let run = rig.agent(
            &flood,
            &["enroll", "--name", &name, "--can", "test", "--force"],
        );
        if run.stderr.contains("too many enrollment requests") {
            refused = Some(run);
            break;
        }
    }
    let refused = refused.expect("the per-address limit was reached");
    refused.fails(1, "too many enrollment requests from this address");
    assert!(
        refused.stderr.contains("Hint: retry in"),
        "{}",
        refused.stderr
    );
}

//! Fault tests with real processes (issue #5): `creddy server` processes killed with SIGKILL
//! while minting and while revoking, two servers sharing one PostgreSQL, the Daytona stand-in
//! failing deletes for hours of simulated time, and 429 with `Retry-After`.
//!
//! Time is moved from outside: every server reads its clock as the system time plus the
//! offset in a file (`CREDDY_TEST_CLOCK_FILE`), and the tests write that file. Waiting is
//! always for a condition (a lease state, a key gone), never for an amount of time.
//!
//! After each scenario, [`Rig::assert_settled`] checks the promise of the revocation engine:
//! the stand-in holds no key whose lease has ended, every key was deleted at most once, and
//! no lease is left in a state that nobody will act on.

use std::path::PathBuf;

use creddy_store::{Location, Store, StoredEvent};
use creddy_testkit::plugins::install_as;
use creddy_testkit::postgres::PgCluster;
use creddy_testkit::server::{ServerProcess, StandinProcess};
use creddy_testkit::store::Dialect;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::kit::{ClockFile, bin, creddy, eventually, http};

const MASTER: &str = "dtn_fedcba9876543210fedcba9876543210fedcba9876543210fedcba98765432";

/// The Daytona stand-in, the installed Daytona plugin, the shared clock file and, for
/// PostgreSQL, the database every node uses.
struct Rig {
    home: TempDir,
    cluster: Option<PgCluster>,
    standin: StandinProcess,
    clock: ClockFile,
    http: reqwest::blocking::Client,
}

/// One `creddy server` process.
struct Node {
    process: ServerProcess,
    data_dir: PathBuf,
    admin: String,
    http: reqwest::blocking::Client,
}

impl Rig {
    fn new(dialect: Dialect, config: &str) -> Self {
        let home = TempDir::new().expect("TempDir is created");
        let cluster = (dialect == Dialect::Postgres).then(PgCluster::start);
        std::fs::write(
            home.path().join("creddy.toml"),
            format!("plugins = {{ allow_unsigned = true }}\n{config}"),
        )
        .expect("the file is written");
        let binaries = creddy_testkit::plugins::workspace_binaries(&[
            ("creddy-daytona", "creddy-daytona"),
            ("creddy-daytona-standin", "daytona-standin"),
        ]);
        install_as(&binaries[0], &home.path().join("plugins"), "daytona");
        let standin = StandinProcess::start(&binaries[1], &home.path().join("daytona.json"));
        let clock = ClockFile::new(home.path().join("clock"));
        let rig = Self {
            home,
            cluster,
            standin,
            clock,
            http: http(),
        };
        rig.control(
            "seed",
            &creddy_daytona_standin::master_seed(MASTER, "org-1"),
        );
        rig
    }

    /// Starts (or restarts) node `name`; every node after `a` uses `a`'s master key.
    fn node(&self, name: &str) -> Node {
        let data_dir = self.home.path().join(name);
        let first_key = self.home.path().join("a").join("master.key");
        if name != "a" && !data_dir.exists() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(&data_dir).expect("the directory is made");
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
                .expect("the mode is set");
            let key = data_dir.join("master.key");
            std::fs::copy(&first_key, &key).expect("the file is copied");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .expect("the mode is set");
        }
        let text = |p: PathBuf| p.display().to_string();
        let mut args = vec![
            "--data-dir".to_owned(),
            text(data_dir.clone()),
            "--config".to_owned(),
            text(self.home.path().join("creddy.toml")),
            "--plugin-dir".to_owned(),
            text(self.home.path().join("plugins")),
        ];
        if let Some(cluster) = &self.cluster {
            args.extend(["--database-url".to_owned(), cluster.url()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (home, clock) = (text(self.home.path().into()), self.clock.env_value());
        let process = ServerProcess::start(
            bin(),
            &args,
            &[("HOME", &home), ("CREDDY_TEST_CLOCK_FILE", &clock)],
        )
        .expect("the server starts");
        let admin = std::fs::read_to_string(data_dir.join("admin.token"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        Node {
            process,
            data_dir,
            admin,
            http: self.http.clone(),
        }
    }

    /// Moves every server's clock forward.
    fn advance(&self, seconds: i64) {
        self.clock.advance(seconds);
    }

    fn control(&self, route: &str, body: &Value) {
        let status = self
            .http
            .post(format!("{}/_standin/{route}", self.standin.control_url()))
            .json(body)
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert!((200..300).contains(&status), "{route}: {status}");
    }

    /// Every audit event, read from the node's store.
    fn audit(&self, node: &Node) -> Vec<StoredEvent> {
        let location = match &self.cluster {
            Some(cluster) => Location::Postgres(cluster.url()),
            None => Location::Sqlite(node.data_dir.join("creddy.db")),
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime is built")
            .block_on(async {
                let store = Store::open(location).await.expect("the store opens");
                let events = store.recent_events(100_000).await;
                store.close().await;
                events.expect("the events are read")
            })
    }

    /// Deletes a key with the master key, as an operator would in Daytona's dashboard.
    fn delete_by_hand(&self, name: &str) {
        let status = self
            .http
            .delete(format!("{}/api-keys/{name}", self.standin.api_url))
            .bearer_auth(MASTER)
            .header("X-Daytona-Organization-ID", "org-1")
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert_eq!(status, 204, "deleting {name} by hand");
    }

    fn faults(&self, faults: Value) {
        self.control("faults", &faults);
    }

    fn standin_state(&self) -> Value {
        self.http
            .get(format!("{}/_standin/state", self.standin.control_url()))
            .send()
            .and_then(|r| r.json())
            .expect("the stand-in answers its state")
    }

    /// Names of the keys creddy minted for leases that the stand-in still holds.
    fn live_keys(&self) -> Vec<String> {
        names(&self.standin_state()["keys"], |k| k["name"].as_str())
            .into_iter()
            .filter(|n| n != "master" && !n.contains("-validate-"))
            .collect()
    }

    /// Names of the lease keys the stand-in deleted, in order, with repeats.
    fn deleted_keys(&self) -> Vec<String> {
        names(&self.standin_state()["deleted_keys"], Value::as_str)
            .into_iter()
            .filter(|n| !n.contains("-validate-"))
            .collect()
    }

    /// How many delete calls reached the stand-in for each lease key (found or not).
    fn delete_calls(&self) -> std::collections::BTreeMap<String, usize> {
        let mut calls = std::collections::BTreeMap::new();
        for name in names(&self.standin_state()["delete_calls"], Value::as_str) {
            if !name.contains("-validate-") {
                *calls.entry(name).or_default() += 1;
            }
        }
        calls
    }

    /// The stand-in holds no key of a lease that ended, no key was deleted twice, and every
    /// lease is settled or still live and unexpired (`node` answers for the store).
    fn assert_settled(&self, node: &Node) {
        let leases = node.leases("");
        let all = node
            .leases("?state=pending,active,revoking,revoked,failed,irrevocable,lapsed,forgotten");
        for key in self.live_keys() {
            let owner = all.iter().find(|l| key_of(l) == key);
            assert!(
                owner.is_some_and(|l| l["state"] == "active"),
                "the stand-in holds key {key} of a lease that ended: {owner:?}"
            );
        }
        let mut deleted = self.deleted_keys();
        let count = deleted.len();
        deleted.sort();
        deleted.dedup();
        assert_eq!(deleted.len(), count, "a key was deleted twice: {deleted:?}");
        for lease in &leases {
            assert_eq!(
                lease["state"], "active",
                "a lease left in a state nobody acts on: {lease}"
            );
        }
    }
}

fn names(list: &Value, pick: impl Fn(&Value) -> Option<&str>) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| pick(v).map(str::to_owned))
        .collect()
}

/// The name the Daytona plugin gives a lease's key.
fn key_of(lease: &Value) -> String {
    let id = lease["id"].as_str().unwrap_or_default();
    let agent = lease["agent_name"].as_str().unwrap_or_default();
    format!(
        "creddy-{agent}-{}",
        id.trim_start_matches("cred_").to_ascii_lowercase()
    )
}

impl Node {
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> (u16, Value, Option<String>) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.process.url()))
            .bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, response.json().unwrap_or(Value::Null), retry_after)
    }

    fn admin_get(&self, path: &str) -> Value {
        let (status, body, _) = self.call(reqwest::Method::GET, path, &self.admin, None);
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.process.url()))
            .bearer_auth(&self.admin)
            .send()
            .and_then(|r| r.text())
            .expect("the server answers")
    }

    /// Leases, by the admin API's filters (default: the open ones).
    fn leases(&self, query: &str) -> Vec<Value> {
        self.admin_get(&format!("/v1/admin/tokens{query}"))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn lease(&self, id: &str) -> Value {
        self.admin_get(&format!("/v1/admin/tokens/{id}"))
    }

    fn add_daytona(&self, rig: &Rig) {
        let body = json!({"type": "daytona", "name": "daytona", "config": {
            "api_key": MASTER, "base_url": rig.standin.api_url, "organization_id": "org-1"}});
        let (status, answer, _) = self.call(
            reqwest::Method::POST,
            "/v1/admin/backends",
            &self.admin,
            Some(body),
        );
        assert_eq!(status, 200, "{answer}");
    }

    /// Creates an agent that may use Daytona; returns its vend token.
    fn agent(&self, name: &str) -> String {
        let body = json!({"name": name, "scopes": ["daytona"]});
        let (status, answer, _) = self.call(
            reqwest::Method::POST,
            "/v1/admin/agents",
            &self.admin,
            Some(body),
        );
        assert_eq!(status, 200, "{answer}");
        answer["token"].as_str().unwrap_or_default().to_owned()
    }

    /// A Daytona key for `ttl`; returns the lease id.
    fn vend(&self, token: &str, ttl: &str) -> String {
        let (status, answer, _) = self.call(
            reqwest::Method::POST,
            &format!("/v1/credentials/daytona?ttl={ttl}"),
            token,
            None,
        );
        assert_eq!(status, 200, "{answer}");
        answer["id"].as_str().unwrap_or_default().to_owned()
    }

    fn revoke(&self, id: &str) -> (u16, Value) {
        let (status, body, _) = self.call(
            reqwest::Method::DELETE,
            &format!("/v1/admin/tokens/{id}"),
            &self.admin,
            None,
        );
        (status, body)
    }

    fn wait_for_state(&self, id: &str, state: &str) {
        eventually(&format!("lease {id} to be {state}"), || {
            self.lease(id)["state"] == state
        });
    }

    fn kill(mut self) -> PathBuf {
        self.process.signal_and_wait("KILL");
        self.data_dir
    }
}

/// Two nodes started before any backend exists: a backend added on one is served by the
/// other within a poll or two, with no manual step; removed on the other, it stops on the
/// first. (The delay is measured and printed, not asserted: the poll interval is 2 s.)
#[test]
fn a_backend_added_or_removed_on_one_node_reaches_the_other() {
    let rig = Rig::new(Dialect::Postgres, "");
    let a = rig.node("a");
    let b = rig.node("b");
    let token = a.agent("fleet");
    let vend_on = |node: &Node| {
        node.call(
            reqwest::Method::POST,
            "/v1/credentials/daytona?ttl=1m",
            &token,
            None,
        )
        .0
    };
    assert_eq!(vend_on(&b), 404, "no backend yet");
    a.add_daytona(&rig);
    let added = std::time::Instant::now();
    eventually("node b serves the backend added on node a", || {
        vend_on(&b) == 200
    });
    eprintln!("backend added on a served by b after {:?}", added.elapsed());
    // A plugin reload on a (after an upgrade) reloads b's plugins too.
    let (status, body, _) = a.call(
        reqwest::Method::POST,
        "/v1/admin/plugins/reload",
        &a.admin,
        Some(json!({})),
    );
    assert_eq!(status, 200, "{body}");
    eventually("node b reloads its plugins too", || {
        b.process
            .log()
            .contains("plugins reloaded after a reload on another node")
    });
    assert_eq!(vend_on(&b), 200, "and still serves");
    let (status, body, _) = b.call(
        reqwest::Method::DELETE,
        "/v1/admin/backends/daytona?force=true",
        &b.admin,
        None,
    );
    assert!(status == 204 || status == 202, "{status} {body}");
    let removed = std::time::Instant::now();
    eventually("node a stops serving the backend removed on node b", || {
        vend_on(&a) == 404
    });
    eprintln!(
        "backend removed on b gone from a after {:?}",
        removed.elapsed()
    );
    let backends = a.admin_get("/v1/admin/backends");
    assert_eq!(backends, json!([]), "{backends}");
}

/// A server killed while the upstream had minted a key but not yet answered leaves a
/// `pending` lease; after a restart it is reconciled (the key is found by its name and
/// deleted). Killed before the upstream acted, nothing is minted and the lease ends `failed`.
#[test]
fn a_server_killed_while_minting_leaves_no_orphaned_key() {
    let rig = Rig::new(Dialect::Sqlite, "");
    let node = rig.node("a");
    node.add_daytona(&rig);
    let token = node.agent("minter");

    // Minted upstream, answer still on its way when the server dies.
    rig.faults(json!({"respond_delay_ms": 30_000}));
    let url = node.process.url();
    let vend = |token: String, url: String| {
        std::thread::spawn(move || {
            let _ = http()
                .post(format!("{url}/v1/credentials/daytona?ttl=10m"))
                .bearer_auth(token)
                .send();
        })
    };
    let first = vend(token.clone(), url.clone());
    eventually("the stand-in to mint a key", || rig.live_keys().len() == 1);
    let node_dir = node.kill();
    assert_eq!(node_dir, rig.home.path().join("a"));
    let _ = first.join();
    rig.faults(json!({}));
    let node = rig.node("a");
    let pending = node.leases("?state=pending");
    assert_eq!(
        pending.len(),
        1,
        "the intent survived the crash: {pending:?}"
    );
    let minted_id = pending[0]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(rig.live_keys(), [key_of(&pending[0])]);

    // Killed before the upstream acted.
    rig.faults(json!({"latency_ms": 30_000}));
    let second = vend(token, node.process.url());
    eventually("a second pending lease", || {
        node.leases("?state=pending").len() == 2
    });
    let _ = node.kill();
    let _ = second.join();
    rig.faults(json!({}));
    let node = rig.node("a");

    // Two minutes after the intents, both are reconciled.
    rig.advance(121);
    eventually("both intents reconciled", || {
        node.leases("?state=pending").is_empty()
    });
    assert_eq!(node.lease(&minted_id)["state"], "failed");
    assert!(rig.live_keys().is_empty(), "{:?}", rig.live_keys());
    assert_eq!(
        rig.deleted_keys().len(),
        1,
        "the minted key was deleted once"
    );
    let failed = node.leases("?state=failed");
    assert_eq!(failed.len(), 2, "{failed:?}");
    rig.assert_settled(&node);
}

/// A server killed after the upstream deleted a key but before the revocation was recorded
/// holds a claim that lapses; after a restart the lease is revoked (the key is already gone,
/// which counts as revoked), and the key was deleted once.
#[test]
fn a_server_killed_while_revoking_revokes_after_restart_without_a_second_delete() {
    let rig = Rig::new(Dialect::Sqlite, "");
    let node = rig.node("a");
    node.add_daytona(&rig);
    let token = node.agent("revoker");
    let id = node.vend(&token, "1m");
    let other = node.vend(&token, "1h");
    rig.faults(json!({"respond_delay_ms": 30_000}));
    rig.advance(61);
    eventually("the upstream to delete the expired key", || {
        rig.deleted_keys().len() == 1
    });
    let _ = node.kill();
    rig.faults(json!({}));
    let node = rig.node("a");
    assert_eq!(
        node.lease(&id)["state"],
        "active",
        "the revocation was not recorded before the crash"
    );
    rig.advance(61);
    node.wait_for_state(&id, "revoked");
    assert_eq!(rig.deleted_keys().len(), 1, "deleted once");
    assert_eq!(
        rig.delete_calls().values().collect::<Vec<_>>(),
        [&2],
        "the retry after the restart found the key gone, which counts as revoked"
    );
    assert_eq!(node.lease(&other)["state"], "active");
    rig.assert_settled(&node);
}

/// Two servers share one PostgreSQL. Forty leases fall due; while both revoke them, one
/// server is killed with SIGKILL. Every lease is revoked exactly once: one
/// `credential.revoked` per lease, one upstream delete per key, no key left behind.
#[test]
fn two_servers_on_one_postgres_revoke_every_lease_once_when_one_is_killed() {
    let rig = Rig::new(Dialect::Postgres, "");
    let a = rig.node("a");
    a.add_daytona(&rig);
    let b = rig.node("b");
    let token = a.agent("fleet");
    let ids: Vec<String> = (0..40)
        .map(|i| if i % 2 == 0 { &a } else { &b }.vend(&token, "1m"))
        .collect();
    assert_eq!(rig.live_keys().len(), 40);
    rig.faults(json!({"latency_ms": 150}));
    rig.advance(61);
    eventually("some revocations", || rig.deleted_keys().len() >= 8);
    let _ = a.kill();
    rig.faults(json!({}));
    rig.advance(61);
    eventually("every lease revoked by the surviving node", || {
        b.leases("?state=revoked").len() == 40
    });
    assert!(rig.live_keys().is_empty(), "{:?}", rig.live_keys());
    assert_eq!(rig.deleted_keys().len(), 40, "one delete per key");
    let calls = rig.delete_calls();
    assert_eq!(calls.len(), 40);
    let repeated = calls.values().filter(|n| **n > 1).count();
    assert!(
        calls.values().all(|n| *n <= 2) && repeated <= 8,
        "only deletes in flight on the killed node may be repeated: {calls:?}"
    );
    let events = rig.audit(&b);
    for id in &ids {
        let revoked = events
            .iter()
            .filter(|e| e.action == "credential.revoked" && e.lease_id.as_deref() == Some(id))
            .count();
        assert_eq!(revoked, 1, "one credential.revoked for {id}");
    }
    rig.assert_settled(&b);
}

/// Deletes fail for hours of simulated time. Within the backend's horizon the lease keeps
/// being retried and is revoked once the upstream recovers; beyond it the lease becomes
/// `irrevocable` (listed, counted by the gauge), and the daily retry revokes it later.
#[test]
fn an_upstream_failing_deletes_for_hours_is_ridden_out_and_beyond_the_horizon_retried_daily() {
    let rig = Rig::new(
        Dialect::Sqlite,
        "revocation = { backends = { daytona = { horizon = \"2h\" } } }\n",
    );
    let node = rig.node("a");
    node.add_daytona(&rig);
    let token = node.agent("patient");
    let within = node.vend(&token, "1d");
    let beyond = node.vend(&token, "1d");
    let abandoned = node.vend(&token, "1d");
    rig.faults(json!({"fail_deletes": true}));
    assert_eq!(node.revoke(&within).0, 202);
    let mut attempts = 1;
    for _ in 0..4 {
        rig.advance(20 * 60);
        attempts += 1;
        eventually(&format!("attempt {attempts}"), || {
            node.lease(&within)["attempts"] == attempts
        });
    }
    assert_eq!(node.lease(&within)["state"], "revoking", "80 minutes in");
    rig.faults(json!({}));
    rig.advance(20 * 60);
    node.wait_for_state(&within, "revoked");

    rig.faults(json!({"fail_deletes": true}));
    assert_eq!(node.revoke(&beyond).0, 202);
    assert_eq!(node.revoke(&abandoned).0, 202);
    rig.advance(3 * 3600);
    node.wait_for_state(&beyond, "irrevocable");
    node.wait_for_state(&abandoned, "irrevocable");
    let (url, dir) = (node.process.url(), node.data_dir.display().to_string());
    let admin = |args: &[&str]| {
        let mut full = vec!["--server", url.as_str(), "--data-dir", dir.as_str()];
        full.extend_from_slice(args);
        creddy(rig.home.path(), &full, &[])
    };
    let listed = admin(&["credentials", "ls", "--state", "irrevocable"]);
    assert!(
        listed.ok().contains(&beyond) && listed.stdout.contains(&abandoned),
        "{}",
        listed.stdout
    );
    let retried = admin(&["credentials", "revoke", &abandoned]);
    retried.ok();
    assert!(
        retried
            .stderr
            .contains("is irrevocable; a new revocation attempt was queued"),
        "without --force, one more attempt: {}",
        retried.stderr
    );
    let forgotten = admin(&[
        "credentials",
        "revoke",
        &abandoned,
        "--force",
        "--reason",
        "deleted in the Daytona dashboard",
    ]);
    forgotten.ok();
    assert!(
        forgotten
            .stderr
            .contains(&format!("Stopped retrying {abandoned}")),
        "{}",
        forgotten.stderr
    );
    assert_eq!(node.lease(&abandoned)["state"], "forgotten");
    assert!(
        node.metrics().contains("creddy_leases_irrevocable 1\n"),
        "the gauge rose"
    );
    assert!(
        node.process.log().contains("irrevocable"),
        "an error in the log"
    );
    rig.faults(json!({}));
    rig.advance(86_400);
    node.wait_for_state(&beyond, "revoked");
    assert!(node.metrics().contains("creddy_leases_irrevocable 0\n"));
    let abandoned_key = key_of(&node.lease(&abandoned));
    assert!(
        rig.live_keys().contains(&abandoned_key),
        "a forgotten lease is not retried"
    );
    rig.delete_by_hand(&abandoned_key);
    rig.assert_settled(&node);
}

/// A 429 with `Retry-After` is copied to the agent on a mint (503) and pushes the next
/// revocation attempt at least that far out.
#[test]
fn rate_limits_with_retry_after_are_copied_and_respected() {
    let rig = Rig::new(Dialect::Sqlite, "");
    let node = rig.node("a");
    node.add_daytona(&rig);
    let token = node.agent("throttled");
    let id = node.vend(&token, "10m");
    rig.faults(json!({"rate_limit_retry_after": 600}));
    let (status, body, retry_after) = node.call(
        reqwest::Method::POST,
        "/v1/credentials/daytona",
        &token,
        None,
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("upstream_rate_limited"))
    );
    assert_eq!(retry_after.as_deref(), Some("600"));
    assert_eq!(node.revoke(&id).0, 202);
    let lease = node.lease(&id);
    assert_eq!(lease["last_error"], "upstream_rate_limited");
    let failed = rig
        .audit(&node)
        .into_iter()
        .find(|e| e.action == "credential.revoke_failed")
        .expect("the failed attempt is audited");
    let next = failed.details["next_attempt_at"]
        .as_str()
        .unwrap_or_default();
    let (at, next) = (
        failed.time,
        creddy_core::Timestamp::parse_rfc3339(next).map_or(0, |t| t.as_millis()),
    );
    assert!(
        next - at >= 600_000,
        "the next attempt waits for Retry-After, not the 10 s backoff: {}",
        next - at
    );
    rig.faults(json!({}));
    rig.advance(601);
    node.wait_for_state(&id, "revoked");
    assert_eq!(rig.deleted_keys().len(), 1);
    rig.assert_settled(&node);
}

/// A Daytona key carries its own `expiresAt`. When its deletion keeps failing past the
/// horizon and it has expired upstream anyway, the lease becomes `lapsed` (audited), not
/// `irrevocable`: there is nothing left to revoke.
#[test]
fn a_self_expiring_key_whose_deletion_keeps_failing_lapses_after_the_horizon() {
    let rig = Rig::new(
        Dialect::Sqlite,
        "revocation = { backends = { daytona = { horizon = \"2h\" } } }\n",
    );
    let node = rig.node("a");
    node.add_daytona(&rig);
    let token = node.agent("lapsing");
    let id = node.vend(&token, "1m");
    rig.faults(json!({"fail_deletes": true}));
    rig.advance(61);
    eventually("a first failed attempt", || {
        node.lease(&id)["attempts"] == 1
    });
    rig.advance(2 * 3600);
    node.wait_for_state(&id, "lapsed");
    let lease = node.lease(&id);
    let key = rig.standin_state()["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["name"] == key_of(&lease).as_str())
        .cloned()
        .expect("the key was never deleted");
    let millis = |v: &Value| {
        creddy_core::Timestamp::parse_rfc3339(v.as_str().unwrap_or_default())
            .map(creddy_core::Timestamp::as_millis)
    };
    let (key_expiry, lease_expiry) = (
        millis(&key["expiresAt"]).unwrap_or(i64::MAX),
        millis(&lease["expires_at"]).unwrap_or(0),
    );
    assert!(
        (0..1_000).contains(&(key_expiry - lease_expiry)),
        "the key dies upstream with its lease: {key_expiry} vs {lease_expiry}"
    );
    let events = rig.audit(&node);
    assert!(
        events
            .iter()
            .any(|e| e.action == "credential.lapsed" && e.lease_id.as_deref() == Some(id.as_str())),
        "lapsing is audited"
    );
    assert!(node.leases("").is_empty(), "nothing left to act on");
}

/// Runs 16 clients of `node` that send `request` in a loop and keep what each acknowledged
/// answer identifies, until `at_least` are acknowledged; then kills the node with SIGKILL (in
/// the middle of a batch: the clients are still sending) and returns what was acknowledged.
fn acknowledged_before_a_sigkill(
    node: Node,
    at_least: usize,
    request: impl Fn(&reqwest::blocking::Client) -> Option<String> + Clone + Send + 'static,
) -> Vec<String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (stop, acknowledged, request) = (
                Arc::clone(&stop),
                Arc::clone(&acknowledged),
                request.clone(),
            );
            let http = http();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(id) = request(&http) {
                        acknowledged.lock().expect("the list").push(id);
                    }
                }
            })
        })
        .collect();
    eventually("answers acknowledged under load", || {
        acknowledged.lock().expect("the list").len() >= at_least
    });
    let _ = node.kill();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("the client ends");
    }
    acknowledged.lock().expect("the list").clone()
}

/// Group commit never acknowledges what a crash can take back: tokens issued under load up to
/// a SIGKILL all have their `token.issued` event after the restart, and the chain verifies.
#[test]
fn tokens_acknowledged_before_a_sigkill_all_have_their_audit_events() {
    use base64::Engine as _;
    let rig = Rig::new(
        Dialect::Sqlite,
        "limits = { token_per_client = \"100000/second\" }",
    );
    let node = rig.node("a");
    let token = node.agent("burst");
    let url = format!("{}/oauth/token", node.process.url());
    // A vend token is hex after its prefix: nothing to escape in the form.
    let form = format!("grant_type=client_credentials&client_id=burst&client_secret={token}");
    let acknowledged = acknowledged_before_a_sigkill(node, 300, move |http| {
        let response = http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
            .ok()
            .filter(|r| r.status().as_u16() == 200)?;
        let body = response.json::<Value>().ok()?;
        let claims = body["access_token"]
            .as_str()
            .and_then(|jwt| jwt.split('.').nth(1))
            .and_then(|part| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .ok()
            })
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .expect("a token answer carries a JWT");
        Some(claims["jti"].as_str().expect("a jti").to_owned())
    });
    let node = rig.node("a");
    let recorded: std::collections::HashSet<String> = rig
        .audit(&node)
        .into_iter()
        .filter(|e| e.action == "token.issued")
        .filter_map(|e| e.details["jti"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|jti| !recorded.contains(*jti))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged tokens have no event: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    let verdict = node.admin_get("/v1/admin/audit/verify");
    assert_eq!(verdict["ok"], true, "{verdict}");
    println!(
        "{} tokens acknowledged before the kill, {} token.issued events recorded",
        acknowledged.len(),
        recorded.len()
    );
}

/// The same for vends (their lease writes share transactions too): every credential handed
/// out before a SIGKILL has an `active` lease and its `credential.issued` event after the
/// restart, on SQLite and PostgreSQL, and the chain verifies.
#[test]
fn vends_acknowledged_before_a_sigkill_all_have_active_leases_and_events() {
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let rig = Rig::new(
            dialect,
            "limits = { vend_per_agent = \"100000/second\", max_active_leases_per_agent = 100000 }",
        );
        let node = rig.node("a");
        node.add_daytona(&rig);
        let token = node.agent("burst");
        let url = format!("{}/v1/credentials/daytona?ttl=1h", node.process.url());
        let acknowledged = acknowledged_before_a_sigkill(node, 200, move |http| {
            let response = http
                .post(&url)
                .bearer_auth(&token)
                .send()
                .ok()
                .filter(|r| r.status().as_u16() == 200)?;
            let body = response.json::<Value>().ok()?;
            Some(body["id"].as_str().expect("a lease id").to_owned())
        });
        let node = rig.node("a");
        let issued: std::collections::HashSet<String> = rig
            .audit(&node)
            .into_iter()
            .filter(|e| e.action == "credential.issued")
            .filter_map(|e| e.lease_id)
            .collect();
        for id in &acknowledged {
            assert!(
                issued.contains(id),
                "{dialect:?}: lease {id} has no credential.issued"
            );
            let lease = node.lease(id);
            assert_eq!(lease["state"], "active", "{dialect:?}: {lease}");
        }
        let verdict = node.admin_get("/v1/admin/audit/verify");
        assert_eq!(verdict["ok"], true, "{dialect:?}: {verdict}");
        println!(
            "{dialect:?}: {} vends acknowledged before the kill, {} credential.issued events recorded",
            acknowledged.len(),
            issued.len()
        );
    }
}

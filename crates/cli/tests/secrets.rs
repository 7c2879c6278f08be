//! No secret in an audit row, a log line or an error body (issue #7): one scenario with a
//! real server process creates a secret of every kind, provokes errors around each, and
//! scans the server's log, the whole audit trail and every error body for all of them.

use creddy_testkit::store::Dialect;
use serde_json::{Value, json};

use crate::kit::{Site, http};

const UPSTREAM_KEY: &str = "upstream-master-key-secret-scan-0123456789";

#[test]
fn no_secret_reaches_a_log_line_an_audit_record_or_an_error_body() {
    let site = Site::start_blocking(Dialect::Sqlite, &[]);
    site.install_test_plugin("test");
    let state = format!("state_dir={}", site.upstream().display());
    let key = format!("api_key={UPSTREAM_KEY}");
    let added = site.admin(&["backend", "add", "test", "--set", &key, "--set", &state]);
    added.ok();
    assert!(
        added.stderr.contains("Warning: --set api_key=")
            && added.stderr.contains("use --set-file api_key=PATH"),
        "a secret given with --set is warned about: {}",
        added.stderr
    );
    assert!(!added.stderr.contains(UPSTREAM_KEY), "{}", added.stderr);
    let url = site.server.url();
    let client = http();
    let mut secrets: Vec<String> = vec![
        UPSTREAM_KEY.to_owned(),
        site.admin_token(),
        std::fs::read_to_string(site.data_dir.join("master.key"))
            .unwrap_or_default()
            .trim()
            .to_owned(),
    ];
    let error_bodies: std::cell::RefCell<Vec<String>> = std::cell::RefCell::default();
    let call = |method: reqwest::Method, path: &str, bearer: Option<&str>, body: Option<Value>| {
        let mut request = client.request(method, format!("{url}{path}"));
        if let Some(b) = bearer {
            request = request.bearer_auth(b);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("the server answers");
        let ok = response.status().is_success();
        let text = response.text().unwrap_or_default();
        if !ok {
            error_bodies.borrow_mut().push(text.clone());
        }
        serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
    };

    // An admin-created agent: vend token and client secret.
    let created = site.admin(&["agent", "create", "scanner", "--can", "test", "-o", "json"]);
    let created: Value = serde_json::from_str(created.ok()).unwrap_or_default();
    let vend = created["token"].as_str().unwrap_or_default().to_owned();
    let client_secret = created["oidc"]["client_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let client_id = created["oidc"]["client_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    secrets.extend([vend.clone(), client_secret.clone()]);

    // A credential.
    let issued = call(
        reqwest::Method::POST,
        "/v1/credentials/test",
        Some(&vend),
        None,
    );
    secrets.push(issued["token"].as_str().unwrap_or_default().to_owned());
    call(
        reqwest::Method::POST,
        "/v1/credentials/test?ttl=99d",
        Some(&vend),
        None,
    );
    call(
        reqwest::Method::POST,
        "/v1/credentials/test?scope=test:write",
        Some(&vend),
        None,
    );
    call(reqwest::Method::GET, "/v1/admin/agents", Some(&vend), None);

    // OIDC tokens, and client credentials rejected.
    let form = format!(
        "grant_type=client_credentials&client_id={client_id}&client_secret={client_secret}"
    );
    let tokens: Value = client
        .post(format!("{url}/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .and_then(|r| r.json())
        .unwrap_or_default();
    secrets.push(
        tokens["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    secrets.push(tokens["id_token"].as_str().unwrap_or_default().to_owned());
    let wrong_secret = format!("{}x", &client_secret[..client_secret.len() - 1]);
    let refused = client
        .post(format!("{url}/oauth/token"))
        .basic_auth(&client_id, Some(&wrong_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    error_bodies.borrow_mut().push(refused);
    secrets.push(wrong_secret.clone());
    // The same token with its last character changed (to one it surely is not).
    let last = if vend.ends_with('0') { "1" } else { "0" };
    let wrong_vend = format!("{}{last}", &vend[..vend.len() - 1]);
    call(reqwest::Method::GET, "/v1/status", Some(&wrong_vend), None);
    secrets.push(wrong_vend);

    // An enrollment: the poll secret (also in the query string form) and the pickup.
    let asked = call(
        reqwest::Method::POST,
        "/v1/enroll",
        None,
        Some(json!({"name": "enrolled", "scopes": ["test"]})),
    );
    let poll = asked["secret"].as_str().unwrap_or_default().to_owned();
    secrets.push(poll.clone());
    let id = asked["id"].as_str().unwrap_or_default().to_owned();
    site.admin(&["approve", &id]).ok();
    let picked = call(
        reqwest::Method::GET,
        &format!("/v1/enroll/status?secret={poll}"),
        None,
        None,
    );
    secrets.push(picked["token"].as_str().unwrap_or_default().to_owned());
    secrets.push(
        picked["oidc"]["client_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    call(
        reqwest::Method::GET,
        &format!("/v1/enroll/status?secret={poll}"),
        None,
        None,
    );

    // The admin token sent where it does not belong.
    let admin = site.admin_token();
    call(reqwest::Method::GET, "/v1/status", Some(&admin), None);

    secrets.retain(|s| s.len() >= 16);
    assert!(
        secrets.len() >= 12,
        "every kind of secret was created: {}",
        secrets.len()
    );
    let audit = site.admin(&["audit", "--limit", "1000", "-o", "json"]);
    let audit_text = audit.ok().to_owned();
    assert!(
        audit_text.contains("auth.failed"),
        "rejected credentials are audited"
    );
    assert!(audit_text.contains("token.issued"));
    let log = site.server.log();
    assert!(
        log.contains("credential issued"),
        "the log was captured: {log}"
    );
    let error_bodies = error_bodies.into_inner();
    assert!(error_bodies.len() >= 7, "{error_bodies:?}");
    for secret in &secrets {
        assert!(
            !audit_text.contains(secret.as_str()),
            "a secret in the audit trail"
        );
        assert!(!log.contains(secret.as_str()), "a secret in the server log");
        for body in &error_bodies {
            assert!(
                !body.contains(secret.as_str()),
                "a secret in an error body: {body}"
            );
        }
    }
}

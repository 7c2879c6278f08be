//! The OpenAPI document: built from the routes and `creddy-api`, committed as
//! `docs/openapi.json`, and served at `GET /v1/openapi.json`. Refresh the copy after
//! changing a route or a wire type with `CREDDY_BLESS_OPENAPI=1 cargo nextest run -p
//! creddy-server openapi`. (Responses are checked against it by schemathesis in CI:
//! `.ci/schemathesis`.)

use std::path::PathBuf;

use creddy_server::http::openapi::document_json;
use creddy_testkit::http::Api;
use creddy_testkit::server::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::Value;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[test]
fn the_committed_document_is_current() {
    let path = committed_path();
    if std::env::var_os("CREDDY_BLESS_OPENAPI").is_some() {
        std::fs::write(&path, format!("{}\n", document_json()))
            .expect("docs/openapi.json is writable");
    }
    let committed = std::fs::read_to_string(&path).expect("docs/openapi.json exists");
    assert!(
        committed.trim_end() == document_json(),
        "docs/openapi.json is stale: a route or a wire type changed; refresh it with \
         CREDDY_BLESS_OPENAPI=1 cargo nextest run -p creddy-server openapi, and review the diff"
    );
}

#[test]
fn every_operation_documents_its_errors_and_its_security() {
    let document: Value = serde_json::from_str(document_json()).expect("the document is JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 30, "{} paths", paths.len());
    let mut operation_ids = std::collections::BTreeSet::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                operation_ids.insert(id.to_owned()),
                "operationId '{id}' of {method} {path} is not unique"
            );
            let responses = operation["responses"].as_object().expect("responses");
            let name = format!("{method} {path}");
            assert!(responses.contains_key("500"), "{name} lacks 500");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{name} documents no success"
            );
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            let admin = path.starts_with("/v1/admin") || path == "/metrics";
            if admin {
                assert!(secured, "{name}: an admin route without bearer security");
            }
            if secured {
                assert!(responses.contains_key("401"), "{name} lacks 401");
            }
            if path.contains('{') {
                assert!(responses.contains_key("404"), "{name} lacks 404");
            }
        }
    }
    for schema in ["ErrorBody", "Credential", "Lease", "EnrollAnswer", "Agent"] {
        assert!(
            document["components"]["schemas"].get(schema).is_some(),
            "no {schema} schema"
        );
    }
}

creddy_testkit::dialects!(TestServer::start =>
    the_server_serves_the_committed_document,
);

async fn the_server_serves_the_committed_document(server: TestServer) {
    let api = Api::new(&server.url());
    let answer = api.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(committed_path()).expect("docs/openapi.json exists"),
    )
    .expect("the committed document is JSON");
    assert!(
        answer.body == committed,
        "GET /v1/openapi.json differs from docs/openapi.json"
    );
}

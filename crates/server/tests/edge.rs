//! The HTTP edge: one error shape everywhere, request ids, body limits, public routes.

use creddy_testkit::http::Api;
use creddy_testkit::server::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

creddy_testkit::dialects!(TestServer::start =>
    health_is_minimal_for_the_public_and_detailed_for_admins,
    every_error_has_the_standard_shape,
    malformed_json_is_refused_naming_the_field,
    oversized_bodies_get_413,
    request_ids_are_generated_or_echoed,
    routes_kept_for_compatibility_answer_501,
    malformed_percent_escapes_in_a_form_get_the_field_s_own_refusal,
);

/// A form with broken percent escapes (`%zz`, a lone `%`, bytes that are not UTF-8) is
/// decoded leniently, as `application/x-www-form-urlencoded` decoders do, and then refused by
/// the check of the field it spoils: never a 5xx, never a token.
async fn malformed_percent_escapes_in_a_form_get_the_field_s_own_refusal(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    let created = api.create_agent(&admin, "former", &["test"]).await;
    let client_id = created["oidc"]["client_id"].as_str().unwrap_or_default();
    for (body, status, error) in [
        (
            "grant_type=client_credentials%zz".to_owned(),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            format!("grant_type=client_credentials&client_id={client_id}&client_secret=%"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            format!("grant_type=client_credentials&client_id={client_id}&client_secret=%ff%fe"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
    ] {
        let request = api
            .request(Method::POST, "/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
        let answer = api.send(request).await;
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (status, Some(error)),
            "{body}: {}",
            answer.text
        );
    }
}

async fn health_is_minimal_for_the_public_and_detailed_for_admins(server: TestServer) {
    let api = Api::new(&server.url());
    let public = api.call(Method::GET, "/health", None, None).await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(
        public.body,
        json!({"status": "ok"}),
        "nothing about the server leaks"
    );
    let admin = api.get("/health", &server.admin_token()).await;
    assert_eq!(admin.body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(admin.body["agents"], 0);
    for field in [
        "backends",
        "pending",
        "leases",
        "irrevocable",
        "uptime_seconds",
    ] {
        assert!(
            admin.body[field].as_u64().is_some(),
            "{field}: {}",
            admin.text
        );
    }
    let ready = api.call(Method::GET, "/ready", None, None).await;
    assert_eq!(
        (ready.status, ready.body["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
}

async fn every_error_has_the_standard_shape(server: TestServer) {
    let api = Api::new(&server.url());
    let token = server.admin_token();
    let cases = [
        (
            Method::GET,
            "/nope",
            Some(token.as_str()),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::PUT,
            "/health",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::PATCH,
            "/v1/admin/agents",
            Some(token.as_str()),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/v1/admin/agents",
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            Method::GET,
            "/v1/admin/agents/ghost",
            Some(token.as_str()),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/v1/admin/agents/bad%2Fname",
            Some(token.as_str()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (method, path, token, status, code) in cases {
        let answer = api.call(method.clone(), path, token, None).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.text);
        assert_eq!(answer.code(), code, "{method} {path}");
        assert!(!answer.error().is_empty(), "{method} {path} has a message");
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
    }
}

async fn malformed_json_is_refused_naming_the_field(server: TestServer) {
    let api = Api::new(&server.url());
    let token = server.admin_token();
    let syntax = api
        .send(
            api.request(Method::POST, "/v1/admin/agents")
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{\"name\": "),
        )
        .await;
    assert_eq!(
        (syntax.status, syntax.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let wrong_type = api
        .post(
            "/v1/admin/agents",
            &token,
            json!({"name": "a", "scopes": "daytona"}),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    assert!(
        wrong_type.error().contains("scopes"),
        "{}",
        wrong_type.error()
    );
    let missing = api
        .post("/v1/admin/agents", &token, json!({"scopes": ["daytona"]}))
        .await;
    assert!(missing.error().contains("name"), "{}", missing.error());
    let not_json = api
        .send(
            api.request(Method::POST, "/v1/admin/agents")
                .bearer_auth(&token)
                .body("name=a"),
        )
        .await;
    assert_eq!(not_json.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(not_json.code(), "unsupported_media_type");
}

async fn oversized_bodies_get_413(server: TestServer) {
    let api = Api::new(&server.url());
    let huge = json!({"name": "big", "scopes": ["daytona"], "pad": "x".repeat(70 * 1024)});
    let answer = api
        .post("/v1/admin/agents", &server.admin_token(), huge)
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.code(), "payload_too_large");
    let agents = api.get("/v1/admin/agents", &server.admin_token()).await;
    assert_eq!(agents.body, json!([]), "nothing was created");
}

async fn request_ids_are_generated_or_echoed(server: TestServer) {
    let api = Api::new(&server.url());
    let generated = api.call(Method::GET, "/nope", None, None).await;
    let id = generated.header("x-request-id").unwrap_or_default();
    assert!(id.starts_with("req_") && id.len() == 30, "{id}");
    let echoed = api
        .send(
            api.request(Method::GET, "/health")
                .header("x-request-id", "trace-42"),
        )
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("trace-42"));
}

async fn routes_kept_for_compatibility_answer_501(server: TestServer) {
    let api = Api::new(&server.url());
    let admin = server.admin_token();
    for (method, path) in [
        (Method::GET, "/v1/signing-key"),
        (Method::GET, "/v1/proxy/daytona/api/sandbox"),
        (Method::POST, "/v1/proxy/daytona/api/sandbox"),
        (Method::GET, "/api/v1/admin/agents"),
        (Method::POST, "/api/v1/credentials/daytona"),
    ] {
        let answer = api.call(method.clone(), path, Some(&admin), None).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::NOT_IMPLEMENTED, "not_implemented"),
            "{method} {path}: {}",
            answer.text
        );
        assert!(answer.error().contains("is not offered"), "{}", answer.text);
    }
}

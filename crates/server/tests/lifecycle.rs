//! Start, restart and shutdown: the admin token, the data directory lock, draining.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use creddy_server::StartError;
use creddy_testkit::http::Api;
use creddy_testkit::server::TestServer;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

creddy_testkit::dialects!(TestServer::start =>
    the_admin_token_is_private_and_stable_across_restarts,
    a_deleted_admin_token_is_replaced_at_the_next_start,
    a_second_server_on_the_same_data_dir_is_refused,
    shutdown_lets_an_in_flight_request_finish,
);

async fn the_admin_token_is_private_and_stable_across_restarts(mut server: TestServer) {
    let path = server.settings.data_dir.join("admin.token");
    let mode = std::fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(&server.settings.data_dir)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(dir_mode, 0o700);
    let before = server.admin_token();
    assert!(before.starts_with("cka_") && before.len() == 52);
    server.restart().await;
    assert_eq!(server.admin_token(), before, "kept across restarts");
    let api = Api::new(&server.url());
    assert_eq!(
        api.get("/v1/admin/agents", &before).await.status,
        StatusCode::OK
    );
    let events = server.audit_events().await;
    let created = events
        .iter()
        .filter(|e| e.action == "admin_token.created")
        .count();
    assert_eq!(created, 1, "created once, audited once");
}

async fn a_deleted_admin_token_is_replaced_at_the_next_start(mut server: TestServer) {
    let old = server.admin_token();
    server.stop().await;
    std::fs::remove_file(server.settings.data_dir.join("admin.token")).unwrap_or_default();
    server.restart().await;
    let new = server.admin_token();
    assert_ne!(new, old);
    let api = Api::new(&server.url());
    assert_eq!(
        api.get("/v1/admin/agents", &old).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.get("/v1/admin/agents", &new).await.status,
        StatusCode::OK
    );
}

async fn a_second_server_on_the_same_data_dir_is_refused(server: TestServer) {
    match server.start_twin().await {
        Err(e @ StartError::DataDir(_)) => {
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("another creddy server"), "{e}");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a second server started on a locked data directory"),
    }
}

async fn shutdown_lets_an_in_flight_request_finish(mut server: TestServer) {
    let addr = server.server().addr();
    let body = br#"{"name":"late","scopes":["daytona"]}"#;
    let head = format!(
        "POST /v1/admin/agents HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        server.admin_token(),
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the connection is made");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("the bytes are written");
    stream
        .write_all(&body[..10])
        .await
        .expect("the bytes are written");
    // The request is now in flight: headers read, body incomplete. Begin shutdown.
    let stopping = tokio::spawn(async move {
        server.stop().await;
        server
    });
    tokio::task::yield_now().await;
    stream
        .write_all(&body[10..])
        .await
        .expect("the bytes are written");
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap_or_else(|_| panic!("no response"))
    .expect("the response is read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"name\":\"late\""), "{response}");
    let server = stopping.await.expect("the server stops");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
    drop(server);
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_disconnected() {
    let server = TestServer::start_with(creddy_testkit::store::Dialect::Sqlite, |s| {
        s.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = server.server().addr();
    let mut slow = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the connection is made");
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("the bytes are written");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the server kept a connection with unfinished headers open"
    );
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"));
    let api = Api::new(&server.url());
    assert_eq!(
        api.call(reqwest::Method::GET, "/health", None, None)
            .await
            .status,
        StatusCode::OK,
        "other clients are served"
    );
}

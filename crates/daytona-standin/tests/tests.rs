//! The stand-in checked by a client nobody here wrote: Daytona's own Python client.

use std::process::Command;
use std::sync::Arc;

use creddy_core::SystemClock;
use creddy_daytona_standin::{State, router};

#[tokio::test]
async fn daytonas_python_client_parses_every_response() {
    let mut state = State::default();
    let everything: Vec<&str> = creddy_daytona_standin::PERMISSIONS.to_vec();
    state.seed_key(
        "master",
        "dtn_conformance_master",
        &everything,
        "org-1",
        "2026-01-01T00:00:00.000Z",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port is free");
    let addr = listener.local_addr().expect("the listener has an address");
    tokio::spawn(async move { axum::serve(listener, router(state, Arc::new(SystemClock))).await });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/client_conformance.py");
    let base = format!("http://{addr}/api");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([script, &base, "dtn_conformance_master", "org-1"])
            .output()
    })
    .await
    .expect("the blocking task ends")
    .unwrap_or_else(|e| panic!("python3: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("conformance: ok"), "{stdout}");
}

//! Backends and the vend path, with the scriptable test plugin as a real child process.

use creddy_testkit::http::{Answer, Api};
use creddy_testkit::plugins::script;
use creddy_testkit::server::TestServer;
use creddy_testkit::store::Dialect;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod backends;
mod issue;
mod revocation;

const MASTER_KEY: &str = "master-key-of-the-test-upstream";

struct Site {
    server: TestServer,
    api: Api,
    admin: String,
}

impl Site {
    async fn new(server: TestServer) -> Self {
        server.install_test_plugin("test");
        let api = Api::new(&server.url());
        let admin = server.admin_token();
        Self { server, api, admin }
    }

    fn upstream(&self) -> std::path::PathBuf {
        self.server.scratch().join("upstream")
    }

    async fn add_backend(&self, name: &str, api_key: &str) -> Answer {
        self.api
            .add_test_backend(&self.admin, name, api_key, &self.upstream())
            .await
    }

    async fn agent(&self, name: &str, scopes: &[&str]) -> String {
        let answer = self
            .api
            .post(
                "/v1/admin/agents",
                &self.admin,
                json!({"name": name, "scopes": scopes}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.body["token"].as_str().unwrap_or_default().to_owned()
    }

    async fn vend(&self, token: &str, query: &str) -> Answer {
        self.api
            .call(
                Method::POST,
                &format!("/v1/credentials/test{query}"),
                Some(token),
                None,
            )
            .await
    }

    /// The restart counter of the `test` backend's plugin.
    fn plugin_restarts(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.server
            .server()
            .state()
            .backends()
            .get("test")
            .and_then(|b| b.process.clone().ok())
            .map(|p| p.restarts())
    }

    fn revoked_upstream(&self) -> usize {
        std::fs::read_dir(self.upstream().join("revoked"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

async fn ready(server: TestServer) -> (Site, String) {
    let site = Site::new(server).await;
    let added = site.add_backend("test", MASTER_KEY).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    let token = site.agent("ci-agent", &["test"]).await;
    (site, token)
}

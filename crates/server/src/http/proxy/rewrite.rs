//! What the proxy changes in Daytona's answers so that the SDKs keep talking to creddy
//! (design notes B2, B3): `toolboxProxyUrl` in Sandbox bodies (one sandbox, a list, or a
//! page's `items`) and `url` in `/sandbox/{id}/toolbox-proxy-url` answers become the creddy
//! route of that toolbox (`…/_tb/{tid}`), learned only for hosts the backend allows;
//! `analyticsApiUrl` in `/config` is blanked (the SDKs then read metrics through the API).
//! Any occurrence of the injected credential in a text answer is replaced by the placeholder.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The toolbox base URLs learned from answers, by the short id their route carries.
#[derive(Debug, Default, Clone)]
pub struct Toolboxes {
    /// Host patterns allowed (`*.daytona.io`, `proxy.example.com`), or exact `host:port`.
    allowed: Vec<String>,
    /// Whether plain `http://` toolboxes are allowed (only when the API itself is loopback
    /// http, as in tests and local installs).
    plain_http: bool,
    learned: BTreeMap<String, reqwest::Url>,
}

impl Toolboxes {
    /// A set allowing `allowed` host patterns.
    pub fn new(allowed: Vec<String>, plain_http: bool) -> Self {
        Self {
            allowed,
            plain_http,
            learned: BTreeMap::new(),
        }
    }

    fn host_allowed(&self, url: &reqwest::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let with_port = url
            .port()
            .map_or_else(|| host.to_owned(), |p| format!("{host}:{p}"));
        self.allowed
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => pattern == host || *pattern == with_port,
            })
    }

    /// The route id of a toolbox URL seen in an answer, learning it; `None` when its scheme
    /// or host is not allowed (then the agent never gets a route to it).
    pub fn learn(&mut self, text: &str) -> Option<String> {
        let url = reqwest::Url::parse(text).ok()?;
        let scheme_ok = url.scheme() == "https" || (self.plain_http && url.scheme() == "http");
        if !scheme_ok
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || !self.host_allowed(&url)
        {
            return None;
        }
        let id = hex::encode(&Sha256::digest(url.as_str().as_bytes())[..6]);
        self.learned.insert(id.clone(), url);
        Some(id)
    }

    /// The toolbox URL of a route id.
    pub fn get(&self, id: &str) -> Option<&reqwest::Url> {
        self.learned.get(id)
    }
}

/// Rewrites a JSON answer of `path` (relative to the API base) for the agent: toolbox URLs
/// to `{route_base}/_tb/{tid}` (blank when not allowed), `analyticsApiUrl` blanked.
pub fn rewrite_answer(path: &str, body: &mut Value, route_base: &str, toolboxes: &mut Toolboxes) {
    let mut route = |text: &str| {
        toolboxes
            .learn(text)
            .map(|id| format!("{route_base}/_tb/{id}"))
            .unwrap_or_default()
    };
    if path == "/config" {
        if let Some(analytics) = body.get_mut("analyticsApiUrl") {
            *analytics = Value::String(String::new());
        }
        return;
    }
    if path.ends_with("/toolbox-proxy-url") {
        if let Some(Value::String(url)) = body.get_mut("url") {
            *url = route(url);
        }
        return;
    }
    let sandboxes: Vec<&mut Value> = match body {
        Value::Array(items) => items.iter_mut().collect(),
        Value::Object(map) if map.contains_key("items") => match map.get_mut("items") {
            Some(Value::Array(items)) => items.iter_mut().collect(),
            _ => Vec::new(),
        },
        other => vec![other],
    };
    for sandbox in sandboxes {
        if let Some(Value::String(url)) = sandbox.get_mut("toolboxProxyUrl")
            && !url.is_empty()
        {
            *url = route(url);
        }
    }
}

/// `text` with every occurrence of `secret` replaced by `placeholder`.
pub fn redact(text: &str, secret: &str, placeholder: &str) -> String {
    if secret.is_empty() {
        return text.to_owned();
    }
    text.replace(secret, placeholder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn toolboxes() -> Toolboxes {
        Toolboxes::new(vec!["*.daytona.io".into(), "127.0.0.1:9000".into()], false)
    }

    const ROUTE: &str = "http://creddy:8400/v1/proxy/daytona";

    #[test]
    fn toolbox_urls_of_every_sandbox_shape_become_creddy_routes() {
        let mut boxes = toolboxes();
        let url = "https://proxy.app.daytona.io/toolbox";
        for mut body in [
            json!({"id": "s1", "toolboxProxyUrl": url}),
            json!([{"id": "s1", "toolboxProxyUrl": url}]),
            json!({"items": [{"id": "s1", "toolboxProxyUrl": url}], "total": 1}),
        ] {
            rewrite_answer("/sandbox", &mut body, ROUTE, &mut boxes);
            let text = body.to_string();
            assert!(!text.contains("proxy.app.daytona.io"), "{text}");
            assert!(text.contains(&format!("{ROUTE}/_tb/")), "{text}");
        }
        let id = boxes.learn(url).expect("allowed");
        assert_eq!(boxes.get(&id).map(reqwest::Url::as_str), Some(url));
        let mut answer = json!({"url": url});
        rewrite_answer(
            "/sandbox/s1/toolbox-proxy-url",
            &mut answer,
            ROUTE,
            &mut boxes,
        );
        assert_eq!(answer["url"], format!("{ROUTE}/_tb/{id}"));
        let mut config = json!({"analyticsApiUrl": "https://analytics.daytona.io", "x": 1});
        rewrite_answer("/config", &mut config, ROUTE, &mut boxes);
        assert_eq!(config["analyticsApiUrl"], "");
        assert_eq!(config["x"], 1);
    }

    #[test]
    fn toolbox_hosts_outside_the_allow_list_get_no_route() {
        let mut boxes = toolboxes();
        for url in [
            "https://169.254.169.254/latest",
            "https://evil.example/toolbox",
            "https://daytona.io.evil.example/toolbox",
            "http://proxy.app.daytona.io/toolbox",
            "https://user:pw@proxy.app.daytona.io/toolbox",
            "https://127.0.0.1:9001/toolbox",
            "not a url",
        ] {
            assert_eq!(boxes.learn(url), None, "{url}");
            let mut body = json!({"toolboxProxyUrl": url});
            rewrite_answer("/sandbox/s1", &mut body, ROUTE, &mut boxes);
            assert_eq!(body["toolboxProxyUrl"], "", "{url}");
        }
        assert!(boxes.learn("https://127.0.0.1:9000/toolbox").is_some());
    }

    #[test]
    fn the_injected_credential_is_never_reflected() {
        let echoed = r#"{"headers":{"authorization":"Bearer dtn_real"},"again":"dtn_real"}"#;
        let shown = redact(echoed, "dtn_real", "ckp_placeholder");
        assert!(!shown.contains("dtn_real"), "{shown}");
        assert_eq!(shown.matches("ckp_placeholder").count(), 2);
    }
}

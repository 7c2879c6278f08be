//! The headers that cross the proxy, in each direction (design notes B3, B4).
//!
//! Towards the upstream: hop-by-hop headers, every header the client's `Connection` names,
//! `Host`, `Content-Length` (the upstream request is framed again), the client's
//! `Authorization`, `Cookie`, `Proxy-*`, `Forwarded`, `X-Forwarded-*`, `X-Real-IP` and
//! `X-Daytona-Organization-ID` are dropped; the real credential is set last, so nothing the
//! client sends (`Connection: Authorization` included) can remove or replace it. Towards the
//! agent: hop-by-hop and `Connection`-listed headers and `Set-Cookie` are dropped, and the
//! answer is marked `Cache-Control: no-store`.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

/// Hop-by-hop headers (RFC 9110 §7.6.1, and the legacy ones).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Credential and forwarding headers never passed upstream.
const NEVER_UPSTREAM: [&str; 7] = [
    "host",
    "content-length",
    "authorization",
    "cookie",
    "forwarded",
    "x-real-ip",
    "x-daytona-organization-id",
];

/// The header names a `Connection` header lists.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Whether `name` is dropped in both directions.
fn hop(name: &str, listed: &[String]) -> bool {
    HOP_BY_HOP.contains(&name) || listed.iter().any(|l| l == name)
}

/// The headers sent upstream for a client request, with `Authorization: Bearer <secret>`
/// set last.
pub fn to_upstream(incoming: &HeaderMap, secret: &str) -> HeaderMap {
    let listed = connection_listed(incoming);
    let mut out = HeaderMap::new();
    for (name, value) in incoming {
        let text = name.as_str();
        if hop(text, &listed)
            || NEVER_UPSTREAM.contains(&text)
            || text.starts_with("proxy-")
            || text.starts_with("x-forwarded-")
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {secret}")) {
        let mut value = value;
        value.set_sensitive(true);
        out.insert(header::AUTHORIZATION, value);
    }
    out
}

/// The headers passed back to the agent from an upstream answer.
pub fn to_agent(upstream: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(upstream);
    let mut out = HeaderMap::new();
    for (name, value) in upstream {
        let text = name.as_str();
        if hop(text, &listed) || name == header::SET_COOKIE || name == header::CONTENT_LENGTH {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out
}

/// The name, for tests and messages.
pub fn name(text: &'static str) -> HeaderName {
    HeaderName::from_static(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(name(n), HeaderValue::from_str(v).expect("a value"));
        }
        map
    }

    #[test]
    fn credentials_forwarding_and_hop_by_hop_headers_never_go_upstream() {
        let incoming = headers(&[
            ("authorization", "Bearer ckp_placeholder"),
            ("cookie", "session=1"),
            ("proxy-authorization", "Basic x"),
            ("connection", "keep-alive, X-Secret-Thing, Authorization"),
            ("x-secret-thing", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-host", "evil.example"),
            ("x-real-ip", "1.2.3.4"),
            ("x-daytona-organization-id", "other-org"),
            ("host", "evil.example"),
            ("content-length", "5"),
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("x-daytona-source", "sdk-python"),
            ("x-daytona-sdk-version", "0.226.1"),
        ]);
        let out = to_upstream(&incoming, "dtn_real");
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "accept",
                "x-daytona-source",
                "x-daytona-sdk-version",
                "authorization"
            ]
        );
        assert_eq!(out.get_all("authorization").iter().count(), 1);
        assert_eq!(
            out["authorization"], "Bearer dtn_real",
            "injected always wins"
        );
        assert!(out["authorization"].is_sensitive());
    }

    #[test]
    fn cookies_and_hop_by_hop_headers_never_reach_the_agent() {
        let upstream = headers(&[
            ("set-cookie", "tracking=1"),
            ("connection", "close, X-Internal"),
            ("x-internal", "1"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
            ("retry-after", "3"),
            ("cache-control", "max-age=600"),
        ]);
        let out = to_agent(&upstream);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "retry-after", "cache-control"]);
        assert_eq!(out["cache-control"], "no-store");
    }
}

//! The upstream URL of a proxied call, built so that nothing an agent sends can change the
//! host or leave the backend's base path (`../shared/design/proxy-and-console.md` §0.7, B4).
//!
//! `Url::join` and string concatenation are never used: measured, `//evil.example/x`,
//! `\\evil.example/x` and absolute URLs switch host, and `/sandbox`, `../x`, `%2e%2e/x`
//! escape `/api`. Each raw segment is checked (not empty, not `.` or `..`, no leading `@`),
//! percent-decoded and checked again (no `/`, `\`, NUL or control characters, not `.` or
//! `..`), appended with `path_segments_mut` (which encodes it again), and the built URL must
//! still have the base's origin and start with its path.

use std::fmt;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError(String);

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PathError {}

/// The most segments a proxied path may have.
pub const MAX_SEGMENTS: usize = 32;
/// The longest raw path accepted.
pub const MAX_PATH_BYTES: usize = 2_048;

fn refuse(why: &str) -> PathError {
    PathError(format!("the proxied path {why}"))
}

/// Checks one raw segment and returns it decoded.
fn segment(raw: &str, first: bool) -> Result<String, PathError> {
    if raw.is_empty() {
        return Err(refuse("has an empty segment ('//')"));
    }
    if raw == "." || raw == ".." {
        return Err(refuse("has a '.' or '..' segment"));
    }
    if first && raw.starts_with('@') {
        return Err(refuse("starts with '@'"));
    }
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| refuse("has a segment that is not UTF-8 once decoded"))?;
    if decoded == "." || decoded == ".." {
        return Err(refuse("has an encoded '.' or '..' segment"));
    }
    if decoded
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(refuse(
            "has a segment holding '/', '\\' or a control character once decoded",
        ));
    }
    Ok(decoded.into_owned())
}

/// `base` (the backend's `base_url`) with the raw path remainder `rest` (what follows
/// `/v1/proxy/{backend}/`) and the raw `query`, or why not.
pub fn upstream_url(
    base: &reqwest::Url,
    rest: &str,
    query: Option<&str>,
) -> Result<reqwest::Url, PathError> {
    if rest.len() > MAX_PATH_BYTES {
        return Err(refuse("is longer than 2048 bytes"));
    }
    let raw: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    if raw.len() > MAX_SEGMENTS {
        return Err(refuse("has more than 32 segments"));
    }
    let decoded = raw
        .iter()
        .enumerate()
        .map(|(i, s)| segment(s, i == 0))
        .collect::<Result<Vec<_>, _>>()?;
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|()| refuse("cannot be added to the base URL"))?;
        path.pop_if_empty().extend(&decoded);
    }
    url.set_query(query.filter(|q| !q.is_empty()));
    if !stays_under(base, &url) {
        return Err(refuse("would leave the backend's base URL"));
    }
    Ok(url)
}

/// Whether `url` has `base`'s origin and lies at or under its path: checked on every built
/// URL, whatever the segment checks let through.
fn stays_under(base: &reqwest::Url, url: &reqwest::Url) -> bool {
    let prefix = base.path().trim_end_matches('/');
    url.origin() == base.origin()
        && (url.path() == prefix || url.path().starts_with(&format!("{prefix}/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn base() -> reqwest::Url {
        reqwest::Url::parse("https://app.daytona.io/api").expect("a URL")
    }

    #[test]
    fn plain_paths_are_appended_under_the_base_path() {
        let built = upstream_url(&base(), "sandbox/abc-123/start", Some("force=true"))
            .expect("a plain path");
        assert_eq!(
            built.as_str(),
            "https://app.daytona.io/api/sandbox/abc-123/start?force=true"
        );
        assert_eq!(
            upstream_url(&base(), "", None).expect("the base").as_str(),
            "https://app.daytona.io/api"
        );
        let spaced = upstream_url(&base(), "volumes/my%20volume", None).expect("decoded");
        assert_eq!(spaced.path(), "/api/volumes/my%20volume");
    }

    /// The escapes measured with the `url` crate (design notes §0.7), and their neighbours.
    #[test]
    fn every_measured_escape_is_refused() {
        for rest in [
            "//evil.example/x",
            "\\\\evil.example/x",
            "%5c%5cevil.example/x",
            "https://evil.example/x",
            "../x",
            "sandbox/../../x",
            "%2e%2e/x",
            "%2E%2E/%2e%2e/x",
            ".%2e/x",
            "./sandbox",
            "sandbox//x",
            "sandbox/",
            "@evil.example/x",
            "sandbox%2f..%2f..%2fx",
            "sandbox/%00",
            "sandbox/a%0d%0aHost:%20evil",
            "sandbox/%ff",
        ] {
            let refused = upstream_url(&base(), rest, None);
            assert!(refused.is_err(), "{rest} gave {refused:?}");
        }
        let long = "a/".repeat(40) + "a";
        assert!(upstream_url(&base(), &long, None).is_err());
    }

    #[test]
    fn a_query_cannot_change_the_host_or_the_path() {
        let built = upstream_url(&base(), "sandbox", Some("x=1#@evil.example/../../y"))
            .expect("a query is data");
        assert_eq!(built.host_str(), Some("app.daytona.io"));
        assert_eq!(built.path(), "/api/sandbox");
    }

    #[test]
    fn a_built_url_must_keep_the_origin_and_the_base_path() {
        let url = |text: &str| reqwest::Url::parse(text).expect("a URL");
        assert!(stays_under(&base(), &url("https://app.daytona.io/api")));
        assert!(stays_under(
            &base(),
            &url("https://app.daytona.io/api/sandbox")
        ));
        for outside in [
            "https://evil.example/api/sandbox",
            "http://app.daytona.io/api/sandbox",
            "https://app.daytona.io:8443/api/sandbox",
            "https://app.daytona.io/apix",
            "https://app.daytona.io/sandbox",
        ] {
            assert!(!stays_under(&base(), &url(outside)), "{outside}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// For any path remainder and query: refused, or the origin and the base path hold.
        #[test]
        fn any_remainder_is_refused_or_stays_under_the_base(
            rest in "[a-zA-Z0-9%./\\\\@:?#~_-]{0,64}",
            query in proptest::option::of("[ -~]{0,32}"),
        ) {
            if let Ok(url) = upstream_url(&base(), &rest, query.as_deref()) {
                prop_assert_eq!(url.origin(), base().origin());
                prop_assert!(url.path() == "/api" || url.path().starts_with("/api/"), "{}", url);
            }
        }
    }
}

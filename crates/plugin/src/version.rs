//! Plugin and creddy versions: semantic versions through the `semver` crate, so that
//! pre-releases compare by identifier (`1.0.0-rc.10` after `1.0.0-rc.2`) and build metadata is
//! ignored, as semver 2.0 says; product grammar on top: a leading `v` is tolerated
//! (`v0.1.0` = `0.1.0`). The original compared versions as strings, so `0.10.0` sorted before
//! `0.9.0`.

use std::fmt;

/// A `MAJOR.MINOR.PATCH[-PRE]` version (build metadata dropped).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(semver::Version);

impl Version {
    /// Parses a version; `None` when it is not semver.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let mut version = semver::Version::parse(text.strip_prefix('v').unwrap_or(text)).ok()?;
        version.build = semver::BuildMetadata::EMPTY;
        Some(Self(version))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn versions_compare_numerically_and_tolerate_v() {
        assert!(v("0.10.0") > v("0.9.0"));
        assert_eq!(v("v0.1.0"), v("0.1.0"));
        assert!(v("1.0.0-rc1") < v("1.0.0"));
        assert_eq!(v("1.2.3+build").to_string(), "1.2.3");
        assert_eq!(
            v("1.2.3+build"),
            v("1.2.3+other"),
            "build metadata has no precedence"
        );
        for bad in [
            "", "1", "1.2", "1.2.x", "1.2.3.4", "1.2.3-", "a.b.c", "01.2.3",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn pre_releases_compare_by_identifier() {
        assert!(
            v("1.0.0-rc.10") > v("1.0.0-rc.2"),
            "numeric identifiers compare as numbers"
        );
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert!(v("1.0.0-alpha.beta") < v("1.0.0-beta"));
        assert!(v("1.0.0-beta.11") < v("1.0.0-rc.1"));
    }
}

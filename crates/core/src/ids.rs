//! Identifiers: a type prefix plus a ULID (26 characters of lowercase Crockford base32).
//!
//! ULIDs sort by creation time, which keeps ids readable in listings and indexes compact.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::Timestamp;

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new ULID for the given instant: 48 bits of milliseconds, 80 random bits.
pub fn ulid(now: Timestamp) -> String {
    let mut random = [0u8; 10];
    crate::secret::fill_random(&mut random);
    let millis = u128::from(u64::try_from(now.as_millis()).unwrap_or(0) & 0xFFFF_FFFF_FFFF);
    let value = (millis << 80)
        | random
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    (0..26)
        .rev()
        .map(|i| CROCKFORD[((value >> (i * 5)) & 0x1F) as usize] as char)
        .collect()
}

/// True when `s` is a prefixed id of the given prefix with a well-formed ULID.
fn is_prefixed_ulid(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 26 && rest.bytes().all(|b| CROCKFORD.contains(&b)))
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix of this kind of id.
            pub const PREFIX: &'static str = $prefix;

            /// A new id for the given instant.
            pub fn generate(now: Timestamp) -> Self {
                Self(format!("{}{}", $prefix, ulid(now)))
            }

            /// Accepts `s` when it is an id of this kind.
            pub fn parse(s: &str) -> Option<Self> {
                is_prefixed_ulid(s, $prefix).then(|| Self(s.to_owned()))
            }

            /// Wraps a value read back from storage, which only ever holds generated ids.
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }

            /// The id text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// An agent id, `ag_<ULID>`.
    AgentId,
    "ag_"
);
prefixed_id!(
    /// A backend id, `be_<ULID>`.
    BackendId,
    "be_"
);
prefixed_id!(
    /// A lease (credential) id, `cred_<ULID>`.
    LeaseId,
    "cred_"
);
prefixed_id!(
    /// An audit event id, `evt_<ULID>`.
    EventId,
    "evt_"
);
prefixed_id!(
    /// An enrollment or amendment id, `enr_<ULID>`.
    EnrollmentId,
    "enr_"
);
prefixed_id!(
    /// A request id, `req_<ULID>`, echoed in `X-Request-Id`.
    RequestId,
    "req_"
);

/// An OIDC client id: `agent_` plus 12 hex characters.
pub fn new_client_id() -> String {
    let mut bytes = [0u8; 6];
    crate::secret::fill_random(&mut bytes);
    format!("agent_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_prefix_and_a_ulid() {
        let now = Timestamp::from_millis(1_795_000_000_000);
        let id = AgentId::generate(now);
        assert!(id.as_str().starts_with("ag_"));
        assert_eq!(id.as_str().len(), 3 + 26);
        assert_eq!(AgentId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(AgentId::parse("ag_short"), None);
        assert_eq!(AgentId::parse(&id.as_str().replace("ag_", "be_")), None);
        assert_ne!(AgentId::generate(now), id, "random part differs");
    }

    #[test]
    fn ulids_sort_by_time() {
        let early = ulid(Timestamp::from_millis(1_000));
        let late = ulid(Timestamp::from_millis(2_000));
        assert!(early < late);
        assert!(early.bytes().all(|b| CROCKFORD.contains(&b)));
    }

    #[test]
    fn client_ids_have_twelve_hex() {
        let id = new_client_id();
        assert!(id.starts_with("agent_") && id.len() == 18, "{id}");
    }
}

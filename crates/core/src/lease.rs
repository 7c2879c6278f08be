//! Lease states (§12.1), named once for the store, the server and the CLI. The store parses
//! the stored text into a [`LeaseState`] once, at its boundary; everything above compares
//! enum values, never strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The state of a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// The intent is recorded and the mint is running (or its outcome is unknown).
    Pending,
    /// The credential was handed out and may be in use.
    Active,
    /// Revocation is queued or failing and being retried.
    Revoking,
    /// Revoked upstream (or confirmed gone).
    Revoked,
    /// The mint failed, or a mint of unknown outcome was reconciled.
    Failed,
    /// Revocation kept failing past the horizon; retried daily.
    Irrevocable,
    /// A self-expiring credential whose revocation failed, past its expiry.
    Lapsed,
    /// An irrevocable lease an admin told creddy to stop retrying.
    Forgotten,
}

impl LeaseState {
    /// Every state, in the order of §12.1.
    pub const ALL: [LeaseState; 8] = [
        LeaseState::Pending,
        LeaseState::Active,
        LeaseState::Revoking,
        LeaseState::Revoked,
        LeaseState::Failed,
        LeaseState::Irrevocable,
        LeaseState::Lapsed,
        LeaseState::Forgotten,
    ];

    /// The states of leases that may still hold a live credential.
    pub const OPEN: [LeaseState; 4] = [
        LeaseState::Pending,
        LeaseState::Active,
        LeaseState::Revoking,
        LeaseState::Irrevocable,
    ];

    /// The state's name, as stored and as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Pending => "pending",
            LeaseState::Active => "active",
            LeaseState::Revoking => "revoking",
            LeaseState::Revoked => "revoked",
            LeaseState::Failed => "failed",
            LeaseState::Irrevocable => "irrevocable",
            LeaseState::Lapsed => "lapsed",
            LeaseState::Forgotten => "forgotten",
        }
    }

    /// Whether a lease in this state may still hold a live credential.
    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }
}

impl fmt::Display for LeaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a lease state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown lease state '{0}' (use: pending, active, revoking, revoked, failed, irrevocable, lapsed, forgotten)"
)]
pub struct UnknownState(pub String);

impl FromStr for LeaseState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names_and_nothing_else_parses() {
        for state in LeaseState::ALL {
            assert_eq!(state.as_str().parse::<LeaseState>(), Ok(state));
            assert_eq!(
                serde_json::to_value(state).ok(),
                Some(serde_json::Value::from(state.as_str()))
            );
        }
        assert!("Active".parse::<LeaseState>().is_err());
        assert!("".parse::<LeaseState>().is_err());
        let open: Vec<_> = LeaseState::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .collect();
        assert_eq!(open, LeaseState::OPEN);
    }
}

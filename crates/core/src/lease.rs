//! Lease states (§12.1), named once for the store, the server and the CLI. The store parses
//! the stored text into a [`LeaseState`] once, at its boundary; everything above compares
//! enum values, never strings.

crate::closed_set! {
    /// The state of a lease.
    LeaseState ("lease state") {
        /// The intent is recorded and the mint is running (or its outcome is unknown).
        Pending = "pending",
        /// The credential was handed out and may be in use.
        Active = "active",
        /// Revocation is queued or failing and being retried.
        Revoking = "revoking",
        /// Revoked upstream (or confirmed gone).
        Revoked = "revoked",
        /// The mint failed, or a mint of unknown outcome was reconciled.
        Failed = "failed",
        /// Revocation kept failing past the horizon; retried daily.
        Irrevocable = "irrevocable",
        /// A self-expiring credential whose revocation failed, past its expiry.
        Lapsed = "lapsed",
        /// An irrevocable lease an admin told creddy to stop retrying.
        Forgotten = "forgotten",
    }
}

impl LeaseState {
    /// The states of leases that may still hold a live credential.
    pub const OPEN: [LeaseState; 4] = [
        LeaseState::Pending,
        LeaseState::Active,
        LeaseState::Revoking,
        LeaseState::Irrevocable,
    ];

    /// Whether a lease in this state may still hold a live credential.
    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
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
        let unknown = "Active"
            .parse::<LeaseState>()
            .expect_err("names are lower case");
        assert_eq!(
            unknown.to_string(),
            "unknown lease state 'Active' (use: pending, active, revoking, revoked, failed, irrevocable, lapsed, forgotten)"
        );
        assert!("".parse::<LeaseState>().is_err());
        let open: Vec<_> = LeaseState::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .collect();
        assert_eq!(open, LeaseState::OPEN);
    }
}

//! Lease states (§12.1), named once for the store, the server and the CLI.

/// Every state a lease can be in: `pending` (intent recorded, mint running), `active`,
/// `revoking`, `irrevocable` (retried daily), and the ended `revoked`, `failed`, `lapsed`
/// and `forgotten`.
pub const STATES: [&str; 8] = [
    "pending",
    "active",
    "revoking",
    "revoked",
    "failed",
    "irrevocable",
    "lapsed",
    "forgotten",
];

/// Whether a lease in `state` may still hold a live credential.
pub fn is_open(state: &str) -> bool {
    matches!(state, "pending" | "active" | "revoking" | "irrevocable")
}

//! OIDC signing keys (§11): where a key is in its rotation.

crate::closed_set! {
    /// A signing key's state: one `current` key signs; `grace` keys stay published until
    /// their retirement; `retired` keys are kept for the record and trusted no more.
    KeyState ("signing key state") {
        /// Signs new tokens.
        Current = "current",
        /// Published, still trusted, no longer signing.
        Grace = "grace",
        /// Neither published nor trusted.
        Retired = "retired",
    }
}

//! Configured backends (§9, §12.4): the state a backend is stored in.

crate::closed_set! {
    /// A stored backend's state. (Whether its plugin runs is live state, not stored.)
    BackendState ("backend state") {
        /// Serving.
        Active = "active",
        /// Being removed: no new lease; deleted once its open leases settled.
        Draining = "draining",
    }
}

//! The application state handed to every handler: no globals, one value.

use std::sync::Arc;
use std::time::Instant;

use creddy_core::Clock;
use creddy_core::secret::TokenHash;
use creddy_store::Store;

use crate::tasks::TaskSignals;

/// Shared state of a running server; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    admin_token_hash: TokenHash,
    issuer: String,
    started: Instant,
    tasks: TaskSignals,
}

impl AppState {
    pub(crate) fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        admin_token_hash: TokenHash,
        issuer: String,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                admin_token_hash,
                issuer,
                started: Instant::now(),
                tasks: TaskSignals::default(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The clock every expiry decision reads.
    pub fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }

    /// The hash of this node's local admin token.
    pub(crate) fn admin_token_hash(&self) -> &TokenHash {
        &self.inner.admin_token_hash
    }

    /// The issuer and public base URL.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Seconds since the server started.
    pub(crate) fn uptime_seconds(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }

    /// Signals to and from the background tasks.
    pub fn tasks(&self) -> &TaskSignals {
        &self.inner.tasks
    }
}

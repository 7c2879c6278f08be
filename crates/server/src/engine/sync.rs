//! Several nodes on one PostgreSQL agree on their backends (§14): every node polls the
//! stored backends every [`POLL_INTERVAL`] and brings its live plugin processes in line with
//! them (start what another node added, restart what it reconfigured, stop what it removed),
//! and follows the plugin-reload generation that every reload bumps, so a plugin upgraded and
//! reloaded on one node is reloaded on all of them. SQLite has one node: nothing to follow.
//!
//! Polling rather than `LISTEN/NOTIFY`: it needs no connection of its own, survives a
//! database restart without re-subscribing, and a few rows every two seconds cost nothing.

use std::time::Duration;

use tokio::sync::watch;

use crate::engine::state::Engine;

/// How often a node looks at the stored backends.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The meta key whose value changes at every plugin reload.
pub(crate) const RELOAD_GENERATION: &str = "plugins_reload_generation";

/// Records that plugins were reloaded here, so that the other nodes reload theirs.
pub(crate) async fn announce_reload(state: &Engine) -> Result<(), creddy_store::StoreError> {
    let generation = creddy_core::ids::ulid(state.clock().now());
    state
        .store()
        .meta_set(RELOAD_GENERATION, &generation, &[])
        .await?;
    *state.seen_reload_generation() = Some(generation);
    Ok(())
}

/// Follows the other nodes until `shutdown` changes (PostgreSQL only).
pub(crate) async fn follow_other_nodes(state: Engine, mut shutdown: watch::Receiver<bool>) {
    if matches!(state.store().location(), creddy_store::Location::Sqlite(_)) {
        return;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = catch_up(&state).await {
            tracing::warn!(error = %e, "could not read the shared backends; retrying");
        }
    }
}

/// One look at the shared state.
pub(crate) async fn catch_up(state: &Engine) -> Result<(), creddy_store::StoreError> {
    let records = state.store().list_backends().await?;
    let generation = state.store().meta(RELOAD_GENERATION).await?;
    let seen = state.seen_reload_generation().clone();
    let settings = state.plugin_settings();
    if generation.is_some() && generation != seen {
        *state.seen_reload_generation() = generation;
        let (loaded, _) = state
            .backends()
            .reload(&records, state.sealer(), &settings)
            .await;
        tracing::info!(?loaded, "plugins reloaded after a reload on another node");
        return Ok(());
    }
    let changed = state
        .backends()
        .align(&records, state.sealer(), &settings)
        .await;
    if !changed.is_empty() {
        tracing::info!(?changed, "backends changed on another node");
        state.tasks().kick();
    }
    Ok(())
}

//! The OIDC clients this node has authenticated recently, so that the token endpoint reads
//! nothing before it signs: each entry is the agent, its client secret hash and the
//! [`AgentVersion`] it was read at. A cached client is never trusted on its own: the
//! `token.issued` event is written only if the agent row still holds exactly that version,
//! in the same transaction (`Store::record_event_if_agent_is`), so an agent removed, narrowed,
//! expired or rotated on any node gets no token from a stale copy; the entry is dropped and
//! the request is answered from the store.
//!
//! Bounded: at most [`MAX_CLIENTS`] entries; when full, the cache starts again empty (a cost
//! of one store read per client, never a wrong answer).

use std::collections::HashMap;
use std::sync::Mutex;

use creddy_core::agent::Agent;
use creddy_core::secret::TokenHash;
use creddy_store::AgentVersion;

/// The most clients remembered.
pub const MAX_CLIENTS: usize = 10_000;

/// A client as it was read from the store.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    /// The agent.
    pub(crate) agent: Agent,
    /// Its client secret hash.
    pub(crate) secret_hash: TokenHash,
    /// The version the agent was read at.
    pub(crate) version: AgentVersion,
}

/// Clients by client id.
#[derive(Debug, Default)]
pub(crate) struct ClientCache {
    clients: Mutex<HashMap<String, Client>>,
}

impl ClientCache {
    /// The cached client `client_id`, if any.
    pub(crate) fn get(&self, client_id: &str) -> Option<Client> {
        self.lock().get(client_id).cloned()
    }

    /// Remembers `client`.
    pub(crate) fn put(&self, client: Client) {
        let mut clients = self.lock();
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client.agent.client_id) {
            clients.clear();
        }
        clients.insert(client.agent.client_id.clone(), client);
    }

    /// Forgets `client_id` (its copy turned out stale, or its secret did not match).
    pub(crate) fn forget(&self, client_id: &str) {
        self.lock().remove(client_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Client>> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

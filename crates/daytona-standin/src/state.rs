//! The stand-in's state: API keys and sandboxes, optionally kept in a JSON file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// An API key as the stand-in keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The key's name, unique per organisation.
    pub name: String,
    /// SHA-256 of the value (`dtn_…`); the value itself is returned once, at creation.
    pub value_sha256: String,
    /// The last three characters, for the masked form.
    pub tail: String,
    /// Its permissions.
    pub permissions: Vec<String>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Expiry, RFC 3339 with milliseconds, if any.
    pub expires_at: Option<String>,
    /// Last use.
    pub last_used_at: Option<String>,
    /// Owner.
    pub user_id: String,
    /// Organisation.
    pub organization_id: String,
}

/// Everything the stand-in remembers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Keys by name.
    pub keys: BTreeMap<String, Key>,
    /// Sandboxes by id.
    pub sandboxes: BTreeMap<String, Value>,
    /// Keys that were deleted, by name, in order (for tests that check revocations).
    #[serde(default)]
    pub deleted_keys: Vec<String>,
    /// Every authorised delete call, by key name, in order, whether or not the key existed
    /// (for tests that check that a key is deleted once).
    #[serde(default)]
    pub delete_calls: Vec<String>,
    #[serde(skip)]
    file: Option<PathBuf>,
}

/// SHA-256 hex of a key value.
pub fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

impl State {
    /// Loads the state from `file` (empty when it does not exist yet), remembering where to
    /// save it.
    pub fn load(file: Option<PathBuf>) -> Self {
        let mut state: State = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        state.file = file;
        state
    }

    /// Writes the state file, if there is one.
    pub fn save(&self) {
        if let Some(file) = &self.file
            && let Ok(text) = serde_json::to_vec_pretty(self)
        {
            let temp = file.with_extension("tmp");
            if std::fs::write(&temp, text).is_ok() {
                let _ = std::fs::rename(&temp, file);
            }
        }
    }

    /// Adds a key with a known value (how a test or the demo seeds the master key).
    pub fn seed_key(
        &mut self,
        name: &str,
        value: &str,
        permissions: &[&str],
        organization_id: &str,
        now: &str,
    ) {
        self.keys.insert(
            name.to_owned(),
            Key {
                name: name.to_owned(),
                value_sha256: hash(value),
                tail: value
                    .chars()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect(),
                permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
                created_at: now.to_owned(),
                expires_at: None,
                last_used_at: None,
                user_id: "standin-user".to_owned(),
                organization_id: organization_id.to_owned(),
            },
        );
        self.save();
    }

    /// The key whose value is `value`.
    pub fn key_by_value(&self, value: &str) -> Option<&Key> {
        let wanted = hash(value);
        self.keys.values().find(|k| k.value_sha256 == wanted)
    }
}

//! OIDC signing keys: one `current` key signs; `grace` keys stay published until their
//! `retires_at`; `retired` keys are kept for the record and trusted no more. Private keys are
//! stored sealed. Every change writes its audit event in the same transaction.

use creddy_core::Timestamp;
use creddy_core::audit::AuditEvent;
use creddy_core::signing::KeyState;

use crate::audit::append_event;
use crate::{Result, Store, StoreError, in_transaction, parse_name, with_pool};

/// A stored signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// The key id.
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    /// `current`, `grace` or `retired`.
    pub state: KeyState,
    /// The sealed private key.
    pub sealed_private_key: String,
    /// The public key as a JWK (JSON text).
    pub public_jwk: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its grace period ends.
    pub retires_at: Option<Timestamp>,
}

/// The stored columns of a [`SigningKeyRecord`].
#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    alg: String,
    state: String,
    private_key: String,
    public_jwk: String,
    created_at: i64,
    retires_at: Option<i64>,
}

impl Store {
    /// Every signing key: the current one, then those in grace, then retired ones, newest
    /// first within each.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let rows: Vec<KeyRow> = with_pool!(self, |p| {
            sqlx::query_as(
            "SELECT kid, alg, state, private_key, public_jwk, created_at, retires_at \
             FROM signing_keys ORDER BY CASE state WHEN 'current' THEN 0 WHEN 'grace' THEN 1 ELSE 2 END, \
             created_at DESC, kid"
        )
        .fetch_all(p)
        .await
        })?;
        rows.into_iter()
            .map(|r| {
                Ok(SigningKeyRecord {
                    state: parse_name("signing_keys.state", &r.state)?,
                    kid: r.kid,
                    alg: r.alg,
                    sealed_private_key: r.private_key,
                    public_jwk: r.public_jwk,
                    created_at: Timestamp::from_millis(r.created_at),
                    retires_at: r.retires_at.map(Timestamp::from_millis),
                })
            })
            .collect()
    }

    /// Makes `key` the current key; the previous current key (if any) enters its grace
    /// period until `grace_until`. With `only_if_none`, nothing happens when a current key
    /// exists (a node's first start racing another's): returns whether `key` was stored.
    pub async fn add_current_key(
        &self,
        key: &SigningKeyRecord,
        grace_until: Timestamp,
        only_if_none: bool,
        event: &AuditEvent,
    ) -> Result<bool> {
        let added = in_transaction!(self, |tx| {
            let (current,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM signing_keys WHERE state = 'current'")
                    .fetch_one(&mut *tx)
                    .await?;
            if current > 0 && only_if_none {
                false
            } else {
                sqlx::query(
                    "UPDATE signing_keys SET state = 'grace', retires_at = $1 WHERE state = 'current'",
                )
                .bind(grace_until.as_millis())
                .execute(&mut *tx)
                .await?;
                let inserted = sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, state, private_key, public_jwk, created_at, retires_at) \
                     VALUES ($1, $2, 'current', $3, $4, $5, NULL)",
                )
                .bind(&key.kid)
                .bind(&key.alg)
                .bind(&key.sealed_private_key)
                .bind(&key.public_jwk)
                .bind(key.created_at.as_millis())
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(_) => {}
                    Err(e) => return Err(StoreError::from(e)),
                }
                append_event!(tx, event)?;
                true
            }
        });
        Ok(added)
    }

    /// Retires the grace keys whose period has ended, each with its event from `event_of`.
    pub async fn retire_keys(
        &self,
        now: Timestamp,
        event_of: impl Fn(&str) -> AuditEvent,
    ) -> Result<Vec<String>> {
        let due: Vec<(String,)> = with_pool!(self, |p| sqlx::query_as(
            "SELECT kid FROM signing_keys WHERE state = 'grace' AND retires_at <= $1"
        )
        .bind(now.as_millis())
        .fetch_all(p)
        .await)?;
        let mut retired = Vec::new();
        for (kid,) in due {
            let event = event_of(&kid);
            let changed = in_transaction!(self, |tx| crate::audit::change_with_event!(
                tx,
                sqlx::query(
                    "UPDATE signing_keys SET state = 'retired' WHERE kid = $1 AND state = 'grace'"
                )
                .bind(&kid),
                &event
            ));
            if changed {
                retired.push(kid);
            }
        }
        Ok(retired)
    }
}

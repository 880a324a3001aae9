//! Signing keys: create (the secret shown once), list, revoke — each change stored, then put
//! in this node's [`KeyRing`] at once so the user's next call is signed accordingly.

use std::sync::Arc;

use uuid::Uuid;

use crate::signing::{KeyRing, NewSecret};
use crate::store::{KeyInsertError, KeySummary, Store, StoreError};
use crate::time::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no such signing key")]
    NotFound,
    #[error(transparent)]
    Limit(KeyInsertError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key just created: the only time its secret is given out.
pub struct CreatedKey {
    pub key_id: Uuid,
    pub secret: NewSecret,
    pub created_at: i64,
}

pub struct KeyService<'a> {
    store: &'a Store,
    ring: &'a Arc<KeyRing>,
}

impl<'a> KeyService<'a> {
    pub fn new(store: &'a Store, ring: &'a Arc<KeyRing>) -> Self {
        Self { store, ring }
    }

    pub async fn create(&self, user_id: i64) -> Result<CreatedKey, KeyError> {
        let secret = NewSecret::generate();
        let key_id = Uuid::now_v7();
        let created_at = now_ms();
        match self
            .store
            .insert_signing_key(
                user_id,
                key_id,
                &secret.bytes[..],
                &secret.prefix(),
                created_at,
            )
            .await
        {
            Ok(()) => {}
            Err(KeyInsertError::Store(e)) => return Err(e.into()),
            Err(limit) => return Err(KeyError::Limit(limit)),
        }
        self.refresh(user_id).await?;
        tracing::info!(user_id, key_id = %key_id, "signing key created");
        Ok(CreatedKey {
            key_id,
            secret,
            created_at,
        })
    }

    pub async fn list(&self, user_id: i64) -> Result<Vec<KeySummary>, KeyError> {
        Ok(self.store.signing_keys_of(user_id).await?)
    }

    /// Revokes `key_id`; the user's calls from now on carry only the key(s) left.
    pub async fn revoke(&self, user_id: i64, key_id: &str) -> Result<(), KeyError> {
        if !self.store.delete_signing_key(user_id, key_id).await? {
            return Err(KeyError::NotFound);
        }
        self.refresh(user_id).await?;
        tracing::info!(user_id, key_id, "signing key revoked");
        Ok(())
    }

    /// Puts `user_id`'s stored keys in the ring.
    async fn refresh(&self, user_id: i64) -> Result<(), KeyError> {
        let keys = self.store.signing_secrets(Some(user_id)).await?;
        self.ring.set_user(user_id, keys);
        Ok(())
    }
}

//! Users' signing keys (`signing_keys`): written straight on the pool (a key changes rarely
//! and touches no task row, so it need not queue behind the fire path's writes), the secret
//! sealed with the key id as associated data.

use entities::signing_keys;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{Store, StoreError};
use crate::signing::{StoredKey, MAX_KEYS_PER_USER};

/// A key as a list shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySummary {
    pub key_id: String,
    pub prefix: String,
    pub created_at: i64,
}

/// Why a key was not stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyInsertError {
    #[error("the user already has {MAX_KEYS_PER_USER} active signing keys")]
    LimitReached,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A summary of the whole table: the number of keys and the least and greatest creation
/// times. A revoke changes the count; a create brings the newest time (unless the clocks of
/// two nodes disagree, which the ring's periodic full reload covers).
#[derive(Debug, FromQueryResult)]
struct Fingerprint {
    keys: i64,
    created_min: Option<i64>,
    created_max: Option<i64>,
}

impl Store {
    /// `user_id`'s keys, oldest first.
    pub async fn signing_keys_of(&self, user_id: i64) -> Result<Vec<KeySummary>, StoreError> {
        let rows = signing_keys::Entity::find()
            .filter(signing_keys::Column::UserId.eq(user_id))
            .order_by_asc(signing_keys::Column::CreatedAt)
            .order_by_asc(signing_keys::Column::KeyId)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| KeySummary {
                key_id: r.key_id,
                prefix: r.prefix,
                created_at: r.created_at,
            })
            .collect())
    }

    /// Every key, opened; `user_id` alone when given. A key that does not open (a damaged
    /// row) is logged and left out: its user's calls go out with the keys that do.
    pub async fn signing_secrets(
        &self,
        user_id: Option<i64>,
    ) -> Result<Vec<StoredKey>, StoreError> {
        let mut find = signing_keys::Entity::find();
        if let Some(u) = user_id {
            find = find.filter(signing_keys::Column::UserId.eq(u));
        }
        let rows = find.all(&self.db).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| match self.cipher.decrypt(&r.secret, &key_aad(&r.key_id)) {
                Ok(secret) => Some(StoredKey {
                    key_id: r.key_id,
                    user_id: r.user_id,
                    secret: Zeroizing::new(secret),
                }),
                Err(e) => {
                    tracing::error!(key_id = %r.key_id, user_id = r.user_id, error = %e, "a signing key cannot be opened; calls go out without it");
                    None
                }
            })
            .collect())
    }

    /// Stores a new key for `user_id` in a free slot: refused once the user holds
    /// [`MAX_KEYS_PER_USER`] (the unique `(user_id, slot)` decides between concurrent creates).
    pub async fn insert_signing_key(
        &self,
        user_id: i64,
        key_id: Uuid,
        secret: &[u8],
        prefix: &str,
        now: i64,
    ) -> Result<(), KeyInsertError> {
        let sealed = self
            .cipher
            .encrypt(secret, key_id.as_bytes())
            .map_err(|source| StoreError::Crypto {
                task_id: key_id.to_string(),
                source,
            })?;
        for _ in 0..MAX_KEYS_PER_USER {
            let used: Vec<i16> = signing_keys::Entity::find()
                .select_only()
                .column(signing_keys::Column::Slot)
                .filter(signing_keys::Column::UserId.eq(user_id))
                .into_tuple()
                .all(&self.db)
                .await
                .map_err(StoreError::from)?;
            let Some(slot) = (1..=MAX_KEYS_PER_USER as i16).find(|s| !used.contains(s)) else {
                return Err(KeyInsertError::LimitReached);
            };
            let row = signing_keys::ActiveModel {
                key_id: Set(key_id.to_string()),
                user_id: Set(user_id),
                slot: Set(slot),
                secret: Set(sealed.clone()),
                prefix: Set(prefix.to_string()),
                created_at: Set(now),
            };
            match signing_keys::Entity::insert(row).exec(&self.db).await {
                Ok(_) => return Ok(()),
                // A concurrent create took the slot: look again.
                Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {}
                Err(e) => return Err(StoreError::from(e).into()),
            }
        }
        Err(KeyInsertError::LimitReached)
    }

    /// Deletes `user_id`'s key `key_id`; whether there was one.
    pub async fn delete_signing_key(&self, user_id: i64, key_id: &str) -> Result<bool, StoreError> {
        let done = signing_keys::Entity::delete_many()
            .filter(signing_keys::Column::UserId.eq(user_id))
            .filter(signing_keys::Column::KeyId.eq(key_id))
            .exec(&self.db)
            .await?;
        Ok(done.rows_affected > 0)
    }

    /// A summary of the whole table that changes with a create or revoke ([`Fingerprint`]).
    pub async fn signing_keys_fingerprint(&self) -> Result<(i64, i64, i64), StoreError> {
        let f = signing_keys::Entity::find()
            .select_only()
            .column_as(Expr::col(signing_keys::Column::KeyId).count(), "keys")
            .column_as(
                Expr::col(signing_keys::Column::CreatedAt).min(),
                "created_min",
            )
            .column_as(
                Expr::col(signing_keys::Column::CreatedAt).max(),
                "created_max",
            )
            .into_model::<Fingerprint>()
            .one(&self.db)
            .await?;
        Ok(f.map_or((0, 0, 0), |f| {
            (
                f.keys,
                f.created_min.unwrap_or(0),
                f.created_max.unwrap_or(0),
            )
        }))
    }
}

/// The associated data a key's secret is sealed with: its id's bytes.
fn key_aad(key_id: &str) -> Vec<u8> {
    Uuid::parse_str(key_id).map_or_else(|_| key_id.as_bytes().to_vec(), |u| u.as_bytes().to_vec())
}

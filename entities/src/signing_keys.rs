//! `signing_keys`: a user's keys for signing outbound calls.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_id: String,
    pub user_id: i64,
    /// 1 or 2, unique per user: a user has at most two keys. Revoking deletes the row.
    pub slot: i16,
    /// The 32 secret bytes, sealed with the key id as associated data.
    #[sea_orm(column_type = "Blob")]
    pub secret: Vec<u8>,
    /// What a list shows of the secret: `whsec_` and its first characters.
    pub prefix: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! `signing_keys`: each user's keys for signing outbound calls (Standard Webhooks).
//!
//! The secret is stored sealed (AES-256-GCM under the key file, the key id as associated
//! data). Every row is an active key: revoking deletes it, so a user who creates and revokes
//! keys in a loop grows nothing. Each key holds slot 1 or 2, and the unique
//! `(user_id, slot)` is what bounds a user to two keys, on both backends and under concurrent
//! creates.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const USER_SLOT: &str = "idx_signing_keys_user_slot";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .if_not_exists()
                    .col(string_len(SigningKeys::KeyId, 36).primary_key())
                    .col(big_integer(SigningKeys::UserId))
                    .col(small_integer(SigningKeys::Slot))
                    .col(blob(SigningKeys::Secret))
                    .col(string_len(SigningKeys::Prefix, 16))
                    .col(big_integer(SigningKeys::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(USER_SLOT)
                    .table(SigningKeys::Table)
                    .col(SigningKeys::UserId)
                    .col(SigningKeys::Slot)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SigningKeys::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    KeyId,
    UserId,
    Slot,
    Secret,
    Prefix,
    CreatedAt,
}

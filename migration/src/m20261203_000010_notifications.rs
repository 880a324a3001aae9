//! Task notifications (README, "Notifications"):
//!
//! - `tasks.notify`: the task's `{"url", "events", "late_ms"}` (JSON), null for none. Long
//!   text: the URL may be as long as `limits.max_url_bytes` allows.
//! - `notifications`: one row per event to deliver, kept apart from `task_logs` (a delivery
//!   is not an execution), with its delivery state and the claim of the node delivering it.
//!   Indexed on `(task_id, created_at)` for a task's list and on `(status, next_attempt_at)`
//!   for the deliverer's scan of pending rows.

use sea_orm_migration::{prelude::*, schema::*};

use crate::long_text;

#[derive(DeriveMigrationName)]
pub struct Migration;

const BY_TASK: &str = "idx_notifications_task_created";
const PENDING: &str = "idx_notifications_status_next";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .add_column(long_text(Tasks::Notify))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .if_not_exists()
                    .col(string_len(Notifications::NotificationId, 36).primary_key())
                    .col(string_len(Notifications::TaskId, 36))
                    .col(big_integer(Notifications::UserId))
                    .col(string_len(Notifications::Event, 16))
                    .col(text(Notifications::Url))
                    .col(text(Notifications::Payload))
                    .col(string_len(Notifications::Status, 16))
                    .col(integer(Notifications::Attempts))
                    .col(integer_null(Notifications::HttpStatus))
                    .col(text_null(Notifications::Error))
                    .col(big_integer(Notifications::CreatedAt))
                    .col(big_integer(Notifications::NextAttemptAt))
                    .col(big_integer_null(Notifications::DeliveredAt))
                    .col(string_len_null(Notifications::LeaseOwner, 160))
                    .col(big_integer_null(Notifications::LeaseUntil))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(BY_TASK)
                    .table(Notifications::Table)
                    .col(Notifications::TaskId)
                    .col(Notifications::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(PENDING)
                    .table(Notifications::Table)
                    .col(Notifications::Status)
                    .col(Notifications::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Notifications::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .drop_column(Tasks::Notify)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Notify,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    NotificationId,
    TaskId,
    UserId,
    Event,
    Url,
    Payload,
    Status,
    Attempts,
    HttpStatus,
    Error,
    CreatedAt,
    NextAttemptAt,
    DeliveredAt,
    LeaseOwner,
    LeaseUntil,
}

use sea_orm_migration::{prelude::*, schema::*};

use crate::long_text;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TaskLogs::Table)
                    .if_not_exists()
                    .col(string_len(TaskLogs::LogId, 36).primary_key())
                    .col(big_integer(TaskLogs::UserId))
                    .col(string_len(TaskLogs::TaskId, 36))
                    .col(big_integer(TaskLogs::ScheduledTime))
                    .col(integer(TaskLogs::Attempt))
                    .col(integer_null(TaskLogs::HttpStatus))
                    .col(text_null(TaskLogs::Error))
                    .col(big_integer(TaskLogs::DurationMs))
                    .col(long_text(TaskLogs::ResponseBody))
                    .col(big_integer(TaskLogs::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_task_logs_task_created")
                    .table(TaskLogs::Table)
                    .col(TaskLogs::TaskId)
                    .col(TaskLogs::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // One attempt of one execution can never be recorded twice.
        manager
            .create_index(
                Index::create()
                    .name("uq_task_logs_task_slot_attempt")
                    .table(TaskLogs::Table)
                    .col(TaskLogs::TaskId)
                    .col(TaskLogs::ScheduledTime)
                    .col(TaskLogs::Attempt)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TaskLogs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum TaskLogs {
    Table,
    LogId,
    UserId,
    TaskId,
    ScheduledTime,
    Attempt,
    HttpStatus,
    Error,
    DurationMs,
    ResponseBody,
    CreatedAt,
}

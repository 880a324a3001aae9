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
                    .table(Tasks::Table)
                    .if_not_exists()
                    .col(string_len(Tasks::TaskId, 36).primary_key())
                    .col(big_integer(Tasks::UserId))
                    .col(string_len(Tasks::TaskType, 16))
                    .col(text(Tasks::HttpEndpoint))
                    .col(string_len(Tasks::Method, 8))
                    .col(blob_null(Tasks::Headers))
                    .col(long_text(Tasks::Body))
                    .col(big_integer_null(Tasks::IntervalSeconds))
                    .col(string_len_null(Tasks::CronExpression, 255))
                    .col(string_len_null(Tasks::Timezone, 64))
                    .col(big_integer_null(Tasks::StartTime))
                    .col(text_null(Tasks::StopCondition))
                    .col(text_null(Tasks::Retry))
                    .col(string_len(Tasks::Status, 16))
                    .col(big_integer_null(Tasks::NextRunTime))
                    .col(big_integer(Tasks::ExecutionCount).default(0))
                    .col(big_integer(Tasks::ConsecutiveFailures).default(0))
                    .col(big_integer(Tasks::Version).default(1))
                    .col(big_integer(Tasks::CreatedAt))
                    .col(big_integer(Tasks::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tasks_user_status")
                    .table(Tasks::Table)
                    .col(Tasks::UserId)
                    .col(Tasks::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tasks_status_next_run")
                    .table(Tasks::Table)
                    .col(Tasks::Status)
                    .col(Tasks::NextRunTime)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Tasks::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Tasks {
    Table,
    TaskId,
    UserId,
    TaskType,
    HttpEndpoint,
    Method,
    Headers,
    Body,
    IntervalSeconds,
    CronExpression,
    Timezone,
    StartTime,
    StopCondition,
    Retry,
    Status,
    NextRunTime,
    ExecutionCount,
    ConsecutiveFailures,
    Version,
    CreatedAt,
    UpdatedAt,
}

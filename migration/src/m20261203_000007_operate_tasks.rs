//! The columns the operator controls need (README, "The API"):
//!
//! - `tasks.misfire_policy`: `fire_once` or `skip`; null reads as `fire_once`, the rule every
//!   task created before it followed.
//! - `tasks.missed_slots`: slots missed while the service was down, in all.
//! - `tasks.retention`: the task's own history limits (JSON), null for the global ones.
//! - `task_logs.trigger_kind`: what started the execution (`schedule`, `manual`, `catch_up`);
//!   rows written before it read as `schedule`. (`trigger` is a reserved word in SQL.)
//! - `task_logs.lateness_ms`: start of the execution's first attempt minus its slot; null for
//!   rows of slots that were not sent.
//! - an index on `task_logs(created_at)`, so the retention job finds rows past the age limit
//!   without reading the table.
//!
//! SQLite adds one column per `ALTER TABLE`, so each column is its own statement.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const LOGS_CREATED: &str = "idx_task_logs_created_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            (
                Tasks::Table.into_iden(),
                ColumnDef::new(Tasks::MisfirePolicy)
                    .string_len(16)
                    .null()
                    .to_owned(),
            ),
            (
                Tasks::Table.into_iden(),
                ColumnDef::new(Tasks::MissedSlots)
                    .big_integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
            ),
            (
                Tasks::Table.into_iden(),
                ColumnDef::new(Tasks::Retention)
                    .string_len(256)
                    .null()
                    .to_owned(),
            ),
            (
                TaskLogs::Table.into_iden(),
                ColumnDef::new(TaskLogs::TriggerKind)
                    .string_len(16)
                    .not_null()
                    .default("schedule")
                    .to_owned(),
            ),
            (
                TaskLogs::Table.into_iden(),
                ColumnDef::new(TaskLogs::LatenessMs)
                    .big_integer()
                    .null()
                    .to_owned(),
            ),
        ];
        for (table, mut column) in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name(LOGS_CREATED)
                    .table(TaskLogs::Table)
                    .col(TaskLogs::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(LOGS_CREATED)
                    .table(TaskLogs::Table)
                    .to_owned(),
            )
            .await?;
        let columns = [
            (Tasks::Table.into_iden(), Tasks::MisfirePolicy.into_iden()),
            (Tasks::Table.into_iden(), Tasks::MissedSlots.into_iden()),
            (Tasks::Table.into_iden(), Tasks::Retention.into_iden()),
            (
                TaskLogs::Table.into_iden(),
                TaskLogs::TriggerKind.into_iden(),
            ),
            (
                TaskLogs::Table.into_iden(),
                TaskLogs::LatenessMs.into_iden(),
            ),
        ];
        for (table, column) in columns {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    MisfirePolicy,
    MissedSlots,
    Retention,
}

#[derive(DeriveIden)]
enum TaskLogs {
    Table,
    TriggerKind,
    LatenessMs,
    CreatedAt,
}

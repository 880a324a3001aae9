//! Widens the `tasks` columns that were narrower on MySQL/MariaDB than what validation
//! accepts, so a valid task is stored instead of failing with "Data too long": the encrypted
//! header list (`BLOB`, 64 KiB, against up to 50 headers of 8 KiB), the stop condition
//! (`TEXT`, 64 KiB) and the cron expression (`VARCHAR(255)` against 256 characters). The validator's bounds
//! are set against these sizes (`tickwheel::domain::limits`); `storage_limits::the_largest_value_of_every_field_is_stored_and_read_back`
//! holds the two in step on MariaDB.
//!
//! `MODIFY` keeps every row (each type only grows). SQLite does not enforce declared lengths,
//! so there is nothing to change there.

use sea_orm_migration::prelude::*;

/// `tasks.cron_expression` after this migration: `VARCHAR(256)`.
const CRON_EXPRESSION_CHARS: u32 = 256;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        resize(manager, "MEDIUMBLOB", "MEDIUMTEXT", CRON_EXPRESSION_CHARS).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        resize(manager, "BLOB", "TEXT", 255).await
    }
}

/// Sets the three columns' types on MySQL/MariaDB; SQLite enforces no lengths, so there is
/// nothing to change on it. MODIFY keeps every row.
async fn resize(
    manager: &SchemaManager<'_>,
    headers: &str,
    stop_condition: &str,
    cron_chars: u32,
) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm_migration::sea_orm::DatabaseBackend::MySql {
        return Ok(());
    }
    manager
        .alter_table(
            Table::alter()
                .table(Tasks::Table)
                .modify_column(custom_null(Tasks::Headers, headers))
                .modify_column(custom_null(Tasks::StopCondition, stop_condition))
                .modify_column(
                    ColumnDef::new(Tasks::CronExpression)
                        .string_len(cron_chars)
                        .null()
                        .to_owned(),
                )
                .to_owned(),
        )
        .await
}

fn custom_null(col: Tasks, sql_type: &str) -> ColumnDef {
    ColumnDef::new(col)
        .custom(Alias::new(sql_type))
        .null()
        .to_owned()
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Headers,
    StopCondition,
    CronExpression,
}

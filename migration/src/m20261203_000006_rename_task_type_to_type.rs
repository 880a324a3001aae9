//! Renames `tasks.task_type` to `type`, the name the design document and the API give it
//! (README, "The API"). A rename in place: every row keeps its value. SQLite (3.25 and later)
//! and MySQL 8 / MariaDB 10.5.2 and later rename a column without rebuilding the table; no
//! index names it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .rename_column(Tasks::TaskType, Tasks::Type)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .rename_column(Tasks::Type, Tasks::TaskType)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    TaskType,
    Type,
}

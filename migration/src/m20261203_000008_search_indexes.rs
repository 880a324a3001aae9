//! The task list is read newest first within one user (`ORDER BY created_at DESC, task_id
//! DESC`). With only `(user_id, status)`, a list without a status filter found the user's rows
//! through that index and then sorted all of them to return one page; `(user_id, created_at,
//! task_id)` hands them over in the list's order (walked backwards), so a page reads only its
//! own rows and the offset, and sorts nothing, on SQLite and MariaDB alike. The search filters
//! ride along: `status` and `type` are checked on the rows read, and the `q` substring cannot
//! use an index on either backend (`LIKE '%…%'`), so an index on `type` would not pay for what
//! it costs every insert.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const USER_CREATED: &str = "idx_tasks_user_created";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(USER_CREATED)
                    .table(Tasks::Table)
                    .col(Tasks::UserId)
                    .col(Tasks::CreatedAt)
                    .col(Tasks::TaskId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(USER_CREATED)
                    .table(Tasks::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    UserId,
    CreatedAt,
    TaskId,
}

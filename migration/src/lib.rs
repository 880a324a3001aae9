//! Schema migrations, applied at start-up and by `tickwheel migrate`.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_tasks;
mod m20261125_000002_create_task_logs;
mod m20261126_000003_create_cluster_partitions;
mod m20261126_000004_index_tasks_status_task;
mod m20261203_000005_widen_task_columns;
mod m20261203_000006_rename_task_type_to_type;
mod m20261203_000007_operate_tasks;
mod m20261203_000008_search_indexes;
mod m20261203_000009_signing_keys;
mod m20261203_000010_notifications;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_tasks::Migration),
            Box::new(m20261125_000002_create_task_logs::Migration),
            Box::new(m20261126_000003_create_cluster_partitions::Migration),
            Box::new(m20261126_000004_index_tasks_status_task::Migration),
            Box::new(m20261203_000005_widen_task_columns::Migration),
            Box::new(m20261203_000006_rename_task_type_to_type::Migration),
            Box::new(m20261203_000007_operate_tasks::Migration),
            Box::new(m20261203_000008_search_indexes::Migration),
            Box::new(m20261203_000009_signing_keys::Migration),
            Box::new(m20261203_000010_notifications::Migration),
        ]
    }
}

/// Columns that may hold a large text (request bodies up to `server.max_body_bytes`, response
/// bodies up to `http.max_response_bytes`): MySQL's `TEXT` stops at 64 KiB, `MEDIUMTEXT` at
/// 16 MiB; SQLite reads either name as text affinity.
pub(crate) fn long_text<T: IntoIden>(col: T) -> ColumnDef {
    let mut def = ColumnDef::new(col);
    def.custom(Alias::new("MEDIUMTEXT")).null();
    def
}

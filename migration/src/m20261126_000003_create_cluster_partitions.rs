use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ClusterPartitions::Table)
                    .if_not_exists()
                    .col(integer(ClusterPartitions::PartitionId).primary_key())
                    .col(string_len(ClusterPartitions::Owner, 200))
                    .col(big_integer(ClusterPartitions::Epoch))
                    .col(big_integer(ClusterPartitions::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ClusterPartitions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ClusterPartitions {
    Table,
    PartitionId,
    Owner,
    Epoch,
    UpdatedAt,
}

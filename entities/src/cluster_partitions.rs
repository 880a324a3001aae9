//! `cluster_partitions`: which node holds each partition of the task space (cluster mode).
//! A node claims a partition here before it loads the partition's tasks, and its schedule
//! writes for a task only apply while it is still the partition's owner in this table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cluster_partitions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub partition_id: i32,
    /// The claiming node's id and incarnation (`node_id/uuid`), unique per process.
    pub owner: String,
    /// How many times the partition was claimed: each hand-over adds one.
    pub epoch: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

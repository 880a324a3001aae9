//! SeaORM entities for tickwheel's tables (tasks, their logs, users' signing keys, and in
//! cluster mode the partition claims). Plain models, no logic: the domain converts
//! to and from them at the persistence edge.
//!
//! Every instant is stored as milliseconds since the Unix epoch (`BIGINT`), which keeps
//! millisecond precision identical on SQLite and MySQL/MariaDB (whose `DATETIME` drops it).

pub mod cluster_partitions;
pub mod notifications;
pub mod signing_keys;
pub mod task_logs;
pub mod tasks;

pub mod prelude {
    pub use super::cluster_partitions::Entity as ClusterPartitions;
    pub use super::notifications::Entity as Notifications;
    pub use super::signing_keys::Entity as SigningKeys;
    pub use super::task_logs::Entity as TaskLogs;
    pub use super::tasks::Entity as Tasks;
}

//! The storage edge: connecting, migrating, the reads the API makes straight on the pool, the
//! conversions between SeaORM models and the domain, and the writes. Writes go through the
//! `PersistenceActor` (see `actors::persistence`), which calls [`apply_write`] and the batched
//! forms beside it.
//!
//! - `connection`: the pool, the migrations, the private SQLite file, the key-check sample.
//! - `reads`: the queries on the pool (tasks, counts, pages, partition owners).
//! - `search`: the filtered history and task list, and a user's tasks per status.
//! - `codec`: rows to domain types and back ([`ActiveTask`], [`RowState`], header sealing).
//! - `writes`: [`Write`] and how it is applied, batched advances and logs, partition claims.
//! - `keys`: users' signing keys (sealed secrets, the two-key limit, the change fingerprint).
//! - `notifications`: the notification outbox: inserts (in the persistence actor's batches),
//!   the notifier's claims and settlements, a task's list.
//! - `prune`: history retention's bounded selects and deletes (used by `actors::pruner`, which
//!   writes beside the persistence actor: its deletes touch only expired rows).

use std::sync::Arc;

use sea_orm::{DatabaseConnection, DbErr};

use crate::crypto::{Cipher, CryptoError};
use crate::domain::TaskStatus;

mod codec;
mod connection;
mod keys;
mod notifications;
mod prune;
mod reads;
mod search;
mod writes;

pub use codec::{ActiveTask, RowState, ScheduleRow};
pub use connection::{connect, connect_with, migrate, sealed_sample, sqlite_file};
pub use keys::{KeyInsertError, KeySummary};
pub use notifications::{insert_notifications, Attempted, DELIVERED, FAILED, PENDING};
pub use prune::{FinishedTask, PruneTask};
pub use reads::tasks_page_query;
pub use search::{
    contains_pattern, logs_count_query, logs_page_query, user_status_counts_query,
    user_tasks_count_query, user_tasks_page_query, LogFilter, Outcome, TaskSearch,
};
pub use writes::{
    advance_many, apply_write, held_partitions, insert_logs, log_row, AdvanceRow, Write,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("stored task {task_id} cannot be decrypted: {source}")]
    Crypto {
        task_id: String,
        source: CryptoError,
    },
    #[error("stored task {task_id} is corrupt: {reason}")]
    Corrupt { task_id: String, reason: String },
}

/// Read access to tasks and logs, plus the cipher for header columns.
#[derive(Clone)]
pub struct Store {
    pub db: DatabaseConnection,
    pub cipher: Arc<Cipher>,
}

impl Store {
    pub fn new(db: DatabaseConnection, cipher: Arc<Cipher>) -> Self {
        Self { db, cipher }
    }
}

/// The names of the active states, as stored in the `status` column.
fn active_names() -> [&'static str; 2] {
    TaskStatus::ACTIVE.map(TaskStatus::as_str)
}

/// The names of the unfinished states (active or paused), as stored.
fn live_names() -> [&'static str; 3] {
    TaskStatus::LIVE.map(TaskStatus::as_str)
}

//! The statements of history retention (`actors::pruner`). Every delete names its rows by id
//! after a bounded select, so each statement removes at most `limit` rows and holds a write
//! lock briefly on either backend. (SQLite has no `DELETE … LIMIT` by default and MariaDB
//! refuses `LIMIT` inside an `IN (SELECT …)`: a select then a delete by id works on both, and
//! deleting an id twice — another node, a restart — deletes nothing.)

use entities::{task_logs, tasks};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{Store, StoreError};
use crate::domain::retention::Retention;
use crate::domain::TaskStatus;

/// A task as the pruner walks them: its id and its own retention, if any.
#[derive(Clone, Debug)]
pub struct PruneTask {
    pub task_id: String,
    pub retention: Retention,
}

/// A finished task and when it finished (its last update).
#[derive(Clone, Debug)]
pub struct FinishedTask {
    pub task_id: String,
    pub updated_at: i64,
}

fn finished_names() -> [&'static str; 3] {
    [
        TaskStatus::Completed.as_str(),
        TaskStatus::Failed.as_str(),
        TaskStatus::Stopped.as_str(),
    ]
}

impl Store {
    /// Up to `limit` log rows created before `cutoff_ms`, oldest first (of one task, or of all).
    pub async fn log_ids_before(
        &self,
        task_id: Option<&str>,
        cutoff_ms: i64,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        let mut q = task_logs::Entity::find()
            .select_only()
            .column(task_logs::Column::LogId)
            .filter(task_logs::Column::CreatedAt.lt(cutoff_ms));
        if let Some(id) = task_id {
            q = q.filter(task_logs::Column::TaskId.eq(id));
        }
        Ok(q.order_by_asc(task_logs::Column::CreatedAt)
            .limit(limit)
            .into_tuple::<String>()
            .all(&self.db)
            .await?)
    }

    /// Up to `limit` of task `task_id`'s log rows beyond its newest `keep`, newest of them first.
    /// Reads at most `keep + limit` entries of the `(task_id, created_at)` index.
    pub async fn log_ids_beyond(
        &self,
        task_id: &str,
        keep: u64,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(task_logs::Entity::find()
            .select_only()
            .column(task_logs::Column::LogId)
            .filter(task_logs::Column::TaskId.eq(task_id))
            .order_by_desc(task_logs::Column::CreatedAt)
            .offset(keep)
            .limit(limit)
            .into_tuple::<String>()
            .all(&self.db)
            .await?)
    }

    /// Deletes the log rows `ids` (one statement); returns how many there were.
    pub async fn delete_logs(&self, ids: Vec<String>) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        let r = task_logs::Entity::delete_many()
            .filter(task_logs::Column::LogId.is_in(ids))
            .exec(&self.db)
            .await?;
        crate::metrics::retention_delete(started.elapsed().as_secs_f64());
        Ok(r.rows_affected)
    }

    /// Up to `limit` tasks (any state) after `after` in id order, with their own retention.
    pub async fn tasks_to_prune(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<PruneTask>, StoreError> {
        let mut q = tasks::Entity::find()
            .select_only()
            .column(tasks::Column::TaskId)
            .column(tasks::Column::Retention);
        if let Some(a) = after {
            q = q.filter(tasks::Column::TaskId.gt(a));
        }
        let rows: Vec<(String, Option<String>)> = q
            .order_by_asc(tasks::Column::TaskId)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(task_id, stored)| PruneTask {
                // A retention the API wrote always parses; anything else applies the global
                // limits rather than stopping the pruner.
                retention: stored
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default(),
                task_id,
            })
            .collect())
    }

    /// Up to `limit` completed, failed or stopped tasks after `after` in id order.
    pub async fn finished_tasks(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<FinishedTask>, StoreError> {
        let mut q = tasks::Entity::find()
            .select_only()
            .column(tasks::Column::TaskId)
            .column(tasks::Column::UpdatedAt)
            .filter(tasks::Column::Status.is_in(finished_names()));
        if let Some(a) = after {
            q = q.filter(tasks::Column::TaskId.gt(a));
        }
        let rows: Vec<(String, i64)> = q
            .order_by_asc(tasks::Column::TaskId)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(task_id, updated_at)| FinishedTask {
                task_id,
                updated_at,
            })
            .collect())
    }

    /// Up to `limit` of a task's log rows (any age).
    pub async fn log_ids_of(&self, task_id: &str, limit: u64) -> Result<Vec<String>, StoreError> {
        Ok(task_logs::Entity::find()
            .select_only()
            .column(task_logs::Column::LogId)
            .filter(task_logs::Column::TaskId.eq(task_id))
            .limit(limit)
            .into_tuple::<String>()
            .all(&self.db)
            .await?)
    }

    /// Deletes task `task_id` if it is still finished and last updated before `cutoff_ms`.
    pub async fn delete_finished_task(
        &self,
        task_id: &str,
        cutoff_ms: i64,
    ) -> Result<u64, StoreError> {
        let r = tasks::Entity::delete_many()
            .filter(tasks::Column::TaskId.eq(task_id))
            .filter(tasks::Column::Status.is_in(finished_names()))
            .filter(tasks::Column::UpdatedAt.lt(cutoff_ms))
            .exec(&self.db)
            .await?;
        if r.rows_affected > 0 {
            // At most `MAX_NOTIFICATIONS_PER_TASK` rows: the task's list is bounded.
            super::notifications::delete_task_notifications(&self.db, task_id).await?;
        }
        Ok(r.rows_affected)
    }

    /// When the oldest log row kept was created (epoch ms), `None` when there is none.
    pub async fn oldest_log_ms(&self) -> Result<Option<i64>, StoreError> {
        // The first entry of the `created_at` index on either backend.
        Ok(task_logs::Entity::find()
            .select_only()
            .column(task_logs::Column::CreatedAt)
            .order_by_asc(task_logs::Column::CreatedAt)
            .into_tuple::<i64>()
            .one(&self.db)
            .await?)
    }
}

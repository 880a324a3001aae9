//! The reads: what the API, quotas, recovery and cluster reconciliation ask of the database
//! straight on the pool, outside the persistence actor's write batches.

use entities::{cluster_partitions, task_logs, tasks};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::codec::ScheduleRow;
use super::{active_names, live_names, Store, StoreError};
use crate::domain::TaskStatus;

impl Store {
    pub async fn get_task(&self, task_id: Uuid) -> Result<Option<tasks::Model>, StoreError> {
        Ok(tasks::Entity::find_by_id(task_id.to_string())
            .one(&self.db)
            .await?)
    }

    /// The latest attempt (a skipped fire, logged as attempt 0, is not an execution).
    pub async fn last_log(&self, task_id: Uuid) -> Result<Option<task_logs::Model>, StoreError> {
        Ok(task_logs::Entity::find()
            .filter(task_logs::Column::TaskId.eq(task_id.to_string()))
            .filter(task_logs::Column::Attempt.gt(0))
            .order_by_desc(task_logs::Column::CreatedAt)
            .order_by_desc(task_logs::Column::Attempt)
            .one(&self.db)
            .await?)
    }

    /// How many of the user's tasks count against `max_active_tasks_per_user`: the pending,
    /// running and paused ones (README, "Configuration").
    pub async fn count_active(&self, user_id: i64) -> Result<u64, StoreError> {
        Ok(tasks::Entity::find()
            .filter(tasks::Column::UserId.eq(user_id))
            .filter(tasks::Column::Status.is_in(live_names()))
            .count(&self.db)
            .await?)
    }

    /// The schedules of the user's active tasks (for `max_fires_per_minute_per_user`; a paused
    /// task fires nothing, so it adds nothing until it is resumed).
    pub async fn active_schedules(&self, user_id: i64) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows = tasks::Entity::find()
            .select_only()
            .column(tasks::Column::TaskType)
            .column(tasks::Column::IntervalSeconds)
            .column(tasks::Column::CronExpression)
            .column(tasks::Column::Timezone)
            .column(tasks::Column::StartTime)
            .column(tasks::Column::CreatedAt)
            .filter(tasks::Column::UserId.eq(user_id))
            .filter(tasks::Column::Status.is_in(active_names()))
            .into_tuple::<(
                String,
                Option<i64>,
                Option<String>,
                Option<String>,
                Option<i64>,
                i64,
            )>()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(task_type, interval_seconds, cron_expression, timezone, start, created)| {
                    ScheduleRow {
                        task_type,
                        interval_seconds,
                        cron_expression,
                        timezone,
                        anchor_ms: start.unwrap_or(created),
                    }
                },
            )
            .collect())
    }

    pub async fn count_running(&self, user_id: i64) -> Result<u64, StoreError> {
        Ok(tasks::Entity::find()
            .filter(tasks::Column::UserId.eq(user_id))
            .filter(tasks::Column::Status.eq(TaskStatus::Running.as_str()))
            .count(&self.db)
            .await?)
    }

    /// Up to `limit` tasks in `status` with an id after `after`, in id order: recovery walks
    /// each active status this way (keyset paging over the `(status, task_id)` index, so it
    /// never holds every row at once and never sorts them).
    pub async fn tasks_page(
        &self,
        status: TaskStatus,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<tasks::Model>, StoreError> {
        Ok(tasks_page_query(status, after, limit).all(&self.db).await?)
    }

    /// The id and version of every pending or running task (cluster reconciliation).
    pub async fn active_task_versions(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(tasks::Entity::find()
            .select_only()
            .column(tasks::Column::TaskId)
            .column(tasks::Column::Version)
            .filter(tasks::Column::Status.is_in(active_names()))
            .into_tuple::<(String, i64)>()
            .all(&self.db)
            .await?)
    }

    /// The rows of the given tasks (those that exist).
    pub async fn tasks_by_ids(&self, ids: &[String]) -> Result<Vec<tasks::Model>, StoreError> {
        let mut rows = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            rows.extend(
                tasks::Entity::find()
                    .filter(tasks::Column::TaskId.is_in(chunk.iter().cloned()))
                    .all(&self.db)
                    .await?,
            );
        }
        Ok(rows)
    }

    /// Who holds each of `partitions` in `cluster_partitions` (unclaimed ones are absent).
    pub async fn partition_owners(
        &self,
        partitions: &[u32],
    ) -> Result<Vec<(u32, String)>, StoreError> {
        let rows = cluster_partitions::Entity::find()
            .filter(
                cluster_partitions::Column::PartitionId.is_in(partitions.iter().map(|p| *p as i32)),
            )
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.partition_id as u32, r.owner))
            .collect())
    }

    /// How many tasks are in each state.
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(tasks::Entity::find()
            .select_only()
            .column(tasks::Column::Status)
            .column_as(Expr::col(tasks::Column::TaskId).count(), "n")
            .group_by(tasks::Column::Status)
            .into_tuple::<(String, i64)>()
            .all(&self.db)
            .await?)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.db.ping().await?)
    }
}

/// The statement behind [`Store::tasks_page`].
pub fn tasks_page_query(
    status: TaskStatus,
    after: Option<&str>,
    limit: u64,
) -> sea_orm::Select<tasks::Entity> {
    let mut q = tasks::Entity::find().filter(tasks::Column::Status.eq(status.as_str()));
    if let Some(after) = after {
        q = q.filter(tasks::Column::TaskId.gt(after));
    }
    q.order_by_asc(tasks::Column::TaskId).limit(limit)
}

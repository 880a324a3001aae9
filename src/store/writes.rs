//! The writes, used only by the persistence actor: each change to storage as a [`Write`], how
//! one is applied, and the batched forms (schedule advances in one statement, log rows in
//! one insert) that keep a burst of fires from costing a round trip each. Cluster mode's
//! partition claims, releases and the fence's ownership check live here too, since they
//! commit in the same transactions.

use entities::{cluster_partitions, task_logs, tasks};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use uuid::Uuid;

use super::{active_names, live_names};
use crate::domain::notify::NotificationRecord;
use crate::domain::{ExecutionRecord, TaskStatus};

/// A change to storage. The persistence actor applies these in arrival order, batching them.
#[derive(Debug, Clone)]
pub enum Write {
    InsertTask(Box<tasks::Model>),
    /// Replace the definition (patch); only if the row is still at `expected_version` and active.
    Redefine {
        model: Box<tasks::Model>,
        expected_version: i64,
    },
    /// A state transition: only from one of `from`, and (when given) at `expected_version`.
    /// Bumps `version`.
    SetStatus {
        task_id: String,
        from: Vec<TaskStatus>,
        to: TaskStatus,
        expected_version: Option<i64>,
        now: i64,
    },
    /// Resume: a `paused` task back to `to` with its next run, only at `expected_version`.
    /// Bumps `version`.
    Resume {
        task_id: String,
        to: TaskStatus,
        next_run_time: Option<i64>,
        expected_version: i64,
        now: i64,
    },
    /// A schedule advance; never revives a task that is no longer active (a paused task takes
    /// the counts, not the next run). Does not bump `version`.
    Advance {
        task_id: String,
        next_run_time: Option<i64>,
        execution_count: i64,
        consecutive_failures: i64,
    },
    /// A paused task's manual run: its counters, unless the task finished meanwhile (a resume
    /// that came while the run was on the wire does not lose it). Does not bump `version`.
    Counted {
        task_id: String,
        execution_count: i64,
        consecutive_failures: i64,
    },
    /// One execution attempt's record; its row is built here, at the edge ([`log_row`]).
    Log(Box<ExecutionRecord>),
    /// An event to deliver (README, "Notifications"), written with the execution that raised
    /// it and delivered by the notifier once committed. Not fenced: like a log row, it records
    /// what happened on this node.
    Notify(Box<NotificationRecord>),
    /// Slots were missed while the task could not fire: the new total and the next run (the
    /// catch-up's slot, or the slot after the ones skipped), in one statement, so a restart
    /// before the catch-up ends counts nothing twice. Never revives a task that is no longer
    /// active; does not bump `version`.
    Missed {
        task_id: String,
        next_run_time: Option<i64>,
        missed_slots: i64,
    },
    DeleteTask {
        task_id: String,
    },
    /// Cluster mode: `owner` takes `partitions` over (one more epoch each). Committed before
    /// the new owner loads their tasks; from then on the old owner's schedule writes for them
    /// are fenced off.
    Claim {
        partitions: Vec<u32>,
        owner: String,
        now: i64,
    },
    /// Cluster mode: `owner` gives `partitions` up (after committing what their tasks wrote);
    /// rows another node claimed meanwhile are left alone.
    Release {
        partitions: Vec<u32>,
        owner: String,
        now: i64,
    },
}

impl Write {
    /// The task whose runtime state this write changes on behalf of the node running it (a
    /// schedule advance, or a transition made by the task actor — these carry no expected
    /// version). In cluster mode these apply only while the node still holds the task's
    /// partition. Logs are not fenced (they are keyed by attempt and never overwrite another
    /// node's state), nor are the API's writes (a user's change applies whoever runs the task).
    pub fn fenced_task(&self) -> Option<&str> {
        match self {
            Write::Advance { task_id, .. }
            | Write::Missed { task_id, .. }
            | Write::Counted { task_id, .. } => Some(task_id),
            Write::SetStatus {
                task_id,
                expected_version: None,
                ..
            } => Some(task_id),
            _ => None,
        }
    }

    /// The advance this write is, as a row for [`advance_many`].
    pub fn advance_row(&self) -> Option<AdvanceRow<'_>> {
        match self {
            Write::Advance {
                task_id,
                next_run_time,
                execution_count,
                consecutive_failures,
            } => Some(AdvanceRow {
                task_id,
                next_run_time: *next_run_time,
                execution_count: *execution_count,
                consecutive_failures: *consecutive_failures,
            }),
            _ => None,
        }
    }
}

/// Applies one write; returns the number of rows it changed.
pub async fn apply_write<C: ConnectionTrait>(db: &C, w: &Write) -> Result<u64, DbErr> {
    match w {
        Write::InsertTask(m) => {
            let am: tasks::ActiveModel = (**m).clone().into();
            tasks::Entity::insert(am).exec_without_returning(db).await
        }
        Write::Redefine {
            model,
            expected_version,
        } => {
            let m = &**model;
            let r = tasks::Entity::update_many()
                .col_expr(
                    tasks::Column::HttpEndpoint,
                    Expr::value(m.http_endpoint.clone()),
                )
                .col_expr(tasks::Column::Method, Expr::value(m.method.clone()))
                .col_expr(tasks::Column::Headers, Expr::value(m.headers.clone()))
                .col_expr(tasks::Column::Body, Expr::value(m.body.clone()))
                .col_expr(
                    tasks::Column::IntervalSeconds,
                    Expr::value(m.interval_seconds),
                )
                .col_expr(
                    tasks::Column::CronExpression,
                    Expr::value(m.cron_expression.clone()),
                )
                .col_expr(tasks::Column::Timezone, Expr::value(m.timezone.clone()))
                .col_expr(tasks::Column::StartTime, Expr::value(m.start_time))
                .col_expr(
                    tasks::Column::StopCondition,
                    Expr::value(m.stop_condition.clone()),
                )
                .col_expr(tasks::Column::Retry, Expr::value(m.retry.clone()))
                .col_expr(
                    tasks::Column::MisfirePolicy,
                    Expr::value(m.misfire_policy.clone()),
                )
                .col_expr(tasks::Column::Retention, Expr::value(m.retention.clone()))
                .col_expr(tasks::Column::Notify, Expr::value(m.notify.clone()))
                .col_expr(tasks::Column::NextRunTime, Expr::value(m.next_run_time))
                .col_expr(tasks::Column::Version, Expr::value(expected_version + 1))
                .col_expr(tasks::Column::UpdatedAt, Expr::value(m.updated_at))
                .filter(tasks::Column::TaskId.eq(m.task_id.clone()))
                .filter(tasks::Column::Version.eq(*expected_version))
                .filter(tasks::Column::Status.is_in(active_names()))
                .exec(db)
                .await?;
            Ok(r.rows_affected)
        }
        Write::SetStatus {
            task_id,
            from,
            to,
            expected_version,
            now,
        } => {
            let mut q = tasks::Entity::update_many()
                .col_expr(tasks::Column::Status, Expr::value(to.as_str()))
                .col_expr(
                    tasks::Column::Version,
                    Expr::col(tasks::Column::Version).add(1),
                )
                .col_expr(tasks::Column::UpdatedAt, Expr::value(*now))
                .filter(tasks::Column::TaskId.eq(task_id.clone()))
                .filter(tasks::Column::Status.is_in(from.iter().map(|s| s.as_str())));
            if !to.is_active() {
                q = q.col_expr(tasks::Column::NextRunTime, Expr::value(Option::<i64>::None));
            }
            if let Some(v) = expected_version {
                q = q.filter(tasks::Column::Version.eq(*v));
            }
            Ok(q.exec(db).await?.rows_affected)
        }
        Write::Resume {
            task_id,
            to,
            next_run_time,
            expected_version,
            now,
        } => {
            let r = tasks::Entity::update_many()
                .col_expr(tasks::Column::Status, Expr::value(to.as_str()))
                .col_expr(tasks::Column::NextRunTime, Expr::value(*next_run_time))
                .col_expr(tasks::Column::Version, Expr::value(expected_version + 1))
                .col_expr(tasks::Column::UpdatedAt, Expr::value(*now))
                .filter(tasks::Column::TaskId.eq(task_id.clone()))
                .filter(tasks::Column::Version.eq(*expected_version))
                .filter(tasks::Column::Status.eq(TaskStatus::Paused.as_str()))
                .exec(db)
                .await?;
            Ok(r.rows_affected)
        }
        Write::Advance { .. } => match w.advance_row() {
            Some(row) => advance_many(db, &[row]).await,
            None => Ok(0),
        },
        Write::Counted {
            task_id,
            execution_count,
            consecutive_failures,
        } => {
            let r = tasks::Entity::update_many()
                .col_expr(tasks::Column::ExecutionCount, Expr::value(*execution_count))
                .col_expr(
                    tasks::Column::ConsecutiveFailures,
                    Expr::value(*consecutive_failures),
                )
                .filter(tasks::Column::TaskId.eq(task_id.clone()))
                .filter(tasks::Column::Status.is_in(live_names()))
                .exec(db)
                .await?;
            Ok(r.rows_affected)
        }
        Write::Log(r) => insert_logs(db, &[log_row(r)]).await,
        Write::Notify(r) => {
            super::notifications::insert_notifications(db, std::slice::from_ref(&**r)).await
        }
        Write::Missed {
            task_id,
            next_run_time,
            missed_slots,
        } => {
            let r = tasks::Entity::update_many()
                .col_expr(tasks::Column::NextRunTime, Expr::value(*next_run_time))
                .col_expr(tasks::Column::MissedSlots, Expr::value(*missed_slots))
                .filter(tasks::Column::TaskId.eq(task_id.clone()))
                .filter(tasks::Column::Status.is_in(active_names()))
                .exec(db)
                .await?;
            Ok(r.rows_affected)
        }
        Write::DeleteTask { task_id } => {
            super::notifications::delete_task_notifications(db, task_id).await?;
            task_logs::Entity::delete_many()
                .filter(task_logs::Column::TaskId.eq(task_id.clone()))
                .exec(db)
                .await?;
            let r = tasks::Entity::delete_many()
                .filter(tasks::Column::TaskId.eq(task_id.clone()))
                .exec(db)
                .await?;
            Ok(r.rows_affected)
        }
        Write::Claim {
            partitions,
            owner,
            now,
        } => claim_partitions(db, partitions, owner, *now).await,
        Write::Release {
            partitions,
            owner,
            now,
        } => {
            let r = cluster_partitions::Entity::update_many()
                .col_expr(cluster_partitions::Column::Owner, Expr::value(""))
                .col_expr(cluster_partitions::Column::UpdatedAt, Expr::value(*now))
                .filter(cluster_partitions::Column::Owner.eq(owner.as_str()))
                .filter(
                    cluster_partitions::Column::PartitionId
                        .is_in(partitions.iter().map(|p| *p as i32)),
                )
                .exec(db)
                .await?;
            Ok(r.rows_affected)
        }
    }
}

/// Sets `owner` on every partition given, creating the rows of partitions never claimed.
async fn claim_partitions<C: ConnectionTrait>(
    db: &C,
    partitions: &[u32],
    owner: &str,
    now: i64,
) -> Result<u64, DbErr> {
    let mut n = 0;
    for chunk in partitions.chunks(500) {
        let rows = chunk.iter().map(|p| cluster_partitions::ActiveModel {
            partition_id: sea_orm::Set(*p as i32),
            owner: sea_orm::Set(owner.to_owned()),
            epoch: sea_orm::Set(1),
            updated_at: sea_orm::Set(now),
        });
        n += cluster_partitions::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(cluster_partitions::Column::PartitionId)
                    .update_columns([
                        cluster_partitions::Column::Owner,
                        cluster_partitions::Column::UpdatedAt,
                    ])
                    .value(
                        cluster_partitions::Column::Epoch,
                        Expr::col((
                            cluster_partitions::Entity,
                            cluster_partitions::Column::Epoch,
                        ))
                        .add(1),
                    )
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(n)
}

/// Which of `partitions` `owner` holds, read inside the writer's transaction. On
/// MySQL/MariaDB just those rows are share-locked (by primary key, in key order, as claims
/// and releases take theirs, so the two cannot deadlock), and a claim by another node waits
/// for this transaction to commit; SQLite serialises writers anyway.
pub async fn held_partitions<C: ConnectionTrait>(
    db: &C,
    owner: &str,
    partitions: &std::collections::BTreeSet<u32>,
) -> Result<std::collections::HashSet<u32>, DbErr> {
    if partitions.is_empty() {
        return Ok(Default::default());
    }
    let rows = cluster_partitions::Entity::find()
        .select_only()
        .column(cluster_partitions::Column::PartitionId)
        .column(cluster_partitions::Column::Owner)
        .filter(cluster_partitions::Column::PartitionId.is_in(partitions.iter().map(|p| *p as i32)))
        .order_by_asc(cluster_partitions::Column::PartitionId)
        .lock_shared()
        .into_tuple::<(i32, String)>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, o)| o == owner)
        .map(|(p, _)| p as u32)
        .collect())
}

/// One task's schedule advance, for [`advance_many`].
pub struct AdvanceRow<'a> {
    pub task_id: &'a str,
    pub next_run_time: Option<i64>,
    pub execution_count: i64,
    pub consecutive_failures: i64,
}

/// Applies many schedule advances in one `UPDATE … SET col = CASE task_id WHEN … END`
/// statement (same meaning as [`Write::Advance`] applied to each: never revives a task that
/// is no longer active). One statement instead of one per task is what keeps a burst of
/// thousands of fires from costing thousands of round trips to the database.
pub async fn advance_many<C: ConnectionTrait>(
    db: &C,
    rows: &[AdvanceRow<'_>],
) -> Result<u64, DbErr> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut next = CaseStatement::new();
    let mut count = CaseStatement::new();
    let mut failures = CaseStatement::new();
    for r in rows {
        next = next.case(
            tasks::Column::TaskId.eq(r.task_id),
            Expr::value(r.next_run_time),
        );
        count = count.case(
            tasks::Column::TaskId.eq(r.task_id),
            Expr::value(r.execution_count),
        );
        failures = failures.case(
            tasks::Column::TaskId.eq(r.task_id),
            Expr::value(r.consecutive_failures),
        );
    }
    // The status condition sits inside each CASE rather than in the WHERE clause: with both
    // in the WHERE, SQLite's planner picked the status index and walked every active row per
    // statement (a full core at 100,000 tasks); `task_id IN (…)` alone is a primary-key lookup.
    //
    // The counts of an execution that ended after a pause committed (a pause through another
    // node, before this node's writes reached the database) still apply to the paused task;
    // its next run does not (resume computes one).
    let only_if = |states: &[&'static str], case: CaseStatement, col: tasks::Column| -> Expr {
        CaseStatement::new()
            .case(
                tasks::Column::Status.is_in(states.iter().copied()),
                case.finally(Expr::col(col)),
            )
            .finally(Expr::col(col))
            .into()
    };
    let (active, live) = (active_names(), live_names());
    let r = tasks::Entity::update_many()
        .col_expr(
            tasks::Column::NextRunTime,
            only_if(&active, next, tasks::Column::NextRunTime),
        )
        .col_expr(
            tasks::Column::ExecutionCount,
            only_if(&live, count, tasks::Column::ExecutionCount),
        )
        .col_expr(
            tasks::Column::ConsecutiveFailures,
            only_if(&live, failures, tasks::Column::ConsecutiveFailures),
        )
        .filter(tasks::Column::TaskId.is_in(rows.iter().map(|r| r.task_id)))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// The `task_logs` row of an execution record, under a new time-ordered id.
pub fn log_row(r: &ExecutionRecord) -> task_logs::Model {
    task_logs::Model {
        log_id: Uuid::now_v7().to_string(),
        user_id: r.user_id,
        task_id: r.task_id.to_string(),
        scheduled_time: r.scheduled_ms,
        attempt: r.attempt as i32,
        http_status: r.http_status.map(i32::from),
        error: r.error.clone(),
        duration_ms: r.duration_ms,
        response_body: r.response_body.clone(),
        created_at: r.created_at_ms,
        trigger_kind: r.trigger.as_str().to_owned(),
        lateness_ms: r.lateness_ms,
    }
}

/// Inserts log rows in one statement. A row for an attempt that is already recorded (a slot
/// re-run after a crash) replaces it rather than failing the batch.
pub async fn insert_logs<C: ConnectionTrait>(
    db: &C,
    rows: &[task_logs::Model],
) -> Result<u64, DbErr> {
    if rows.is_empty() {
        return Ok(0);
    }
    let models = rows
        .iter()
        .cloned()
        .map(task_logs::ActiveModel::from)
        .collect::<Vec<_>>();
    task_logs::Entity::insert_many(models)
        .on_conflict(
            OnConflict::columns([
                task_logs::Column::TaskId,
                task_logs::Column::ScheduledTime,
                task_logs::Column::Attempt,
            ])
            .update_columns([
                task_logs::Column::HttpStatus,
                task_logs::Column::Error,
                task_logs::Column::DurationMs,
                task_logs::Column::ResponseBody,
                task_logs::Column::CreatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(db)
        .await
}

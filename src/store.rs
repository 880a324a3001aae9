//! The storage edge: connecting, migrating, the reads the API makes straight on the pool, and
//! the conversions between SeaORM models and the domain. Writes go through the
//! `PersistenceActor` (see `actors::persistence`), which calls the `apply_*` functions here.

use std::sync::Arc;
use std::time::Duration;

use entities::{cluster_partitions, task_logs, tasks};
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::crypto::{Cipher, CryptoError, Sealed};
use crate::domain::validate::{parse_create_within, InputLimits};
use crate::domain::{
    ExecutionRecord, FieldError, Schedule, ScheduleError, StopCondition, TaskSpec, TaskStatus,
    TaskType,
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

/// Connects to `url` (SQLite or MySQL/MariaDB).
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    connect_with(url, max_connections, None).await
}

/// Connects to `url`; on MySQL/MariaDB with `idle_transaction_timeout`, the server ends a
/// connection that sits idle inside a transaction for longer (cluster mode: a node frozen in
/// the middle of a commit must not keep the rows it locked — its partition claims among
/// them — past the moment its partitions are given to others). MariaDB has a setting for
/// exactly that; on MySQL the connection's `wait_timeout` is used.
pub async fn connect_with(
    url: &str,
    max_connections: u32,
    idle_transaction_timeout: Option<Duration>,
) -> Result<DatabaseConnection, DbErr> {
    if let Some(path) = sqlite_file(url) {
        if let Some(dir) = std::path::Path::new(&path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DbErr::Custom(format!("creating {}: {e}", dir.display())))?;
            }
        }
        if creates_if_missing(url) {
            create_private_file(std::path::Path::new(&path))?;
        }
    }
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        // On every pooled connection (a PRAGMA run through the pool reaches only one): WAL
        // lets API reads proceed while the persistence actor writes; NORMAL sync is durable
        // across process crashes (only an OS crash can lose the last commits).
        .map_sqlx_sqlite_opts(|o| {
            o.pragma("journal_mode", "WAL")
                .pragma("synchronous", "NORMAL")
        });
    if let Some(t) = idle_transaction_timeout {
        let secs = Ord::max(t.as_secs(), 1);
        opts.map_sqlx_mysql_pool_opts(move |o| {
            o.after_connect(move |conn, _| {
                Box::pin(async move {
                    use sea_orm::sqlx::{query, AssertSqlSafe};
                    // A number of seconds, formatted here: nothing from outside.
                    let mariadb = format!("SET SESSION idle_transaction_timeout = {secs}");
                    if query(AssertSqlSafe(mariadb))
                        .execute(&mut *conn)
                        .await
                        .is_err()
                    {
                        let mysql = format!("SET SESSION wait_timeout = {secs}");
                        query(AssertSqlSafe(mysql)).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
        });
    }
    Database::connect(opts).await
}

/// Applies the migrations. On MySQL/MariaDB, under a named lock: the nodes of a cluster may
/// start at the same moment on one database. Give it a pool of one connection (the lock
/// belongs to the connection that took it).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    let mysql = db.get_database_backend() == sea_orm::DatabaseBackend::MySql;
    if mysql {
        let got = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::MySql,
                "SELECT GET_LOCK('tickwheel_migrations', 120) AS got",
            ))
            .await?
            .and_then(|row| row.try_get::<Option<i64>>("", "got").ok().flatten());
        if got != Some(1) {
            return Err(DbErr::Custom(
                "another node held the migration lock for 120 s; not migrating".into(),
            ));
        }
    }
    let result = Migrator::up(db, None).await;
    if mysql {
        let _ = db
            .execute_unprepared("SELECT RELEASE_LOCK('tickwheel_migrations')")
            .await;
    }
    result
}

/// Up to `limit` encrypted values the database holds (task headers), each with the associated
/// data it was sealed with; empty when it holds none. Start-up checks the key file against
/// them before anything else reads or writes a secret.
pub async fn sealed_sample<C: ConnectionTrait>(db: &C, limit: u64) -> Result<Vec<Sealed>, DbErr> {
    let rows: Vec<(String, Option<Vec<u8>>)> = tasks::Entity::find()
        .select_only()
        .column(tasks::Column::TaskId)
        .column(tasks::Column::Headers)
        .filter(tasks::Column::Headers.is_not_null())
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, blob)| {
            // A row whose id does not parse is still an encrypted value: it stays in the
            // sample (under bytes no key opens) rather than making the database look empty.
            let aad =
                Uuid::parse_str(&id).map_or_else(|_| id.into_bytes(), |u| u.as_bytes().to_vec());
            blob.map(|blob| Sealed { aad, blob })
        })
        .collect())
}

/// Whether a SQLite URL lets the driver create a missing file (`mode=rwc`).
fn creates_if_missing(url: &str) -> bool {
    url.split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p == "mode=rwc"))
}

/// Creates an empty SQLite file readable by its owner only, unless it exists. The driver would
/// create it with the process umask (usually 0644: every local user could read the tasks);
/// SQLite gives the `-wal` and `-shm` files the mode of the database file.
fn create_private_file(path: &std::path::Path) -> Result<(), DbErr> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(DbErr::Custom(format!("creating {}: {e}", path.display()))),
    }
}

/// The file behind a SQLite URL, if it names one.
pub fn sqlite_file(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(path.to_string())
    }
}

/// Everything a task actor needs to run a task, headers decrypted.
#[derive(Clone, Debug)]
pub struct ActiveTask {
    pub task_id: Uuid,
    pub spec: TaskSpec,
    pub schedule: Schedule,
    pub status: TaskStatus,
    pub next_run_time: Option<i64>,
    pub execution_count: i64,
    pub consecutive_failures: i64,
    /// The row's `version` when this was read (cluster reconciliation compares it).
    pub version: i64,
}

/// The schedule columns of a stored task.
#[derive(Clone, Debug)]
pub struct ScheduleRow {
    pub task_type: String,
    pub interval_seconds: Option<i64>,
    pub cron_expression: Option<String>,
    pub timezone: Option<String>,
    /// The schedule's anchor (`start_time`, else `created_at`).
    pub anchor_ms: i64,
}

impl ScheduleRow {
    pub fn of(m: &tasks::Model) -> Self {
        Self {
            task_type: m.task_type.clone(),
            interval_seconds: m.interval_seconds,
            cron_expression: m.cron_expression.clone(),
            timezone: m.timezone.clone(),
            anchor_ms: m.start_time.unwrap_or(m.created_at),
        }
    }
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

    pub async fn logs(
        &self,
        task_id: Uuid,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<task_logs::Model>, u64), StoreError> {
        let filter = task_logs::Column::TaskId.eq(task_id.to_string());
        let total = task_logs::Entity::find()
            .filter(filter.clone())
            .count(&self.db)
            .await?;
        let rows = task_logs::Entity::find()
            .filter(filter)
            .order_by_desc(task_logs::Column::CreatedAt)
            .order_by_desc(task_logs::Column::ScheduledTime)
            .order_by_desc(task_logs::Column::Attempt)
            .limit(limit)
            .offset(offset)
            .all(&self.db)
            .await?;
        Ok((rows, total))
    }

    pub async fn list_user_tasks(
        &self,
        user_id: i64,
        status: Option<TaskStatus>,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<tasks::Model>, u64), StoreError> {
        let mut q = tasks::Entity::find().filter(tasks::Column::UserId.eq(user_id));
        if let Some(s) = status {
            q = q.filter(tasks::Column::Status.eq(s.as_str()));
        }
        let total = q.clone().count(&self.db).await?;
        let rows = q
            .order_by_desc(tasks::Column::CreatedAt)
            .order_by_asc(tasks::Column::TaskId)
            .limit(limit)
            .offset(offset)
            .all(&self.db)
            .await?;
        Ok((rows, total))
    }

    /// How many of the user's tasks count against `max_active_tasks_per_user`: the pending
    /// and running ones (a paused state, where there is one, counts too: API.md, "Quotas").
    pub async fn count_active(&self, user_id: i64) -> Result<u64, StoreError> {
        Ok(tasks::Entity::find()
            .filter(tasks::Column::UserId.eq(user_id))
            .filter(tasks::Column::Status.is_in(active_names()))
            .count(&self.db)
            .await?)
    }

    /// The schedules of the user's active tasks (for `max_fires_per_minute_per_user`).
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
        use sea_orm::sea_query::Expr;
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

    /// Encrypts a header list for the `headers` column.
    pub fn seal_headers(
        &self,
        task_id: Uuid,
        headers: &[(String, String)],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if headers.is_empty() {
            return Ok(None);
        }
        let plain = serde_json::to_vec(headers).map_err(|e| StoreError::Corrupt {
            task_id: task_id.to_string(),
            reason: e.to_string(),
        })?;
        self.cipher
            .encrypt(&plain, task_id.as_bytes())
            .map(Some)
            .map_err(|source| StoreError::Crypto {
                task_id: task_id.to_string(),
                source,
            })
    }

    pub fn open_headers(
        &self,
        task_id: Uuid,
        blob: Option<&[u8]>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let Some(blob) = blob else {
            return Ok(Vec::new());
        };
        let plain = self
            .cipher
            .decrypt(blob, task_id.as_bytes())
            .map_err(|source| StoreError::Crypto {
                task_id: task_id.to_string(),
                source,
            })?;
        serde_json::from_slice(&plain).map_err(|e| StoreError::Corrupt {
            task_id: task_id.to_string(),
            reason: format!("headers: {e}"),
        })
    }

    /// Rebuilds the validated definition of a stored task (headers decrypted).
    pub fn spec_of(&self, m: &tasks::Model) -> Result<TaskSpec, StoreError> {
        let task_id = parse_id(&m.task_id)?;
        let corrupt = |reason: String| StoreError::Corrupt {
            task_id: m.task_id.clone(),
            reason,
        };
        let headers = self.open_headers(task_id, m.headers.as_deref())?;
        // Re-validating through the create parser keeps one definition of a valid task; within
        // the most any configuration allows, so a row stored under a more generous `[limits]`
        // than today's still loads.
        // Rules added after a row was accepted do not unload it: credentials once allowed in
        // the URL were never sent (they are dropped here), and the start time and stop
        // condition are read without today's input bounds.
        let endpoint = match url::Url::parse(&m.http_endpoint) {
            Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.to_string()
            }
            _ => m.http_endpoint.clone(),
        };
        let mut v = serde_json::json!({
            "user_id": m.user_id,
            "type": m.task_type,
            "http_endpoint": endpoint,
            "method": m.method,
        });
        let obj = v
            .as_object_mut()
            .ok_or_else(|| corrupt("not an object".into()))?;
        let hmap: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        obj.insert("headers".into(), serde_json::Value::Object(hmap));
        if let Some(b) = &m.body {
            let body: serde_json::Value =
                serde_json::from_str(b).map_err(|e| corrupt(format!("body: {e}")))?;
            obj.insert("body".into(), body);
        }
        if let Some(i) = m.interval_seconds {
            obj.insert("interval_seconds".into(), i.into());
        }
        if let Some(c) = &m.cron_expression {
            obj.insert("cron_expression".into(), c.clone().into());
        }
        if let Some(tz) = &m.timezone {
            obj.insert("timezone".into(), tz.clone().into());
        }

        let stop_condition = match &m.stop_condition {
            Some(s) => {
                let sc: serde_json::Value =
                    serde_json::from_str(s).map_err(|e| corrupt(format!("stop_condition: {e}")))?;
                StopCondition::parse_stored(&sc).map_err(|e| corrupt(e.to_string()))?
            }
            None => StopCondition::default(),
        };
        if let Some(r) = &m.retry {
            let r: serde_json::Value =
                serde_json::from_str(r).map_err(|e| corrupt(format!("retry: {e}")))?;
            obj.insert("retry".into(), r);
        }
        let mut spec = parse_create_within(&v, &InputLimits::MAX)
            .map_err(|e: FieldError| corrupt(e.to_string()))?;
        // Header order and case as the user wrote them.
        spec.headers = headers;
        spec.start_time = m
            .start_time
            .map(|ms| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .ok_or_else(|| corrupt(format!("start_time: {ms} is out of range")))
            })
            .transpose()?;
        spec.stop_condition = stop_condition;
        Ok(spec)
    }

    pub fn active_task(&self, m: &tasks::Model) -> Result<ActiveTask, StoreError> {
        let task_id = parse_id(&m.task_id)?;
        let spec = self.spec_of(m)?;
        let schedule = schedule_of(&spec, m.start_time.unwrap_or(m.created_at)).map_err(|e| {
            StoreError::Corrupt {
                task_id: m.task_id.clone(),
                reason: e.to_string(),
            }
        })?;
        let status = TaskStatus::parse(&m.status).ok_or_else(|| StoreError::Corrupt {
            task_id: m.task_id.clone(),
            reason: format!("unknown status {}", m.status),
        })?;
        Ok(ActiveTask {
            task_id,
            spec,
            schedule,
            status,
            next_run_time: m.next_run_time,
            execution_count: m.execution_count,
            consecutive_failures: m.consecutive_failures,
            version: m.version,
        })
    }

    /// The row for a new or redefined task. `anchor_ms` is the schedule's anchor (stored as
    /// `start_time`).
    #[allow(clippy::too_many_arguments)]
    pub fn model_for(
        &self,
        task_id: Uuid,
        spec: &TaskSpec,
        anchor_ms: i64,
        status: TaskStatus,
        next_run_time: Option<i64>,
        version: i64,
        created_at: i64,
        now: i64,
    ) -> Result<tasks::Model, StoreError> {
        let stop = if spec.stop_condition.is_empty() {
            None
        } else {
            Some(spec.stop_condition.to_json().to_string())
        };
        let retry = if spec.retry.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&spec.retry).map_err(|e| StoreError::Corrupt {
                    task_id: task_id.to_string(),
                    reason: e.to_string(),
                })?,
            )
        };
        Ok(tasks::Model {
            task_id: task_id.to_string(),
            user_id: spec.user_id,
            task_type: spec.task_type.as_str().to_string(),
            http_endpoint: spec.http_endpoint.to_string(),
            method: spec.method.as_str().to_string(),
            headers: self.seal_headers(task_id, &spec.headers)?,
            body: spec.body.as_ref().map(|b| b.to_string()),
            interval_seconds: spec.interval_seconds.map(|i| i as i64),
            cron_expression: spec.cron_expression.clone(),
            timezone: spec.timezone.clone(),
            start_time: Some(anchor_ms),
            stop_condition: stop,
            retry,
            status: status.as_str().to_string(),
            next_run_time,
            execution_count: 0,
            consecutive_failures: 0,
            version,
            created_at,
            updated_at: now,
        })
    }
}

/// The schedule of a task whose anchor (`start_time` column) is `anchor_ms`.
pub fn schedule_of(spec: &TaskSpec, anchor_ms: i64) -> Result<Schedule, ScheduleError> {
    Schedule::build(
        spec.task_type,
        spec.interval_seconds,
        spec.cron_expression.as_deref(),
        spec.timezone.as_deref(),
        anchor_ms,
    )
}

/// The anchor a new schedule gets at `now_ms`: the user's `start_time` when it is in the
/// future (or, for `once` and `cron`, whenever given), else now.
pub fn anchor_for(spec: &TaskSpec, now_ms: i64) -> i64 {
    let start = spec.start_time.map(|t| t.timestamp_millis());
    match (spec.task_type, start) {
        (TaskType::Interval, Some(s)) if s > now_ms => s,
        (TaskType::Interval, _) => now_ms,
        (_, Some(s)) => s,
        (_, None) => now_ms,
    }
}

fn parse_id(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt {
        task_id: s.to_string(),
        reason: e.to_string(),
    })
}

// ---- writes, used only by the persistence actor ----

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
    /// A schedule advance; never revives a task that is no longer active. Does not bump
    /// `version`.
    Advance {
        task_id: String,
        next_run_time: Option<i64>,
        execution_count: i64,
        consecutive_failures: i64,
    },
    /// One execution attempt's record; its row is built here, at the edge ([`log_row`]).
    Log(Box<ExecutionRecord>),
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
            Write::Advance { task_id, .. } => Some(task_id),
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
        Write::Advance { .. } => match w.advance_row() {
            Some(row) => advance_many(db, &[row]).await,
            None => Ok(0),
        },
        Write::Log(r) => insert_logs(db, &[log_row(r)]).await,
        Write::DeleteTask { task_id } => {
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
    let active = || tasks::Column::Status.is_in(active_names());
    let keep_if_inactive = |case: CaseStatement, col: tasks::Column| -> Expr {
        CaseStatement::new()
            .case(active(), case.finally(Expr::col(col)))
            .finally(Expr::col(col))
            .into()
    };
    let r = tasks::Entity::update_many()
        .col_expr(
            tasks::Column::NextRunTime,
            keep_if_inactive(next, tasks::Column::NextRunTime),
        )
        .col_expr(
            tasks::Column::ExecutionCount,
            keep_if_inactive(count, tasks::Column::ExecutionCount),
        )
        .col_expr(
            tasks::Column::ConsecutiveFailures,
            keep_if_inactive(failures, tasks::Column::ConsecutiveFailures),
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

fn active_names() -> [&'static str; 2] {
    TaskStatus::ACTIVE.map(TaskStatus::as_str)
}

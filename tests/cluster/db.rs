//! A fresh database on the machine's MariaDB for each test (dropped at the end, as the api
//! tests' `TestDb` does), and the queries on `task_logs` the scenarios check.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

pub struct TestDb {
    pub url: String,
    name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let (url, name) = crate::mariadb::create_database("tw_cluster").await;
        TestDb { url, name }
    }

    pub async fn connect(&self) -> DatabaseConnection {
        sea_orm::Database::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        crate::mariadb::drop_database(std::mem::take(&mut self.name));
    }
}

/// One `task_logs` row, reduced to what the checks need.
#[derive(Debug, Clone)]
pub struct LogRow {
    pub task: uuid::Uuid,
    pub slot: i64,
    pub attempt: i32,
    pub http_status: Option<i32>,
}

/// Row counts over the whole table: a duplicate row would make `rows` exceed `distinct`.
#[derive(Debug, Clone, Copy)]
pub struct LogCounts {
    pub rows: i64,
    pub distinct: i64,
}

pub async fn log_counts(db: &DatabaseConnection) -> LogCounts {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*), COUNT(DISTINCT task_id, scheduled_time, attempt) FROM task_logs",
        ))
        .await
        .expect("count task_logs")
        .expect("a row");
    LogCounts {
        rows: row.try_get_by_index::<i64>(0).expect("count"),
        distinct: row.try_get_by_index::<i64>(1).expect("count distinct"),
    }
}

/// The rows whose slot lies in [from_ms, to_ms].
pub async fn log_rows(db: &DatabaseConnection, from_ms: i64, to_ms: i64) -> Vec<LogRow> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT task_id, scheduled_time, attempt, http_status FROM task_logs \
             WHERE scheduled_time BETWEEN ? AND ?",
            [from_ms.into(), to_ms.into()],
        ))
        .await
        .expect("read task_logs");
    rows.into_iter()
        .map(|r| LogRow {
            task: r
                .try_get_by_index::<String>(0)
                .expect("task_id")
                .parse()
                .expect("task_id is a uuid"),
            slot: r.try_get_by_index::<i64>(1).expect("scheduled_time"),
            attempt: r.try_get_by_index::<i32>(2).expect("attempt"),
            http_status: r.try_get_by_index::<Option<i32>>(3).expect("http_status"),
        })
        .collect()
}

/// Successful (HTTP 200) log rows per (task, slot): more than one means the slot was executed
/// and recorded twice.
pub fn ok_rows_per_slot(rows: &[LogRow]) -> HashMap<(uuid::Uuid, i64), usize> {
    let mut m = HashMap::new();
    for r in rows.iter().filter(|r| r.http_status == Some(200)) {
        *m.entry((r.task, r.slot)).or_insert(0) += 1;
    }
    m
}

/// The slots in [from_ms, to_ms] logged as skipped (attempt 0: the previous execution of the
/// task was still in flight).
pub async fn skipped_slots(
    db: &DatabaseConnection,
    from_ms: i64,
    to_ms: i64,
) -> std::collections::HashSet<(uuid::Uuid, i64)> {
    log_rows(db, from_ms, to_ms)
        .await
        .into_iter()
        .filter(|r| r.attempt == 0)
        .map(|r| (r.task, r.slot))
        .collect()
}

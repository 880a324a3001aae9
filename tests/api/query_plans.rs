//! The filtered history and the task search are served by indexes: the statements the store
//! issues (built by the same functions, not written out here) are handed to the database's
//! planner — `EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on MariaDB — over a few thousand rows,
//! and every table they read must be reached through an index, never scanned whole.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, QueryTrait, Statement};
use tickwheel::domain::{TaskStatus, TaskType};
use tickwheel::store::{self, LogFilter, Outcome, TaskSearch};
use uuid::Uuid;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(the_history_and_the_task_search_are_served_by_indexes);

const USERS: i64 = 20;
const TASKS_PER_USER: i64 = 50;
const LOGS_PER_TASK: i64 = 40;

/// `USERS` users with `TASKS_PER_USER` tasks each, of every type and status; the first
/// `USERS` tasks get `LOGS_PER_TASK` log rows each.
async fn fill(db: &DatabaseConnection) -> Uuid {
    let statuses = TaskStatus::ALL;
    let types = TaskType::ALL;
    let mut first = None;
    let mut tasks = Vec::new();
    let mut logs = Vec::new();
    for n in 0..USERS * TASKS_PER_USER {
        let id = Uuid::now_v7();
        first.get_or_insert(id);
        let user = 1000 + n % USERS;
        let status = statuses[n as usize % statuses.len()].as_str();
        let kind = types[n as usize % types.len()].as_str();
        let at = 1_745_316_000_000 + n * 1000;
        tasks.push(format!(
            "('{id}', {user}, '{kind}', 'http://h{n}.example/p_{n}', 'POST', 60, '{status}', \
             0, 0, 1, {at}, {at})"
        ));
        if n < USERS {
            for a in 0..LOGS_PER_TASK {
                logs.push(format!(
                    "('{}', {user}, '{id}', {t}, {attempt}, {code}, 0, {t})",
                    Uuid::now_v7(),
                    t = at + a * 60_000,
                    attempt = a % 3,
                    code = if a % 2 == 0 { "200" } else { "NULL" },
                ));
            }
        }
    }
    for chunk in tasks.chunks(500) {
        db.execute_unprepared(&format!(
            "INSERT INTO tasks (task_id, user_id, type, http_endpoint, method, \
             interval_seconds, status, execution_count, consecutive_failures, version, \
             created_at, updated_at) VALUES {}",
            chunk.join(", ")
        ))
        .await
        .expect("insert tasks");
    }
    for chunk in logs.chunks(500) {
        db.execute_unprepared(&format!(
            "INSERT INTO task_logs (log_id, user_id, task_id, scheduled_time, attempt, \
             http_status, duration_ms, created_at) VALUES {}",
            chunk.join(", ")
        ))
        .await
        .expect("insert logs");
    }
    first.expect("a task")
}

/// The plan's lines for `sql`, each naming the table it reads and how.
async fn plan(db: &DatabaseConnection, backend: DbBackend, sql: &str) -> Vec<String> {
    match backend {
        DbBackend::Sqlite => db
            .query_all_raw(Statement::from_string(
                backend,
                format!("EXPLAIN QUERY PLAN {sql}"),
            ))
            .await
            .expect("query plan")
            .iter()
            .map(|r| r.try_get::<String>("", "detail").expect("detail"))
            .collect(),
        _ => db
            .query_all_raw(Statement::from_string(backend, format!("EXPLAIN {sql}")))
            .await
            .expect("explain")
            .iter()
            .map(|r| {
                let col = |c: &str| {
                    r.try_get::<Option<String>>("", c)
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| "NULL".into())
                };
                format!(
                    "table={} type={} key={} rows={} Extra={}",
                    col("table"),
                    col("type"),
                    col("key"),
                    r.try_get::<Option<i64>>("", "rows")
                        .ok()
                        .flatten()
                        .map_or("NULL".into(), |n| n.to_string()),
                    col("Extra"),
                )
            })
            .collect(),
    }
}

fn assert_indexed(backend: DbBackend, what: &str, sql: &str, plan: &[String]) {
    println!("{backend:?} {what}:\n  {sql}\n  {}", plan.join("\n  "));
    let reads: Vec<&String> = plan
        .iter()
        .filter(|l| l.contains("tasks") || l.contains("task_logs"))
        .collect();
    assert!(!reads.is_empty(), "{what}: no table in the plan: {plan:?}");
    for line in reads {
        let indexed = match backend {
            DbBackend::Sqlite => {
                line.contains("USING INDEX") || line.contains("USING COVERING INDEX")
            }
            _ => !line.contains("key=NULL") && !line.contains("type=ALL"),
        };
        assert!(
            indexed,
            "{what} reads a table without an index: {line}\n{sql}"
        );
    }
}

async fn the_history_and_the_task_search_are_served_by_indexes(backend: Backend) {
    let app = spawn_app(backend).await;
    let db = sea_orm::Database::connect(&app.db.url)
        .await
        .expect("connect to the test database");
    let task = fill(&db).await;
    let b = db.get_database_backend();
    if b == DbBackend::MySql {
        db.execute_unprepared("ANALYZE TABLE tasks, task_logs")
            .await
            .expect("analyze");
    }

    let logs = LogFilter {
        outcome: Some(Outcome::Failure),
        since_ms: Some(1_745_316_000_000),
        until_ms: Some(1_745_416_000_000),
    };
    let search = TaskSearch {
        text: Some("p_1".into()),
        task_type: Some(TaskType::Interval),
        statuses: vec![TaskStatus::Running, TaskStatus::Paused],
    };
    let unfiltered = TaskSearch::default();
    let statements = [
        (
            "the filtered log page",
            store::logs_page_query(task, &logs, 50, 0)
                .build(b)
                .to_string(),
        ),
        (
            "the filtered log count",
            store::logs_count_query(task, &logs).build(b).to_string(),
        ),
        (
            "the unfiltered log page",
            store::logs_page_query(task, &LogFilter::default(), 50, 0)
                .build(b)
                .to_string(),
        ),
        (
            "the searched task page",
            store::user_tasks_page_query(1003, &search, 50, 0)
                .build(b)
                .to_string(),
        ),
        (
            "the searched task count",
            store::user_tasks_count_query(1003, &search)
                .build(b)
                .to_string(),
        ),
        (
            "the unfiltered task page",
            store::user_tasks_page_query(1003, &unfiltered, 50, 0)
                .build(b)
                .to_string(),
        ),
        (
            "the unfiltered task count",
            store::user_tasks_count_query(1003, &unfiltered)
                .build(b)
                .to_string(),
        ),
        (
            "the counts per status",
            store::user_status_counts_query(1003).build(b).to_string(),
        ),
    ];
    for (what, sql) in &statements {
        let lines = plan(&db, b, sql).await;
        assert_indexed(b, what, sql, &lines);
        // The list's own index hands the rows over in the list's order.
        if *what == "the unfiltered task page" {
            assert!(
                lines
                    .iter()
                    .all(|l| !l.contains("TEMP B-TREE") && !l.contains("filesort")),
                "{what} sorts the user's tasks: {lines:?}"
            );
        }
    }
    let _ = db.close().await;
}

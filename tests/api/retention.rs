//! History retention: the pruner deletes log rows past their age or beyond their count, and
//! finished tasks past `finished_task_days`; a task's own `retention` is validated against the
//! global limits and applies when stricter; `/metrics` counts what was pruned. Old rows are
//! written straight into the test database with a `created_at` in the past.

use std::time::{Duration, Instant};

use entities::{task_logs, tasks};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, Set};
use serde_json::{json, Value};
use tickwheel::config::Settings;

use crate::helpers::{interval_task, spawn_app_with, token, Backend, TestApp};
use crate::on_both_backends;
use crate::recovery::Setup;

const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A fast pruner: a step every 20 ms, small batches, so tests see whole rounds quickly.
fn fast_pruner(s: &mut Settings) {
    s.retention.interval_ms = 20;
    s.retention.batch_size = 7;
    s.retention.tasks_per_pass = 3;
}

async fn connect(url: &str) -> DatabaseConnection {
    sea_orm::Database::connect(url)
        .await
        .expect("connect to the test database")
}

/// Inserts `n` log rows for `task_id`, the i-th created at `start_ms + i` ms.
async fn insert_logs(db: &DatabaseConnection, task_id: &str, start_ms: i64, n: i64) {
    let rows: Vec<task_logs::ActiveModel> = (0..n)
        .map(|i| task_logs::ActiveModel {
            log_id: Set(uuid::Uuid::new_v4().to_string()),
            user_id: Set(1001),
            task_id: Set(task_id.to_string()),
            scheduled_time: Set(start_ms + i),
            attempt: Set(1),
            http_status: Set(Some(200)),
            error: Set(None),
            duration_ms: Set(1),
            response_body: Set(None),
            created_at: Set(start_ms + i),
            trigger_kind: Set("schedule".into()),
            lateness_ms: Set(Some(0)),
        })
        .collect();
    for chunk in rows.chunks(500) {
        task_logs::Entity::insert_many(chunk.to_vec())
            .exec(db)
            .await
            .expect("insert log rows");
    }
}

async fn log_times(db: &DatabaseConnection, task_id: &str) -> Vec<i64> {
    let mut v: Vec<i64> = task_logs::Entity::find()
        .filter(task_logs::Column::TaskId.eq(task_id))
        .all(db)
        .await
        .expect("read logs")
        .into_iter()
        .map(|m| m.created_at)
        .collect();
    v.sort_unstable();
    v
}

async fn count_before(db: &DatabaseConnection, cutoff_ms: i64) -> u64 {
    task_logs::Entity::find()
        .filter(task_logs::Column::CreatedAt.lt(cutoff_ms))
        .count(db)
        .await
        .expect("count logs")
}

/// Polls `check` until it returns true; panics with `what` after `timeout`.
async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics_text(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of a series line (`name{labels} value`) in a Prometheus text.
fn series(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A task that will not fire during the test, with `extra` merged in.
fn idle_task(app: &TestApp, extra: Value) -> Value {
    let mut v = interval_task(app, "/idle", 86_400);
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

on_both_backends!(
    logs_past_their_age_or_count_are_pruned_and_the_rest_kept,
    bad_retention_inputs_are_refused_naming_the_field,
    finished_tasks_go_after_finished_task_days_and_live_ones_stay,
    pruning_continues_after_a_kill_and_loses_nothing_else,
);

async fn logs_past_their_age_or_count_are_pruned_and_the_rest_kept(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        fast_pruner(s);
        s.retention.max_age_days = 30;
        s.retention.max_logs_per_task = 12;
    })
    .await;
    let db = connect(&app.db.url).await;
    let now = now_ms();
    let plain = app.create_task(idle_task(&app, json!({}))).await;
    let week = app
        .create_task(idle_task(&app, json!({"retention": {"max_age_days": 7}})))
        .await;
    let few = app
        .create_task(idle_task(&app, json!({"retention": {"max_logs": 4}})))
        .await;
    let many = app.create_task(idle_task(&app, json!({}))).await;
    assert_eq!(
        app.task(&week).await["retention"],
        json!({"max_age_days": 7})
    );

    // plain: 9 rows 40 days old (past the global 30), 5 a day old.
    insert_logs(&db, &plain, now - 40 * DAY_MS, 9).await;
    insert_logs(&db, &plain, now - DAY_MS, 5).await;
    // week: 8 rows 10 days old (past its own 7, within the global 30), 3 a day old.
    insert_logs(&db, &week, now - 10 * DAY_MS, 8).await;
    insert_logs(&db, &week, now - DAY_MS, 3).await;
    // few: 10 recent rows, keeps its newest 4; many: 30 recent rows, keeps the global 12.
    insert_logs(&db, &few, now - DAY_MS, 10).await;
    insert_logs(&db, &many, now - 2 * DAY_MS, 30).await;

    let timeout = Duration::from_secs(60);
    wait_until("the pruner to reach its limits", timeout, || async {
        log_times(&db, &plain).await.len() == 5
            && log_times(&db, &week).await.len() == 3
            && log_times(&db, &few).await.len() == 4
            && log_times(&db, &many).await.len() == 12
    })
    .await;
    assert!(log_times(&db, &plain)
        .await
        .iter()
        .all(|&t| t >= now - DAY_MS));
    assert!(log_times(&db, &week)
        .await
        .iter()
        .all(|&t| t >= now - DAY_MS));
    // The newest are kept, oldest first out.
    let kept = log_times(&db, &few).await;
    assert_eq!(kept, (6..10).map(|i| now - DAY_MS + i).collect::<Vec<_>>());
    let kept = log_times(&db, &many).await;
    assert_eq!(
        kept,
        (18..30).map(|i| now - 2 * DAY_MS + i).collect::<Vec<_>>()
    );
    // The API shows the same.
    assert_eq!(app.logs(&few).await["total"], 4);

    let text = metrics_text(&app).await;
    let age = series(
        &text,
        "tickwheel_retention_pruned_rows_total{reason=\"age\"}",
    );
    let count = series(
        &text,
        "tickwheel_retention_pruned_rows_total{reason=\"count\"}",
    );
    assert_eq!(age, Some(17.0), "{text}");
    assert_eq!(count, Some(24.0), "{text}");
    wait_until("the oldest-row gauge", timeout, || async {
        let text = metrics_text(&app).await;
        series(&text, "tickwheel_retention_oldest_log_timestamp_seconds")
            .is_some_and(|s| (s - ((now - 2 * DAY_MS + 18) as f64 / 1000.0)).abs() < 0.01)
    })
    .await;
}

async fn bad_retention_inputs_are_refused_naming_the_field(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.retention.max_age_days = 30;
        s.retention.max_logs_per_task = 1000;
    })
    .await;
    for (retention, field) in [
        (json!({"max_age_days": 0}), "retention.max_age_days"),
        (json!({"max_age_days": 31}), "retention.max_age_days"),
        (json!({"max_age_days": -3}), "retention.max_age_days"),
        (json!({"max_age_days": "7"}), "retention.max_age_days"),
        (json!({"max_logs": 0}), "retention.max_logs"),
        (json!({"max_logs": 1001}), "retention.max_logs"),
        (json!({"max_logs": 2.5}), "retention.max_logs"),
        (json!({"keep": 3}), "retention.keep"),
        (json!("7 days"), "retention"),
    ] {
        let (status, v) = app
            .create_as(1001, &idle_task(&app, json!({ "retention": retention })))
            .await;
        assert_eq!(status, 400, "{retention}: {v}");
        assert_eq!(v["code"], "invalid_input", "{v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains(field),
            "{retention}: {v}"
        );
        let id = app.create_task(idle_task(&app, json!({}))).await;
        let (status, v) = patch(&app, &id, json!({ "retention": retention })).await;
        assert_eq!(status, 400, "patch {retention}: {v}");
        assert!(v["message"].as_str().unwrap_or("").contains(field), "{v}");
    }

    // A valid patch is stored and shown; null goes back to the global limits.
    let id = app.create_task(idle_task(&app, json!({}))).await;
    assert_eq!(app.task(&id).await["retention"], Value::Null);
    let (status, v) = patch(
        &app,
        &id,
        json!({"retention": {"max_age_days": 30, "max_logs": 5}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        app.task(&id).await["retention"],
        json!({"max_age_days": 30, "max_logs": 5})
    );
    let (status, v) = patch(&app, &id, json!({"retention": null})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(app.task(&id).await["retention"], Value::Null);
}

async fn patch(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{id}")))
        .bearer_auth(token(1001))
        .json(&body)
        .send()
        .await
        .expect("patch");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn finished_tasks_go_after_finished_task_days_and_live_ones_stay(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        fast_pruner(s);
        s.retention.finished_task_days = 2;
    })
    .await;
    let db = connect(&app.db.url).await;
    let now = now_ms();
    let old_done = app.create_task(idle_task(&app, json!({}))).await;
    let new_done = app.create_task(idle_task(&app, json!({}))).await;
    let live = app.create_task(idle_task(&app, json!({}))).await;
    for id in [&old_done, &new_done] {
        let (status, v) = app.cancel(id).await;
        assert_eq!(status, 200, "{v}");
    }
    for id in [&old_done, &new_done, &live] {
        insert_logs(&db, id, now - DAY_MS, 15).await;
    }
    // Finished three days ago (past the two), one day ago (within); the live task's last update
    // is as old, and it stays all the same.
    set_updated_at(&db, &old_done, now - 3 * DAY_MS).await;
    set_updated_at(&db, &new_done, now - DAY_MS).await;
    set_updated_at(&db, &live, now - 3 * DAY_MS).await;

    wait_until(
        "the old finished task to go",
        Duration::from_secs(60),
        || async {
            app.get_json(&format!("/api/v1/tasks/{old_done}"), 1001)
                .await
                .0
                == 404
        },
    )
    .await;
    assert!(log_times(&db, &old_done).await.is_empty());
    assert_eq!(log_times(&db, &new_done).await.len(), 15);
    assert_eq!(log_times(&db, &live).await.len(), 15);
    assert_eq!(app.task(&live).await["status"], "pending");
    assert_eq!(app.task(&new_done).await["status"], "stopped");
    let text = metrics_text(&app).await;
    assert_eq!(
        series(
            &text,
            "tickwheel_retention_pruned_rows_total{reason=\"finished_task\"}"
        ),
        Some(15.0),
        "{text}"
    );
    assert_eq!(
        series(&text, "tickwheel_retention_finished_tasks_deleted_total"),
        Some(1.0),
        "{text}"
    );
}

async fn set_updated_at(db: &DatabaseConnection, id: &str, at_ms: i64) {
    tasks::Entity::update_many()
        .col_expr(tasks::Column::UpdatedAt, Expr::value(at_ms))
        .filter(tasks::Column::TaskId.eq(id))
        .exec(db)
        .await
        .expect("set updated_at");
}

async fn pruning_continues_after_a_kill_and_loses_nothing_else(backend: Backend) {
    let setup = Setup::new(backend).await;
    let envs = [
        ("TICKWHEEL__RETENTION__INTERVAL_MS", "30"),
        ("TICKWHEEL__RETENTION__BATCH_SIZE", "100"),
    ];
    let server = crate::recovery::Server::start(setup.command(&["serve"], &envs)).await;
    let db = connect(setup.db_url()).await;
    let body = json!({
        "user_id": 1001, "type": "interval",
        "http_endpoint": "http://127.0.0.1:9/", "interval_seconds": 86_400,
    });
    let id = server.create_id(&body).await;
    let now = now_ms();
    let cutoff = now - 30 * DAY_MS;
    let old = 6_000;
    insert_logs(&db, &id, now - 60 * DAY_MS, old).await;
    insert_logs(&db, &id, now - DAY_MS, 20).await;

    // Kill it in the middle of the work.
    wait_until("some pruning", Duration::from_secs(60), || async {
        count_before(&db, cutoff).await < old as u64
    })
    .await;
    let mut server = server;
    server.kill9();
    let left = count_before(&db, cutoff).await;
    assert!(left > 0, "pruning finished before the kill; seed more rows");

    let server = crate::recovery::Server::start(setup.command(&["serve"], &envs)).await;
    wait_until(
        "the rest of the pruning",
        Duration::from_secs(120),
        || async { count_before(&db, cutoff).await == 0 },
    )
    .await;
    assert_eq!(log_times(&db, &id).await.len(), 20, "recent rows kept");
    let task = server.task(&id).await;
    assert_eq!(task["status"], "pending", "{task}");
}

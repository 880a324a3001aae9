//! Migrations keep what is already stored: a task written by the schema before a migration is
//! still there, unchanged and served, after the application has applied it.

use std::time::Duration;

use entities::tasks;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, EntityTrait, Statement};
use tickwheel::startup::Application;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(a_task_stored_before_the_type_column_was_renamed_keeps_its_type);

async fn a_task_stored_before_the_type_column_was_renamed_keeps_its_type(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::create(backend, dir.path()).await;
    let conn = sea_orm::Database::connect(&db.url)
        .await
        .expect("connect to the test database");
    let rename = Migrator::migrations()
        .iter()
        .position(|m| m.name().ends_with("_rename_task_type_to_type"))
        .expect("a migration renames tasks.task_type to type");
    Migrator::up(&conn, Some(rename as u32))
        .await
        .expect("the migrations before the rename");

    // A task as the schema before the rename stored it.
    let id = uuid::Uuid::now_v7();
    let now = chrono::Utc::now().timestamp_millis();
    let next = now + 3_600_000;
    conn.execute_unprepared(&format!(
        "INSERT INTO tasks (task_id, user_id, task_type, http_endpoint, method, \
         interval_seconds, start_time, status, next_run_time, execution_count, \
         consecutive_failures, version, created_at, updated_at) VALUES \
         ('{id}', 1001, 'interval', 'http://127.0.0.1:9/before', 'POST', 3600, {next}, \
         'pending', {next}, 0, 0, 1, {now}, {now})"
    ))
    .await
    .expect("insert a row with the old column name");
    let _ = conn.close().await;

    // The application applies the rest at start-up, then recovers and serves the task.
    let settings = test_settings(dir.path(), &db.url);
    tickwheel::telemetry::init(&settings.log);
    let app = Application::build(settings)
        .await
        .expect("the application starts on the old database");
    let base = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let view = wait_for_task(&client, &base, &id.to_string()).await;
    assert_eq!(view["type"], "interval", "{view}");
    assert_eq!(view["http_endpoint"], "http://127.0.0.1:9/before", "{view}");
    assert_eq!(view["interval_seconds"], 3600, "{view}");
    assert_eq!(view["status"], "pending", "{view}");
    assert_eq!(
        parse_time(&view["next_run_time"]),
        next,
        "the schedule is kept: {view}"
    );

    // And the column has its new name.
    let conn = sea_orm::Database::connect(&db.url)
        .await
        .expect("connect again");
    let row = tasks::Entity::find_by_id(id.to_string())
        .one(&conn)
        .await
        .expect("read through the entity")
        .expect("the row is still there");
    assert_eq!(row.task_type, "interval");
    let renamed = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT type FROM tasks",
        ))
        .await
        .expect("tasks.type exists")
        .expect("one row");
    assert_eq!(
        renamed.try_get::<String>("", "type").expect("a string"),
        "interval"
    );
    let _ = conn.close().await;
}

async fn wait_for_task(client: &reqwest::Client, base: &str, id: &str) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        if let Ok(r) = client
            .get(format!("{base}/api/v1/tasks/{id}"))
            .bearer_auth(token(1001))
            .send()
            .await
        {
            if r.status() == 200 {
                return r.json().await.expect("a task view");
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the task stored before the migration is never served"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

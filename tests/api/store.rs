//! The storage edge's batched writes, against the real databases.

use entities::tasks;
use sea_orm::EntityTrait;
use tickwheel::store::{advance_many, AdvanceRow};

use crate::helpers::{interval_task, spawn_app, Backend};
use crate::on_both_backends;

on_both_backends!(batched_advances_update_active_tasks_and_never_touch_ended_ones);

async fn batched_advances_update_active_tasks_and_never_touch_ended_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    // Idle tasks (an hour apart), so nothing but this test writes their counters.
    let active = app.create_task(interval_task(&app, "/a", 3600)).await;
    let ended = app.create_task(interval_task(&app, "/b", 3600)).await;
    let (status, _) = app.cancel(&ended).await;
    assert_eq!(status, 200);
    let db = sea_orm::Database::connect(&app.db.url)
        .await
        .expect("connect to the test database");
    let before = row(&db, &ended).await;

    advance_many(
        &db,
        &[
            AdvanceRow {
                task_id: &active,
                next_run_time: Some(4_102_444_800_000),
                execution_count: 7,
                consecutive_failures: 2,
            },
            AdvanceRow {
                task_id: &ended,
                next_run_time: Some(4_102_444_800_000),
                execution_count: 9,
                consecutive_failures: 3,
            },
        ],
    )
    .await
    .expect("advance_many");

    let a = row(&db, &active).await;
    assert_eq!(a.next_run_time, Some(4_102_444_800_000));
    assert_eq!(a.execution_count, 7);
    assert_eq!(a.consecutive_failures, 2);
    assert_eq!(a.status, "pending");

    let b = row(&db, &ended).await;
    assert_eq!(b.status, "stopped");
    assert_eq!(b.next_run_time, before.next_run_time);
    assert_eq!(b.execution_count, before.execution_count);
    assert_eq!(b.consecutive_failures, before.consecutive_failures);
}

async fn row(db: &sea_orm::DatabaseConnection, id: &str) -> tasks::Model {
    tasks::Entity::find_by_id(id.to_string())
        .one(db)
        .await
        .expect("read the task row")
        .unwrap_or_else(|| panic!("no row for task {id}"))
}

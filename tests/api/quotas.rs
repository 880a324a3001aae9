//! Per-user quotas (README, "Configuration"): a create or a schedule change that would take a user
//! past `max_active_tasks_per_user` or `max_fires_per_minute_per_user` is refused with 429
//! `quota_exceeded` naming the figure, admin tokens included, and a slot freed by a task that
//! ends can be taken again.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

/// A task for `user` on the sink that first runs in an hour (so nothing fires meanwhile).
fn idle_task(app: &TestApp, user: i64, schedule: Value) -> Value {
    let mut task = json!({
        "user_id": user,
        "http_endpoint": app.sink.url("/quota"),
        "start_time": rfc3339_in(3_600_000),
    });
    for (k, v) in schedule.as_object().expect("schedule fields") {
        task[k] = v.clone();
    }
    task
}

fn every(seconds: u64) -> Value {
    json!({"type": "interval", "interval_seconds": seconds})
}

fn cron(expression: &str) -> Value {
    json!({"type": "cron", "cron_expression": expression})
}

async fn create_with(app: &TestApp, bearer: &str, body: &Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url("/api/v1/tasks"))
        .bearer_auth(bearer)
        .json(body)
        .send()
        .await
        .expect("create");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn patch_as(app: &TestApp, user: i64, id: &str, body: &Value) -> (u16, Value) {
    let r = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{id}")))
        .bearer_auth(token(user))
        .json(body)
        .send()
        .await
        .expect("patch");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn assert_quota(case: &str, status: u16, v: &Value, names: &str) {
    assert_eq!(status, 429, "{case}: {v}");
    assert_eq!(v["code"], "quota_exceeded", "{case}: {v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(message.contains(names), "{case}: {message}");
}

on_both_backends!(the_active_task_quota_refuses_a_create_until_a_task_ends);

async fn the_active_task_quota_refuses_a_create_until_a_task_ends(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.limits.max_active_tasks_per_user = 2).await;
    let first = app.create_task(idle_task(&app, 1001, every(60))).await;
    app.create_task(idle_task(&app, 1001, cron("0 0 12 * * ?")))
        .await;

    let (status, v) = app.create_as(1001, &idle_task(&app, 1001, every(60))).await;
    assert_quota(
        "a third task",
        status,
        &v,
        "max_active_tasks_per_user: user 1001 has 2 active tasks, the limit is 2",
    );
    let (status, v) = create_with(&app, &admin_token(), &idle_task(&app, 1001, every(60))).await;
    assert_quota("an admin acting for the user", status, &v, "user 1001");
    // Another user has quota of their own.
    let (status, v) = app.create_as(1002, &idle_task(&app, 1002, every(60))).await;
    assert_eq!(status, 201, "{v}");

    let (status, _) = app.cancel(&first).await;
    assert_eq!(status, 200);
    let (status, v) = app.create_as(1001, &idle_task(&app, 1001, every(60))).await;
    assert_eq!(status, 201, "a cancelled task frees its slot: {v}");
}

on_both_backends!(concurrent_creates_never_both_take_the_last_slot);

async fn concurrent_creates_never_both_take_the_last_slot(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.limits.max_active_tasks_per_user = 3).await;
    let body = idle_task(&app, 1001, every(60));
    let results = futures_util::future::join_all((0..10).map(|_| app.create_as(1001, &body))).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let refused = results
        .iter()
        .filter(|(s, v)| *s == 429 && v["code"] == "quota_exceeded")
        .count();
    assert_eq!((created, refused), (3, 7), "{results:?}");
}

on_both_backends!(the_fires_per_minute_quota_counts_every_schedule_by_its_rate);

async fn the_fires_per_minute_quota_counts_every_schedule_by_its_rate(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.limits.max_fires_per_minute_per_user = 30).await;

    // An interval of 1 s fires 60 times a minute; a cron of every second too.
    let (status, v) = app.create_as(1001, &idle_task(&app, 1001, every(1))).await;
    assert_quota(
        "an interval of 1 s",
        status,
        &v,
        "max_fires_per_minute_per_user: user 1001's active tasks fire 0 times a minute and this \
         task would add 60; the limit is 30",
    );
    let (status, v) = app
        .create_as(1001, &idle_task(&app, 1001, cron("* * * * * ?")))
        .await;
    assert_quota("a cron of every second", status, &v, "would add 60");

    // Every 2 s is 30 a minute: exactly the limit, and then nothing more fits.
    let half = app.create_task(idle_task(&app, 1001, every(2))).await;
    let (status, v) = create_with(&app, &admin_token(), &idle_task(&app, 1001, every(3600))).await;
    assert_quota(
        "an admin acting for the user",
        status,
        &v,
        "fire 30 times a minute",
    );

    // A patch that speeds a schedule up past the limit is refused; one within it is not.
    let (status, v) = app.create_as(1002, &idle_task(&app, 1002, every(60))).await;
    assert_eq!(status, 201, "{v}");
    let other = v["task_id"].as_str().expect("task_id").to_owned();
    let (status, v) = patch_as(&app, 1002, &other, &json!({"interval_seconds": 1})).await;
    assert_quota("a patch to every second", status, &v, "from 1 to 60");
    let (status, v) = patch_as(&app, 1002, &other, &json!({"interval_seconds": 2})).await;
    assert_eq!(status, 200, "{v}");

    // A cron counts its busiest minute: every 2 s fits once the interval task is gone.
    let (status, _) = app.cancel(&half).await;
    assert_eq!(status, 200);
    let (status, v) = app
        .create_as(1001, &idle_task(&app, 1001, cron("*/2 * * * * ?")))
        .await;
    assert_eq!(status, 201, "{v}");
}

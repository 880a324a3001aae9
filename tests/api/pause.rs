//! Pause and resume (README, "The API": states; `PUT …/pause`, `PUT …/resume`): a paused task
//! is kept and not fired, across a `kill -9` too; resume takes the next slot of its schedule
//! strictly after now; both honour `If-Match`, refuse the states that do not allow them with
//! 409 `invalid_state`, hide another user's task (404), and count against the quotas. Every
//! test runs on SQLite and MariaDB.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;
use crate::recovery::{interval_body, Setup, EVENT_WAIT};

/// How long a paused task is watched for fires that must not come (several of its slots).
const QUIET: Duration = Duration::from_millis(3500);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn sleep(d: Duration) {
    actix_web::rt::time::sleep(d).await;
}

/// `PUT {base}/api/v1/tasks/{id}/{action}` with `bearer` and an optional `If-Match`.
async fn put_action(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    action: &str,
    bearer: &str,
    if_match: Option<i64>,
) -> (u16, Value) {
    let mut req = client
        .put(format!("{base}/api/v1/tasks/{id}/{action}"))
        .bearer_auth(bearer);
    if let Some(v) = if_match {
        req = req.header("If-Match", v.to_string());
    }
    let r = req.send().await.expect("PUT");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn act(app: &TestApp, id: &str, action: &str, if_match: Option<i64>) -> (u16, Value) {
    put_action(
        &app.client,
        &app.address,
        id,
        action,
        &token(1001),
        if_match,
    )
    .await
}

/// A task for user 1001 that first runs in an hour (so nothing fires meanwhile).
fn idle_task(app: &TestApp, seconds: u64) -> Value {
    json!({
        "user_id": 1001,
        "type": "interval",
        "http_endpoint": app.sink.url("/pause/idle"),
        "interval_seconds": seconds,
        "start_time": rfc3339_in(3_600_000),
    })
}

fn assert_code(case: &str, got: (u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{case}: {}", got.1);
    assert_eq!(got.1["code"], code, "{case}: {}", got.1);
}

/// The scheduled epoch ms in an arrival's `webhook-id: <task_id>:<ms>`.
fn slot_of(a: &crate::sink::Arrival) -> i64 {
    let h = a.header("webhook-id").expect("webhook-id");
    let (_, ms) = h.rsplit_once(':').expect("webhook-id is <task_id>:<ms>");
    ms.parse().expect("epoch ms")
}

on_both_backends!(
    a_paused_task_stops_firing_and_resumes_on_its_grid_strictly_after_now,
    pause_and_resume_refuse_stale_versions_wrong_states_and_other_users_tasks,
    paused_tasks_count_as_active_and_a_resume_is_admitted_by_the_rate_quota,
    a_paused_task_stays_paused_and_quiet_across_kill_9,
);

async fn a_paused_task_stops_firing_and_resumes_on_its_grid_strictly_after_now(backend: Backend) {
    const PATH: &str = "/pause/tick";
    let app = spawn_app(backend).await;
    let (status, created) = app.create_as(1001, &interval_task(&app, PATH, 1)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["task_id"].as_str().expect("task_id").to_string();
    let grid = parse_time(&created["next_run_time"]);
    app.sink.wait_for(PATH, 2, Duration::from_secs(15)).await;

    let before = app.task(&id).await;
    let (status, paused) = act(&app, &id, "pause", None).await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["status"], "paused", "{paused}");
    assert_eq!(paused["next_run_time"], Value::Null, "{paused}");
    assert!(
        paused["version"].as_i64() > before["version"].as_i64(),
        "a pause bumps the version: {before} -> {paused}"
    );
    // The answer came after any call on the wire finished: nothing arrives from here on.
    let paused_at = now_ms();
    let count = paused["execution_count"].clone();
    sleep(QUIET).await;
    let late: Vec<_> = app
        .sink
        .arrivals(PATH)
        .into_iter()
        .filter(|a| a.at_ms >= paused_at)
        .collect();
    assert!(late.is_empty(), "a paused task fired: {late:?}");
    let still = app.task(&id).await;
    assert_eq!(still["status"], "paused", "{still}");
    assert_eq!(
        still["execution_count"], count,
        "counters are kept: {still}"
    );

    let asked = now_ms();
    let (status, resumed) = act(&app, &id, "resume", None).await;
    let answered = now_ms();
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["status"], "running", "{resumed}");
    let next = parse_time(&resumed["next_run_time"]);
    assert!(
        next > asked,
        "the next run is after the resume: {next} <= {asked}"
    );
    assert!(next <= answered + 1000, "the first slot after now: {next}");
    assert_eq!(
        (next - grid).rem_euclid(1000),
        0,
        "on the task's grid: {next}"
    );

    let start = std::time::Instant::now();
    let fired = loop {
        let got: Vec<_> = app
            .sink
            .arrivals(PATH)
            .into_iter()
            .filter(|a| a.at_ms >= paused_at)
            .collect();
        if !got.is_empty() {
            break got;
        }
        assert!(start.elapsed() < EVENT_WAIT, "the resumed task never fired");
        sleep(Duration::from_millis(20)).await;
    };
    assert!(
        fired.iter().all(|a| slot_of(a) >= next),
        "no slot inside the pause is fired: {fired:?}"
    );
}

async fn pause_and_resume_refuse_stale_versions_wrong_states_and_other_users_tasks(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let id = app.create_task(idle_task(&app, 60)).await;
    let v = app.task(&id).await;
    let version = v["version"].as_i64().expect("version");
    let start = v["next_run_time"].clone();

    // Another user's task does not exist for them; an admin may act for anyone.
    for action in ["pause", "resume"] {
        let got = put_action(&app.client, &app.address, &id, action, &token(1002), None).await;
        assert_code(action, got, 404, "task_not_found");
    }
    assert_code(
        "resume of a pending task",
        act(&app, &id, "resume", None).await,
        409,
        "invalid_state",
    );
    assert_code(
        "pause at a stale version",
        act(&app, &id, "pause", Some(version + 7)).await,
        409,
        "version_mismatch",
    );
    let (status, paused) = act(&app, &id, "pause", Some(version)).await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["version"], version + 1, "{paused}");
    assert_code(
        "pause of a paused task",
        act(&app, &id, "pause", None).await,
        409,
        "invalid_state",
    );
    let r = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{id}")))
        .bearer_auth(token(1001))
        .json(&json!({"interval_seconds": 30}))
        .send()
        .await
        .expect("patch");
    let got = (r.status().as_u16(), r.json().await.unwrap_or(Value::Null));
    assert_code("patch of a paused task", got, 409, "invalid_state");
    let (status, list) = app
        .get_json("/api/v1/users/1001/tasks?status=paused", 1001)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["tasks"][0]["status"], "paused", "{list}");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tickwheel_tasks{state=\"paused\"}") && l.ends_with(" 1")),
        "the paused task is counted by state:\n{metrics}"
    );
    assert_code(
        "resume at a stale version",
        act(&app, &id, "resume", Some(version)).await,
        409,
        "version_mismatch",
    );
    let (status, resumed) = put_action(
        &app.client,
        &app.address,
        &id,
        "resume",
        &admin_token(),
        Some(version + 1),
    )
    .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["status"], "pending", "never executed: {resumed}");
    assert_eq!(resumed["version"], version + 2, "{resumed}");
    assert_eq!(
        resumed["next_run_time"], start,
        "a start time still ahead stays the first run"
    );

    // Paused, then cancelled: stopped, and neither action applies any more.
    let (status, _) = act(&app, &id, "pause", None).await;
    assert_eq!(status, 200);
    let (status, v) = app.cancel(&id).await;
    assert_eq!(status, 200, "a paused task can be cancelled: {v}");
    for action in ["pause", "resume"] {
        assert_code(
            &format!("{action} of a stopped task"),
            act(&app, &id, action, None).await,
            409,
            "invalid_state",
        );
    }

    // A completed task cannot be paused.
    let once = app.create_task(once_task(&app, "/pause/once", None)).await;
    app.wait_task(&once, Duration::from_secs(15), |v| {
        v["status"] == "completed"
    })
    .await;
    assert_code(
        "pause of a completed task",
        act(&app, &once, "pause", None).await,
        409,
        "invalid_state",
    );
}

async fn paused_tasks_count_as_active_and_a_resume_is_admitted_by_the_rate_quota(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.limits.max_active_tasks_per_user = 2;
        s.limits.max_fires_per_minute_per_user = 30;
    })
    .await;
    // Every 2 s is 30 a minute: the whole rate quota.
    let first = app.create_task(idle_task(&app, 2)).await;
    let (status, v) = act(&app, &first, "pause", None).await;
    assert_eq!(status, 200, "{v}");
    // A paused task fires nothing: its rate is free for another task...
    let second = app.create_task(idle_task(&app, 2)).await;
    // ...but it still holds its place among the user's active tasks.
    let (status, v) = app.create_as(1001, &idle_task(&app, 3600)).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["code"], "quota_exceeded", "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("max_active_tasks_per_user: user 1001 has 2 active tasks"),
        "{message}"
    );
    // Resuming would take the rate past the limit: refused, and the task stays paused.
    let (status, v) = act(&app, &first, "resume", None).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["code"], "quota_exceeded", "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("max_fires_per_minute_per_user"),
        "{message}"
    );
    assert_eq!(app.task(&first).await["status"], "paused");
    // Once the other is gone, it fits.
    let (status, _) = app.cancel(&second).await;
    assert_eq!(status, 200);
    let (status, v) = act(&app, &first, "resume", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "pending", "{v}");
}

async fn a_paused_task_stays_paused_and_quiet_across_kill_9(backend: Backend) {
    const PATH: &str = "/pause/restart";
    let sink = crate::sink::Sink::start();
    let setup = Setup::new(backend).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut first = setup.serve().await;
    let id = first.create_id(&interval_body(&sink, PATH)).await;
    sink.wait_for(PATH, 1, EVENT_WAIT).await;
    let base = first.url("");
    let (status, v) = put_action(&client, &base, &id, "pause", &token(1001), None).await;
    assert_eq!(status, 200, "{v}");
    let count = v["execution_count"].clone();
    // Committed before the answer: kill -9 at once.
    first.kill9();

    let restarted_at = now_ms();
    let second = setup.serve().await;
    let v = second.task(&id).await;
    assert_eq!(v["status"], "paused", "{v}");
    sleep(QUIET).await;
    let late: Vec<_> = sink
        .arrivals(PATH)
        .into_iter()
        .filter(|a| a.at_ms >= restarted_at)
        .collect();
    assert!(
        late.is_empty(),
        "a paused task fired after the restart: {late:?}"
    );
    let v = second.task(&id).await;
    assert_eq!(v["status"], "paused", "{v}");
    assert_eq!(v["execution_count"], count, "{v}");

    // And it can be resumed on the new process.
    let resumed_at = now_ms();
    let (status, v) = put_action(&client, &second.url(""), &id, "resume", &token(1001), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "running", "{v}");
    let start = std::time::Instant::now();
    while !sink.arrivals(PATH).iter().any(|a| a.at_ms >= resumed_at) {
        assert!(start.elapsed() < EVENT_WAIT, "the resumed task never fired");
        sleep(Duration::from_millis(20)).await;
    }
}

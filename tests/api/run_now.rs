//! Run now (README, "The API": `POST …/run`): one extra execution at once, outside the
//! schedule, through the normal path (retries, logging with `trigger: "manual"`, stop
//! conditions, `execution_count`), moving no scheduled slot; 409 `execution_in_flight` while
//! an execution is in flight, 409 `invalid_state` for a finished task, 404 for another user's;
//! a paused task runs once and stays paused; a `kill -9` in the middle loses nothing and
//! fires nothing twice. Every test runs on SQLite and MariaDB.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;
use crate::recovery::{Setup, EVENT_WAIT};
use crate::sink::{Arrival, Reply};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn sleep(d: Duration) {
    actix_web::rt::time::sleep(d).await;
}

/// `POST {base}/api/v1/tasks/{id}/run` as `bearer`.
async fn run_at(client: &reqwest::Client, base: &str, id: &str, bearer: &str) -> (u16, Value) {
    let r = client
        .post(format!("{base}/api/v1/tasks/{id}/run"))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("POST run");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn run(app: &TestApp, id: &str) -> (u16, Value) {
    run_at(&app.client, &app.address, id, &token(1001)).await
}

/// A run-now answer: 202 with its scheduled time (epoch ms).
fn started(got: (u16, Value)) -> i64 {
    assert_eq!(got.0, 202, "{}", got.1);
    assert_eq!(got.1["status"], "success", "{}", got.1);
    parse_time(&got.1["scheduled_time"])
}

fn assert_code(case: &str, got: (u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{case}: {}", got.1);
    assert_eq!(got.1["code"], code, "{case}: {}", got.1);
}

/// A task for user 1001 at `url` that first runs in an hour (so nothing fires meanwhile).
fn idle_body(url: String, extra: Value) -> Value {
    let mut body = json!({
        "user_id": 1001,
        "type": "interval",
        "http_endpoint": url,
        "interval_seconds": 3600,
        "start_time": rfc3339_in(3_600_000),
        "retry": {"max_retries": 2, "backoff_ms": 100},
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

/// `(task id, its next run)` of a new idle task.
async fn idle(app: &TestApp, path: &str, extra: Value) -> (String, i64) {
    let (status, created) = app
        .create_as(1001, &idle_body(app.sink.url(path), extra))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["task_id"].as_str().expect("task_id").to_string();
    (id, parse_time(&created["next_run_time"]))
}

/// The `(task id, epoch ms)` of an arrival's `webhook-id`.
fn webhook_id(a: &Arrival) -> (String, i64) {
    let h = a.header("webhook-id").expect("webhook-id");
    let (id, ms) = h.rsplit_once(':').expect("webhook-id is <task_id>:<ms>");
    (id.to_string(), ms.parse().expect("epoch ms"))
}

on_both_backends!(
    run_now_sends_one_manual_execution_and_moves_no_slot,
    run_now_retries_a_failing_call_under_one_webhook_id,
    max_cnt_reached_by_a_manual_run_completes_the_task,
    run_now_is_refused_while_an_execution_is_in_flight,
    run_now_refuses_finished_tasks_and_hides_other_users_tasks,
    a_paused_task_runs_once_and_stays_paused,
    a_kill_9_during_a_manual_run_loses_nothing_and_fires_nothing_twice,
);

async fn run_now_sends_one_manual_execution_and_moves_no_slot(backend: Backend) {
    const PATH: &str = "/run/idle";
    let app = spawn_app(backend).await;
    let (id, next) = idle(&app, PATH, json!({})).await;

    let asked = now_ms();
    let slot = started(run(&app, &id).await);
    assert!(
        slot >= asked && slot <= now_ms(),
        "the moment of the request: {slot}"
    );
    let got = app.sink.wait_for(PATH, 1, EVENT_WAIT).await;
    assert_eq!(webhook_id(&got[0]), (id.clone(), slot));

    let v = app
        .wait_task(&id, EVENT_WAIT, |v| v["execution_count"] == 1)
        .await;
    assert_eq!(v["status"], "running", "{v}");
    assert_eq!(parse_time(&v["next_run_time"]), next, "no slot moved: {v}");
    let logs = app.wait_logs(&id, 1, EVENT_WAIT).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["trigger"], "manual", "{logs:?}");
    assert_eq!(parse_time(&logs[0]["scheduled_time"]), slot, "{logs:?}");
    assert_eq!(logs[0]["http_status"], 200, "{logs:?}");
    assert_eq!(app.sink.count(PATH), 1, "exactly one call");
}

async fn run_now_retries_a_failing_call_under_one_webhook_id(backend: Backend) {
    const PATH: &str = "/run/retry";
    let app = spawn_app(backend).await;
    app.sink
        .script(PATH, [Reply::status(500), Reply::status(200)]);
    let (id, next) = idle(&app, PATH, json!({})).await;

    let slot = started(run(&app, &id).await);
    let got = app.sink.wait_for(PATH, 2, EVENT_WAIT).await;
    for a in &got {
        assert_eq!(
            webhook_id(a),
            (id.clone(), slot),
            "the retry is the same execution"
        );
    }
    let v = app
        .wait_task(&id, EVENT_WAIT, |v| v["execution_count"] == 1)
        .await;
    assert_eq!(v["consecutive_failures"], 0, "{v}");
    assert_eq!(parse_time(&v["next_run_time"]), next, "{v}");
    let logs = app.wait_logs(&id, 2, EVENT_WAIT).await;
    let mut attempts: Vec<(i64, i64)> = logs
        .iter()
        .map(|l| {
            assert_eq!(l["trigger"], "manual", "{l}");
            (
                l["attempt"].as_i64().unwrap_or(0),
                l["http_status"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    attempts.sort_unstable();
    assert_eq!(attempts, vec![(1, 500), (2, 200)]);
    sleep(Duration::from_millis(500)).await;
    assert_eq!(app.sink.count(PATH), 2, "nothing more after the success");
}

async fn max_cnt_reached_by_a_manual_run_completes_the_task(backend: Backend) {
    const PATH: &str = "/run/max-cnt";
    let app = spawn_app(backend).await;
    let (id, _) = idle(&app, PATH, json!({"stop_condition": {"max_cnt": 1}})).await;
    started(run(&app, &id).await);
    let v = app
        .wait_task(&id, EVENT_WAIT, |v| v["status"] == "completed")
        .await;
    assert_eq!(v["execution_count"], 1, "{v}");
    assert_eq!(v["next_run_time"], Value::Null, "{v}");
    assert_code(
        "run now of the completed task",
        run(&app, &id).await,
        409,
        "invalid_state",
    );
    assert_eq!(app.sink.count(PATH), 1);
}

async fn run_now_is_refused_while_an_execution_is_in_flight(backend: Backend) {
    const PATH: &str = "/run/slow";
    let app = spawn_app(backend).await;
    app.sink.script(
        PATH,
        [Reply::status(200).delay(Duration::from_millis(2000))],
    );
    let (id, _) = idle(&app, PATH, json!({})).await;

    let first = started(run(&app, &id).await);
    app.sink.wait_for(PATH, 1, EVENT_WAIT).await;
    let refused = run(&app, &id).await;
    assert_code(
        "a second run now",
        refused.clone(),
        409,
        "execution_in_flight",
    );
    assert!(
        refused.1["message"]
            .as_str()
            .is_some_and(|m| m.contains("in flight")),
        "{}",
        refused.1
    );
    app.wait_task(&id, EVENT_WAIT, |v| v["execution_count"] == 1)
        .await;
    // Once it has ended, a new one may start.
    let second = started(run(&app, &id).await);
    assert!(second > first, "{second} after {first}");
    let got = app.sink.wait_for(PATH, 2, EVENT_WAIT).await;
    assert_eq!(webhook_id(&got[1]).1, second);
    app.wait_task(&id, EVENT_WAIT, |v| v["execution_count"] == 2)
        .await;
}

async fn run_now_refuses_finished_tasks_and_hides_other_users_tasks(backend: Backend) {
    const PATH: &str = "/run/refused";
    let app = spawn_app(backend).await;
    let (id, _) = idle(&app, PATH, json!({})).await;

    assert_code(
        "another user's task",
        run_at(&app.client, &app.address, &id, &token(1002)).await,
        404,
        "task_not_found",
    );
    assert_code(
        "an unknown task",
        run(&app, &uuid::Uuid::now_v7().to_string()).await,
        404,
        "task_not_found",
    );
    assert_code("not a UUID", run(&app, "nope").await, 400, "invalid_input");
    let (status, v) = app.cancel(&id).await;
    assert_eq!(status, 200, "{v}");
    let refused = run(&app, &id).await;
    assert_code("a stopped task", refused.clone(), 409, "invalid_state");
    assert!(
        refused.1["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("status:")),
        "names the field: {}",
        refused.1
    );
    sleep(Duration::from_millis(300)).await;
    assert_eq!(app.sink.count(PATH), 0, "nothing was sent");
}

async fn a_paused_task_runs_once_and_stays_paused(backend: Backend) {
    const PATH: &str = "/run/paused";
    let app = spawn_app(backend).await;
    let (id, _) = idle(&app, PATH, json!({})).await;
    let r = app
        .client
        .put(app.url(&format!("/api/v1/tasks/{id}/pause")))
        .bearer_auth(token(1001))
        .send()
        .await
        .expect("pause");
    assert_eq!(r.status().as_u16(), 200);

    let slot = started(run(&app, &id).await);
    let got = app.sink.wait_for(PATH, 1, EVENT_WAIT).await;
    assert_eq!(webhook_id(&got[0]), (id.clone(), slot));
    let v = app
        .wait_task(&id, EVENT_WAIT, |v| v["execution_count"] == 1)
        .await;
    assert_eq!(v["status"], "paused", "{v}");
    assert_eq!(v["next_run_time"], Value::Null, "{v}");
    let logs = app.wait_logs(&id, 1, EVENT_WAIT).await;
    assert_eq!(logs[0]["trigger"], "manual", "{logs:?}");
    // Runs again when asked again, and stays quiet otherwise.
    started(run(&app, &id).await);
    app.wait_task(&id, EVENT_WAIT, |v| v["execution_count"] == 2)
        .await;
    sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.sink.count(PATH), 2, "one call per run now");
    let v = app.task(&id).await;
    assert_eq!(v["status"], "paused", "{v}");
}

async fn a_kill_9_during_a_manual_run_loses_nothing_and_fires_nothing_twice(backend: Backend) {
    const PATH: &str = "/run/kill";
    let sink = crate::sink::Sink::start();
    sink.default_reply(PATH, Reply::status(200).delay(Duration::from_millis(1500)));
    let setup = Setup::new(backend).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut first = setup.serve().await;
    let created = first.create(&idle_body(sink.url(PATH), json!({}))).await;
    let id = created["task_id"].as_str().expect("task_id").to_string();
    let next = parse_time(&created["next_run_time"]);

    let slot = started(run_at(&client, &first.url(""), &id, &token(1001)).await);
    sink.wait_for(PATH, 1, EVENT_WAIT).await;
    // The call is on the wire: kill -9 now.
    first.kill9();

    let second = setup.serve().await;
    let v = second.task(&id).await;
    assert!(
        v["status"] == "pending" || v["status"] == "running",
        "the task is kept: {v}"
    );
    assert_eq!(parse_time(&v["next_run_time"]), next, "no slot moved: {v}");
    sleep(Duration::from_millis(2500)).await;
    let got = sink.arrivals(PATH);
    assert_eq!(
        got.len(),
        1,
        "nothing fired again after the restart: {got:?}"
    );
    assert_eq!(webhook_id(&got[0]), (id.clone(), slot));

    // The new process runs it when asked.
    let again = started(run_at(&client, &second.url(""), &id, &token(1001)).await);
    let got = sink.wait_for(PATH, 2, EVENT_WAIT).await;
    assert_eq!(webhook_id(&got[1]), (id.clone(), again));
    let v = second
        .wait_task(&id, |v| v["execution_count"].as_i64() >= Some(1))
        .await;
    assert_eq!(parse_time(&v["next_run_time"]), next, "{v}");
}

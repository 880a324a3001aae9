//! Notifications (README, "Notifications"): a task's `notify` sends `failing` once per run of
//! failures, `recovered` at the first success after it, `completed` and `failed` at the final
//! state, and `late` (at most once a minute) — as JSON POSTs with a `webhook-id` of their
//! own, listed at `GET …/notifications`, not in `/logs`, never counted as executions, never
//! delaying a fire; refused with 400 `notify.url` for a private address; and delivered after a
//! `kill -9` that caught them in flight, with the same `webhook-id`; signed like any call (the
//! reference library verifies them). Every test runs on SQLite and MariaDB.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;
use crate::recovery::{Setup, EVENT_WAIT};
use crate::sink::Arrival;

async fn sleep(d: Duration) {
    actix_web::rt::time::sleep(d).await;
}

/// The payloads that arrived at `path` of `sink`, in order.
fn payloads(sink: &Sink, path: &str) -> Vec<Value> {
    sink.arrivals(path)
        .iter()
        .map(|a| serde_json::from_str(&a.body).expect("a JSON payload"))
        .collect()
}

/// The `type` of each payload that arrived at `path`.
fn types(sink: &Sink, path: &str) -> Vec<String> {
    payloads(sink, path)
        .iter()
        .map(|p| p["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits until `path` has received a payload of each type in `want`.
async fn wait_types(sink: &Sink, path: &str, want: &[&str], timeout: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let got = types(sink, path);
        if want.iter().all(|w| got.iter().any(|g| g == w)) {
            return got;
        }
        assert!(
            start.elapsed() < timeout,
            "{path}: expected {want:?}, got {got:?}"
        );
        sleep(Duration::from_millis(25)).await;
    }
}

async fn notifications(app: &TestApp, id: &str, user: i64) -> (u16, Value) {
    app.get_json(&format!("/api/v1/tasks/{id}/notifications"), user)
        .await
}

/// Waits until every one of the task's notifications is `delivered`, and returns them.
async fn wait_delivered(app: &TestApp, id: &str, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let (status, v) = notifications(app, id, 1001).await;
        assert_eq!(status, 200, "{v}");
        let rows = v["notifications"].as_array().cloned().unwrap_or_default();
        if rows.len() >= n && rows.iter().all(|r| r["status"] == "delivered") {
            return rows;
        }
        assert!(
            start.elapsed() < EVENT_WAIT,
            "expected {n} delivered notifications: {v}"
        );
        sleep(Duration::from_millis(25)).await;
    }
}

fn notify(sink: &Sink, path: &str, events: &[&str]) -> Value {
    json!({"url": sink.url(path), "events": events})
}

/// An interval task every second at `path`, no retries, notifying `notify`.
fn every_second(app: &TestApp, path: &str, notify: Value) -> Value {
    let mut body = interval_task(app, path, 1);
    body["retry"] = json!({"max_retries": 0});
    body["notify"] = notify;
    body
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

fn webhook_id(a: &Arrival) -> String {
    a.header("webhook-id").expect("webhook-id").to_owned()
}

// ---------------------------------------------------------------------------------------------

async fn a_run_of_failures_sends_one_failing_and_the_first_success_one_recovered(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sink.script(
        "/flaky",
        [Reply::status(500), Reply::status(502), Reply::status(500)],
    );
    let body = every_second(
        &app,
        "/flaky",
        notify(&app.sink, "/hook", &["failing", "recovered"]),
    );
    // Deliveries are signed like the task's calls.
    let (_, secret) = crate::signing::create_key(&app, 1001).await;
    let id = app.create_task(body).await;
    wait_types(
        &app.sink,
        "/hook",
        &["task.failing", "task.recovered"],
        EVENT_WAIT,
    )
    .await;
    // Two more successes: nothing more is sent.
    app.wait_task(&id, EVENT_WAIT, |v| {
        v["execution_count"].as_i64() >= Some(6)
    })
    .await;
    sleep(Duration::from_millis(500)).await;
    assert_eq!(
        types(&app.sink, "/hook"),
        vec!["task.failing", "task.recovered"],
        "one failing for three failures in a row, one recovered"
    );

    let sent = payloads(&app.sink, "/hook");
    let failing = &sent[0];
    assert_eq!(failing["task_id"], id.as_str());
    assert_eq!(failing["user_id"], 1001);
    assert_eq!(failing["attempts"], 1);
    assert_eq!(failing["http_status"], 500);
    assert!(failing["error"].is_null(), "{failing}");
    assert!(failing["scheduled_time"].is_string(), "{failing}");
    assert!(failing["timestamp"].is_string(), "{failing}");
    assert_eq!(sent[1]["http_status"], 200, "{}", sent[1]);

    // Each delivery is a POST with a webhook-id of its own (not an execution's).
    let arrivals = app.sink.arrivals("/hook");
    for a in &arrivals {
        assert_eq!(a.method, "POST");
        assert!(is_uuid(&webhook_id(a)), "{:?}", a.headers);
        assert_eq!(a.header("content-type"), Some("application/json"));
        assert!(
            crate::signing::verifies(&secret, a),
            "a notification's signature does not verify: {:?}",
            a.headers
        );
    }
    assert_ne!(webhook_id(&arrivals[0]), webhook_id(&arrivals[1]));

    // Listed apart from the logs, newest first; another user's task is 404.
    let rows = wait_delivered(&app, &id, 2).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["event"], "recovered");
    assert_eq!(rows[1]["event"], "failing");
    assert_eq!(rows[1]["webhook_id"], webhook_id(&arrivals[0]).as_str());
    assert_eq!(rows[1]["attempts"], 1);
    assert_eq!(rows[1]["http_status"], 200);
    assert!(rows[1]["delivered_at"].is_string(), "{}", rows[1]);
    let (status, v) = notifications(&app, &id, 1002).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["code"], "task_not_found");

    // Never counted as executions: every log row and every execution is a call to /flaky.
    let (status, _) = app.cancel(&id).await;
    assert_eq!(status, 200);
    sleep(Duration::from_millis(1500)).await;
    let v = app.task(&id).await;
    let logs = app.logs(&id).await;
    let executions = v["execution_count"].as_i64().unwrap_or(-1);
    assert_eq!(
        app.sink.count("/flaky") as i64,
        executions,
        "every execution is a call to the task's endpoint"
    );
    assert_eq!(
        logs["total"].as_i64(),
        Some(app.sink.count("/flaky") as i64),
        "the log holds the task's calls only: {logs}"
    );
    assert_eq!(
        v["notify"]["events"],
        json!(["failing", "recovered"]),
        "{v}"
    );

    // Counted by event and outcome.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tickwheel_notifications_total")
                && l.contains("event=\"failing\"")
                && l.contains("outcome=\"delivered\"")),
        "{metrics}"
    );
}

async fn a_task_that_completes_sends_completed(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = every_second(
        &app,
        "/done",
        notify(&app.sink, "/hook", &["completed", "failed", "failing"]),
    );
    body["stop_condition"] = json!({"max_cnt": 2});
    let id = app.create_task(body).await;
    app.wait_task(&id, EVENT_WAIT, |v| v["status"] == "completed")
        .await;
    wait_types(&app.sink, "/hook", &["task.completed"], EVENT_WAIT).await;
    sleep(Duration::from_millis(300)).await;
    assert_eq!(types(&app.sink, "/hook"), vec!["task.completed"]);
    let sent = payloads(&app.sink, "/hook");
    assert_eq!(sent[0]["attempts"], 1, "{}", sent[0]);
    assert_eq!(sent[0]["http_status"], 200, "{}", sent[0]);
    wait_delivered(&app, &id, 1).await;
}

async fn a_task_that_fails_sends_failing_then_failed(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sink.default_reply("/down", Reply::status(503));
    let mut body = every_second(
        &app,
        "/down",
        notify(&app.sink, "/hook", &["failing", "failed", "completed"]),
    );
    body["stop_condition"] = json!({"max_failures": 3});
    let id = app.create_task(body).await;
    app.wait_task(&id, EVENT_WAIT, |v| v["status"] == "failed")
        .await;
    wait_types(&app.sink, "/hook", &["task.failed"], EVENT_WAIT).await;
    sleep(Duration::from_millis(300)).await;
    assert_eq!(
        types(&app.sink, "/hook"),
        vec!["task.failing", "task.failed"]
    );
    let failed = &payloads(&app.sink, "/hook")[1];
    assert_eq!(failed["http_status"], 503, "{failed}");
    wait_delivered(&app, &id, 2).await;
}

async fn late_first_attempts_send_late_at_most_once_a_minute(backend: Backend) {
    // One token a second for the sink's host, three tasks calling it every second: most
    // first attempts wait for their token, so they start late.
    let app = spawn_app_with(backend, |s| {
        s.ratelimit.per_host_rps = 1;
        s.ratelimit.per_host_burst = 1;
    })
    .await;
    // Notifications go to another host (its own bucket).
    let hooks = Sink::start();
    let mut body = interval_task(&app, "/slow", 1);
    body["notify"] = json!({"url": hooks.url("/hook"), "events": ["late"], "late_ms": 50});
    let id = app.create_task(body).await;
    for _ in 0..2 {
        app.create_task(interval_task(&app, "/slow", 1)).await;
    }
    wait_types(&hooks, "/hook", &["task.late"], EVENT_WAIT).await;
    // Several more late first attempts of the same task within the minute.
    let start = Instant::now();
    loop {
        let logs = app.logs(&id).await;
        let late = logs["logs"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter(|r| r["attempt"] == 1 && r["lateness_ms"].as_i64() > Some(50))
                    .count()
            })
            .unwrap_or(0);
        if late >= 3 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the task's first attempts were not late: {logs}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    sleep(Duration::from_millis(500)).await;
    assert_eq!(types(&hooks, "/hook"), vec!["task.late"]);
}

async fn a_notify_url_to_a_private_address_is_refused(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.http.allow_private_targets = false).await;
    let body = json!({
        "user_id": 1001,
        "type": "interval",
        "http_endpoint": "http://93.184.215.14/run",
        "interval_seconds": 60,
        "notify": {"url": "http://127.0.0.1:9/hook", "events": ["failing"]},
    });
    let (status, v) = app.create_as(1001, &body).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["code"], "invalid_input");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("notify.url:"),
        "{v}"
    );
    // Nor by a dry run, nor by a patch.
    let r = app
        .client
        .post(app.url("/api/v1/tasks?dry_run=true"))
        .bearer_auth(token(1001))
        .json(&body)
        .send()
        .await
        .expect("dry run");
    assert_eq!(r.status(), 400);
    let mut public = body.clone();
    public["notify"] = json!({"url": "http://93.184.215.14/hook", "events": ["failing"]});
    let id = app.create_task(public).await;
    let r = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{id}")))
        .bearer_auth(token(1001))
        .json(&json!({"notify": {"url": "http://169.254.169.254/", "events": ["late"]}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("notify.url:"),
        "{v}"
    );
    // null clears it.
    let r = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{id}")))
        .bearer_auth(token(1001))
        .json(&json!({"notify": null}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert!(v["notify"].is_null(), "{v}");
}

async fn a_notify_url_that_hangs_does_not_delay_fires(backend: Backend) {
    let app = spawn_app(backend).await;
    let hooks = Sink::start();
    // Every delivery hangs past the request timeout (3 s in tests) and is retried.
    hooks.default_reply("/hang", Reply::status(200).delay(Duration::from_secs(30)));
    // Fails and succeeds in turn: every execution raises an event.
    app.sink.script(
        "/flap",
        (0..20).map(|i| Reply::status(if i % 2 == 0 { 500 } else { 200 })),
    );
    let body = every_second(
        &app,
        "/flap",
        json!({"url": hooks.url("/hang"), "events": ["failing", "recovered"]}),
    );
    let id = app.create_task(body).await;
    hooks.wait_for("/hang", 3, EVENT_WAIT).await;
    app.wait_task(&id, Duration::from_secs(20), |v| {
        v["execution_count"].as_i64() >= Some(6)
    })
    .await;
    let logs = app.logs(&id).await;
    let lateness: Vec<i64> = logs["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(|r| r["lateness_ms"].as_i64())
        .collect();
    assert!(lateness.len() >= 6, "{logs}");
    assert!(
        lateness.iter().all(|&l| l < 1000),
        "fires were late while notifications hung: {lateness:?}"
    );
    let (_, v) = notifications(&app, &id, 1001).await;
    assert!(
        v["notifications"]
            .as_array()
            .is_some_and(|n| !n.is_empty() && n.iter().all(|r| r["status"] != "delivered")),
        "nothing delivered to a URL that never answers: {v}"
    );
}

async fn a_delivery_in_flight_at_kill_9_is_delivered_after_the_restart_with_its_webhook_id(
    backend: Backend,
) {
    let sink = Sink::start();
    // The first delivery hangs (it is on the wire when the process dies); later ones answer.
    sink.script("/hook", [Reply::status(200).delay(Duration::from_secs(20))]);
    let setup = Setup::new(backend).await;
    let mut first = setup.serve().await;
    let mut body =
        crate::recovery::once_body(&sink, "/job", chrono::Utc::now().timestamp_millis() + 500);
    body["notify"] = json!({"url": sink.url("/hook"), "events": ["completed"]});
    let id = first.create_id(&body).await;
    let hung = sink.wait_for("/hook", 1, EVENT_WAIT).await;
    first.kill9();

    let second = setup.serve().await;
    let got = sink.wait_for("/hook", 2, EVENT_WAIT).await;
    assert_eq!(
        webhook_id(&got[1]),
        webhook_id(&hung[0]),
        "the redelivery carries the same webhook-id"
    );
    assert_eq!(got[1].body, hung[0].body);
    let start = Instant::now();
    loop {
        let (status, v) = second
            .get_with(&format!("/api/v1/tasks/{id}/notifications"), &token(1001))
            .await;
        assert_eq!(status, 200, "{v}");
        if v["notifications"][0]["status"] == "delivered" {
            assert_eq!(v["total"], 1, "{v}");
            assert_eq!(v["notifications"][0]["event"], "completed");
            break;
        }
        assert!(start.elapsed() < EVENT_WAIT, "never delivered: {v}");
        sleep(Duration::from_millis(50)).await;
    }
    let v = second.task(&id).await;
    assert_eq!(v["execution_count"], 1, "{v}");
    assert_eq!(sink.count("/job"), 1);
}

on_both_backends!(
    a_run_of_failures_sends_one_failing_and_the_first_success_one_recovered,
    a_task_that_completes_sends_completed,
    a_task_that_fails_sends_failing_then_failed,
    late_first_attempts_send_late_at_most_once_a_minute,
    a_notify_url_to_a_private_address_is_refused,
    a_notify_url_that_hangs_does_not_delay_fires,
    a_delivery_in_flight_at_kill_9_is_delivered_after_the_restart_with_its_webhook_id,
);

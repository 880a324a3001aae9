//! The life of a task against the contract (README, "The API": the task, stop conditions, states,
//! execution, endpoints): when it fires, how it retries, when it stops, what it
//! sends, and what cancel, delete and patch do to it. Every test runs on SQLite and MariaDB.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;
use crate::sink::Arrival;

// ---- small helpers -------------------------------------------------------------------------

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn sleep_ms(ms: u64) {
    actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
}

fn is_final(v: &Value) -> bool {
    matches!(
        v["status"].as_str(),
        Some("completed" | "failed" | "stopped")
    )
}

/// The scheduled epoch ms carried by an arrival's `webhook-id: <task_id>:<ms>` header.
fn slot_of(a: &Arrival, task_id: &str) -> i64 {
    let h = a
        .header("webhook-id")
        .unwrap_or_else(|| panic!("arrival without webhook-id: {a:?}"));
    let (id, ms) = h
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("webhook-id is not <task_id>:<ms>: {h}"));
    assert_eq!(id, task_id, "webhook-id names another task: {h}");
    ms.parse()
        .unwrap_or_else(|_| panic!("webhook-id ms is not a number: {h}"))
}

/// The task's log rows, oldest execution first, attempts in order.
async fn sorted_logs(app: &TestApp, id: &str) -> Vec<Value> {
    let mut logs = app.logs(id).await["logs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    logs.sort_by_key(|l| {
        (
            parse_time(&l["scheduled_time"]),
            l["attempt"].as_i64().unwrap_or(-1),
        )
    });
    logs
}

fn statuses(logs: &[Value]) -> Vec<Value> {
    logs.iter().map(|l| l["http_status"].clone()).collect()
}

fn attempts(logs: &[Value]) -> Vec<i64> {
    logs.iter()
        .map(|l| l["attempt"].as_i64().expect("attempt"))
        .collect()
}

fn body_json(a: &Arrival) -> Value {
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", a.body))
}

fn assert_error_body(v: &Value) {
    assert_eq!(v["status"], "error", "not an error body: {v}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error body without a message: {v}"
    );
}

async fn patch(app: &TestApp, id: &str, body: Value, if_match: Option<i64>) -> (u16, Value) {
    let mut req = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{id}")))
        .bearer_auth(token(1001))
        .json(&body);
    if let Some(v) = if_match {
        req = req.header("If-Match", v.to_string());
    }
    let r = req.send().await.expect("patch");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn delete(app: &TestApp, id: &str) -> (u16, Value) {
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/tasks/{id}")))
        .bearer_auth(token(1001))
        .send()
        .await
        .expect("delete");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn running_count(app: &TestApp) -> i64 {
    let (status, v) = app
        .get_json("/api/v1/users/1001/tasks/running-count", 1001)
        .await;
    assert_eq!(status, 200, "running-count failed: {v}");
    assert_eq!(v["user_id"], 1001, "{v}");
    v["running_tasks"].as_i64().expect("running_tasks")
}

/// Rows in `task_logs` for the task, read straight from the test's database.
async fn log_rows_in_db(app: &TestApp, id: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(&app.db.url)
        .await
        .expect("connect to the test database");
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM task_logs WHERE task_id = ?",
            [id.into()],
        ))
        .await
        .expect("count task_logs")
        .expect("a row");
    let n: i64 = row.try_get("", "n").expect("n");
    let _ = db.close().await;
    n
}

/// Polls the sink until `pred` holds for the arrivals at `path`.
async fn wait_arrivals(
    app: &TestApp,
    path: &str,
    timeout: Duration,
    pred: impl Fn(&[Arrival]) -> bool,
) -> Vec<Arrival> {
    let start = Instant::now();
    loop {
        let got = app.sink.arrivals(path);
        if pred(&got) {
            return got;
        }
        assert!(
            start.elapsed() < timeout,
            "sink {path}: the expected arrivals never came; got {} arrivals",
            got.len()
        );
        sleep_ms(20).await;
    }
}

/// Ends a test by dropping the app off the runtime thread. The app's persistence actor runs on
/// this thread; dropping a MariaDB `TestDb` here would block the thread in `DROP DATABASE`,
/// which waits for any transaction the app has open — one only this thread can commit.
async fn shut_down(app: TestApp) {
    actix_web::rt::task::spawn_blocking(move || drop(app))
        .await
        .expect("teardown");
}

async fn wait_final(app: &TestApp, id: &str) -> Value {
    app.wait_task(id, secs(20), is_final).await
}

// ---- 1. the anchored grid -------------------------------------------------------------------

async fn interval_tasks_fire_on_a_grid_anchored_at_their_start_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let start = rfc3339_in(1500);
    let start_ms = parse_time(&json!(start));
    let mut body = interval_task(&app, "/grid", 1);
    body["start_time"] = json!(start);
    body["stop_condition"] = json!({"max_cnt": 3});
    let (status, created) = app.create_as(1001, &body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["task_id"].as_str().expect("task_id").to_string();
    assert_eq!(
        parse_time(&created["next_run_time"]),
        start_ms,
        "next_run_time should be start_time: {created}"
    );

    let got = app.sink.wait_for("/grid", 3, secs(15)).await;
    let slots: Vec<i64> = got.iter().map(|a| slot_of(a, &id)).collect();
    assert_eq!(slots[0], start_ms, "the first fire is not at start_time");
    for w in slots.windows(2) {
        assert_eq!(w[1] - w[0], 1000, "fires are not 1 s apart: {slots:?}");
    }
    for (a, slot) in got.iter().zip(&slots) {
        let lateness = a.at_ms - slot;
        assert!(
            (0..1000).contains(&lateness),
            "arrival {} ms after its scheduled time {slot} (slots {slots:?})",
            lateness
        );
    }
    shut_down(app).await;
}

// ---- 2. the first run in the create response -----------------------------------------------

async fn the_create_response_gives_the_first_run_of_each_schedule_type(backend: Backend) {
    let app = spawn_app(backend).await;
    let create = |body: Value| {
        let app = &app;
        async move {
            let before = now_ms();
            let (status, v) = app.create_as(1001, &body).await;
            let after = now_ms();
            assert_eq!(status, 201, "{v}");
            (before, parse_time(&v["next_run_time"]), after)
        }
    };

    // Interval without start_time: now + interval.
    let (before, next, after) = create(interval_task(&app, "/first-interval", 60)).await;
    assert!(
        (before + 60_000..=after + 60_000).contains(&next),
        "interval next_run_time {next} not now + 60 s ({before}..{after})"
    );

    // 6-field cron with seconds: the next even second.
    let (before, next, after) = create(json!({
        "user_id": 1001, "type": "cron", "http_endpoint": app.sink.url("/first-cron2"),
        "cron_expression": "*/2 * * * * *",
    }))
    .await;
    assert_eq!(
        next % 2000,
        0,
        "*/2 seconds fired off an even second: {next}"
    );
    assert!(
        next > before && next <= after + 2000,
        "*/2 next_run_time {next} is not the next match after {before}"
    );

    // Quartz noon in Tokyo = 03:00:00.000Z, today or tomorrow.
    let (before, next, _) = create(json!({
        "user_id": 1001, "type": "cron", "http_endpoint": app.sink.url("/first-tokyo"),
        "cron_expression": "0 0 12 * * ?", "timezone": "Asia/Tokyo",
    }))
    .await;
    let today = chrono::DateTime::from_timestamp_millis(before)
        .expect("now")
        .date_naive()
        .and_hms_opt(3, 0, 0)
        .expect("03:00")
        .and_utc()
        .timestamp_millis();
    let expected = if today > before {
        today
    } else {
        today + 86_400_000
    };
    assert_eq!(
        next, expected,
        "noon in Asia/Tokyo should be 03:00:00.000Z of the next such day"
    );

    // 5-field cron: no seconds field, fires at second 0.
    let (before, next, after) = create(json!({
        "user_id": 1001, "type": "cron", "http_endpoint": app.sink.url("/first-classic"),
        "cron_expression": "* * * * *",
    }))
    .await;
    assert_eq!(next % 60_000, 0, "5-field cron not at second 0: {next}");
    assert!(
        next > before && next <= after + 60_000,
        "5-field next_run_time {next} is not the next minute after {before}"
    );
    shut_down(app).await;
}

// ---- 3. retries --------------------------------------------------------------------------------

async fn a_failed_attempt_is_retried_with_growing_backoff_under_one_webhook_id(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sink
        .script("/retry", [Reply::status(500), Reply::status(500)]);
    let mut body = once_task(&app, "/retry", None);
    // A wider base than the suite's 100 ms, so the growth is far above scheduling noise.
    body["retry"] = json!({"max_retries": 3, "backoff_ms": 500});
    let id = app.create_task(body).await;

    let got = app.sink.wait_for("/retry", 3, secs(15)).await;
    let v = app
        .wait_task(&id, secs(15), |v| v["status"] == "completed")
        .await;
    assert_eq!(v["execution_count"], 1, "{v}");
    assert_eq!(got.len(), 3, "a 200 was retried");
    let ids: Vec<_> = got.iter().map(|a| a.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|h| h.is_some() && *h == ids[0]),
        "webhook-id changed between attempts: {ids:?}"
    );
    let slot = slot_of(&got[0], &id);
    let gap1 = got[1].at_ms - got[0].at_ms;
    let gap2 = got[2].at_ms - got[1].at_ms;
    assert!(
        gap1 >= 380,
        "first retry came after {gap1} ms, backoff is 500 ms ±20 %"
    );
    assert!(
        gap2 > gap1,
        "the second wait ({gap2} ms) is not longer than the first ({gap1} ms)"
    );

    let logs = sorted_logs(&app, &id).await;
    assert_eq!(attempts(&logs), vec![1, 2, 3], "{logs:?}");
    assert_eq!(statuses(&logs), vec![json!(500), json!(500), json!(200)]);
    for l in &logs {
        assert_eq!(parse_time(&l["scheduled_time"]), slot, "{l}");
    }
    shut_down(app).await;
}

// ---- 4. a once task that never succeeds ------------------------------------------------------

async fn a_once_task_that_always_fails_ends_failed_after_four_attempts(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sink.default_reply("/always-500", Reply::status(500));
    let id = app.create_task(once_task(&app, "/always-500", None)).await;

    let v = wait_final(&app, &id).await;
    assert_eq!(v["status"], "failed", "{v}");
    let logs = sorted_logs(&app, &id).await;
    assert_eq!(
        attempts(&logs),
        vec![1, 2, 3, 4],
        "1 + 3 default retries: {logs:?}"
    );
    assert!(logs.iter().all(|l| l["http_status"] == 500), "{logs:?}");
    assert_eq!(app.sink.count("/always-500"), 4);
    shut_down(app).await;
}

// ---- 5. stop conditions ----------------------------------------------------------------------

async fn max_cnt_completes_a_task_after_that_many_executions(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = interval_task(&app, "/max-cnt", 1);
    body["stop_condition"] = json!({"max_cnt": 3});
    let id = app.create_task(body).await;

    let v = wait_final(&app, &id).await;
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["execution_count"], 3, "{v}");
    assert_eq!(v["next_run_time"], Value::Null, "{v}");
    assert_eq!(app.sink.count("/max-cnt"), 3);
    // Absence can only be checked by waiting: two more periods.
    sleep_ms(2200).await;
    assert_eq!(app.sink.count("/max-cnt"), 3, "fired after max_cnt");
    shut_down(app).await;
}

async fn a_matching_response_completes_the_task(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sink.script(
        "/finsh",
        [
            Reply::json(json!({"finsh": false})),
            Reply::json(json!({"finsh": true})),
        ],
    );
    let mut body = interval_task(&app, "/finsh", 1);
    body["stop_condition"] = json!({"max_cnt": 300, "finsh": true});
    let id = app.create_task(body).await;

    let v = wait_final(&app, &id).await;
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["execution_count"], 2, "{v}");
    assert_eq!(app.sink.count("/finsh"), 2);
    shut_down(app).await;
}

async fn a_dotted_response_match_reaches_into_nested_objects(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sink.script(
        "/dotted",
        [
            Reply::json(json!({"result": {"done": false}})),
            Reply::json(json!({"result": {"done": true}})),
        ],
    );
    let mut body = interval_task(&app, "/dotted", 1);
    body["stop_condition"] = json!({"result.done": true});
    let id = app.create_task(body).await;

    let v = wait_final(&app, &id).await;
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["execution_count"], 2, "{v}");
    assert_eq!(app.sink.count("/dotted"), 2);
    shut_down(app).await;
}

async fn end_time_completes_a_task_with_no_fire_after_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let start = rfc3339_in(1500);
    let start_ms = parse_time(&json!(start));
    let end_ms = start_ms + 2500;
    let mut body = interval_task(&app, "/end-time", 1);
    body["start_time"] = json!(start);
    body["stop_condition"] = json!({"end_time": tickwheel::time::to_rfc3339(end_ms)});
    let id = app.create_task(body).await;

    let v = wait_final(&app, &id).await;
    assert_eq!(v["status"], "completed", "{v}");
    let slots: Vec<i64> = app
        .sink
        .arrivals("/end-time")
        .iter()
        .map(|a| slot_of(a, &id))
        .collect();
    assert_eq!(
        slots,
        vec![start_ms, start_ms + 1000, start_ms + 2000],
        "the fires up to end_time"
    );
    // The next grid slot (start + 3 s) is past end_time: it must not come.
    sleep_ms(1500).await;
    assert_eq!(app.sink.count("/end-time"), 3, "fired after end_time");
    shut_down(app).await;
}

// ---- 6. states -------------------------------------------------------------------------------

async fn a_new_task_is_pending_and_runs_after_its_first_execution(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = interval_task(&app, "/states", 1);
    body["start_time"] = json!(rfc3339_in(1500));
    let id = app.create_task(body).await;

    let v = app.task(&id).await;
    assert_eq!(v["status"], "pending", "{v}");
    assert_eq!(v["execution_count"], 0, "{v}");
    assert_eq!(v["last_execution"], Value::Null, "{v}");
    let pending_version = v["version"].as_i64().expect("version");
    assert_eq!(running_count(&app).await, 0);

    let v = app
        .wait_task(&id, secs(15), |v| v["status"] == "running")
        .await;
    assert!(
        app.sink.count("/states") >= 1,
        "running before any execution"
    );
    assert!(
        v["version"].as_i64().expect("version") > pending_version,
        "a status change must bump the version: {v}"
    );
    assert_eq!(running_count(&app).await, 1);
    let (status, list) = app
        .get_json("/api/v1/users/1001/tasks?status=running", 1001)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["tasks"][0]["task_id"], json!(id), "{list}");
    shut_down(app).await;
}

// ---- 7. no overlap ---------------------------------------------------------------------------

async fn a_fire_due_while_the_previous_execution_is_in_flight_is_skipped_and_logged(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.sink.default_reply(
        "/overlap",
        Reply::status(200).delay(Duration::from_millis(2500)),
    );
    let id = app.create_task(interval_task(&app, "/overlap", 1)).await;

    let start = Instant::now();
    let skipped = loop {
        let logs = sorted_logs(&app, &id).await;
        if let Some(l) = logs.iter().find(|l| {
            l["error"]
                .as_str()
                .is_some_and(|e| e.to_ascii_lowercase().contains("skipped"))
        }) {
            break l.clone();
        }
        assert!(
            start.elapsed() < secs(15),
            "no skipped fire was logged: {logs:?}"
        );
        sleep_ms(50).await;
    };
    assert_eq!(skipped["attempt"], 0, "{skipped}");
    assert_eq!(skipped["http_status"], Value::Null, "{skipped}");

    let got = app.sink.wait_for("/overlap", 2, secs(15)).await;
    for w in got.windows(2) {
        let gap = w[1].at_ms - w[0].at_ms;
        assert!(
            gap >= 2400,
            "a request arrived {gap} ms after the previous one, which takes 2.5 s"
        );
    }
    let skipped_slot = parse_time(&skipped["scheduled_time"]);
    assert!(
        got.iter().all(|a| slot_of(a, &id) != skipped_slot),
        "the skipped slot {skipped_slot} was sent anyway"
    );
    // A skip is not an execution: the view's last execution is a real attempt.
    let view = app.task(&id).await;
    assert!(
        view["last_execution"]["attempt"].as_i64().unwrap_or(0) >= 1,
        "{view}"
    );
    shut_down(app).await;
}

// ---- 8. cancel -------------------------------------------------------------------------------

/// A downstream that takes requests and never answers, noting when each connection closes.
#[derive(Debug, Clone, Copy)]
struct HangingConn {
    request_ms: Option<i64>,
    closed_ms: Option<i64>,
}

async fn hanging_server() -> (u16, Arc<Mutex<Vec<HangingConn>>>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let conns = Arc::new(Mutex::new(Vec::new()));
    let shared = conns.clone();
    actix_web::rt::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let idx = {
                let mut c = shared.lock().unwrap();
                c.push(HangingConn {
                    request_ms: None,
                    closed_ms: None,
                });
                c.len() - 1
            };
            let conns = shared.clone();
            actix_web::rt::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let mut c = conns.lock().unwrap();
                            c[idx].request_ms.get_or_insert_with(now_ms);
                        }
                    }
                }
                conns.lock().unwrap()[idx].closed_ms = Some(now_ms());
            });
        }
    });
    (port, conns)
}

async fn cancel_aborts_the_request_in_flight_and_stops_the_task(backend: Backend) {
    // A long request timeout, so only the cancel can end the request.
    let app = spawn_app_with(backend, |s| s.http.request_timeout_ms = 30_000).await;
    let (port, conns) = hanging_server().await;
    let id = app
        .create_task(json!({
            "user_id": 1001, "type": "interval", "interval_seconds": 1,
            "http_endpoint": format!("http://127.0.0.1:{port}/hang"),
        }))
        .await;

    let start = Instant::now();
    while !conns.lock().unwrap().iter().any(|c| c.request_ms.is_some()) {
        assert!(start.elapsed() < secs(15), "the request never arrived");
        sleep_ms(20).await;
    }

    let cancel_sent = now_ms();
    let t = Instant::now();
    let (status, v) = app.cancel(&id).await;
    let took = t.elapsed();
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"status": "success", "message": "Task stopped successfully"})
    );
    assert!(took < Duration::from_millis(2500), "cancel took {took:?}");

    let start = Instant::now();
    let closed = loop {
        if let Some(at) = conns.lock().unwrap()[0].closed_ms {
            break at;
        }
        assert!(
            start.elapsed() < secs(10),
            "the in-flight connection was never closed after cancel"
        );
        sleep_ms(20).await;
    };
    assert!(
        closed - cancel_sent < 3000,
        "the connection closed {} ms after cancel",
        closed - cancel_sent
    );
    assert_eq!(app.task(&id).await["status"], "stopped");

    // Two more periods of the 1 s interval: nothing new may arrive.
    sleep_ms(2200).await;
    assert_eq!(
        conns.lock().unwrap().len(),
        1,
        "the task kept firing after cancel"
    );
    let (status, v) = app.cancel(&id).await;
    assert_eq!(status, 409, "{v}");
    assert_error_body(&v);
    shut_down(app).await;
}

// ---- 9. delete -------------------------------------------------------------------------------

async fn delete_stops_the_task_and_removes_it_with_its_logs(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_task(interval_task(&app, "/delete", 1)).await;
    app.sink.wait_for("/delete", 2, secs(15)).await;
    app.wait_logs(&id, 1, secs(10)).await;

    let (status, v) = delete(&app, &id).await;
    let deleted_at = now_ms();
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"status": "success", "message": "Task deleted permanently"})
    );
    let (status, v) = app.get_json(&format!("/api/v1/tasks/{id}"), 1001).await;
    assert_eq!(status, 404, "{v}");
    assert_error_body(&v);
    let (status, v) = app
        .get_json(&format!("/api/v1/tasks/{id}/logs"), 1001)
        .await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(log_rows_in_db(&app, &id).await, 0, "the logs were kept");

    sleep_ms(2200).await;
    let late: Vec<i64> = app
        .sink
        .arrivals("/delete")
        .iter()
        .map(|a| a.at_ms - deleted_at)
        .filter(|&d| d > 200)
        .collect();
    assert!(late.is_empty(), "fired after delete (ms after): {late:?}");
    shut_down(app).await;
}

// ---- 10. patch -------------------------------------------------------------------------------

async fn patching_the_interval_re_anchors_a_running_task(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app
        .create_task(interval_task(&app, "/patch-interval", 1))
        .await;
    app.sink.wait_for("/patch-interval", 2, secs(15)).await;
    let before = app
        .wait_task(&id, secs(10), |v| v["status"] == "running")
        .await;
    let version = before["version"].as_i64().expect("version");

    let sent = now_ms();
    let (status, v) = patch(&app, &id, json!({"interval_seconds": 2}), None).await;
    let done = now_ms();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["task_id"], json!(id), "{v}");
    assert_eq!(v["interval_seconds"], 2, "{v}");
    assert!(
        v["version"].as_i64().expect("version") > version,
        "a patch must bump the version: {v}"
    );

    let after = |got: &[Arrival]| -> Vec<(i64, i64)> {
        got.iter()
            .map(|a| (slot_of(a, &id), a.at_ms))
            .filter(|(slot, _)| *slot > done)
            .collect()
    };
    let got = wait_arrivals(&app, "/patch-interval", secs(15), |g| after(g).len() >= 2).await;
    let fires = after(&got);
    assert_eq!(
        fires[1].0 - fires[0].0,
        2000,
        "fires after the patch are not 2 s apart: {fires:?}"
    );
    assert!(
        fires[1].1 - fires[0].1 >= 1500,
        "arrivals after the patch came {} ms apart",
        fires[1].1 - fires[0].1
    );
    assert!(
        (sent + 2000 - 5..=done + 2000 + 5).contains(&fires[0].0),
        "the new interval is not anchored at the change ({sent}..{done}): first slot {}",
        fires[0].0
    );
    shut_down(app).await;
}

async fn a_patch_with_a_stale_if_match_version_is_a_conflict(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_task(interval_task(&app, "/if-match", 60)).await;
    let version = app.task(&id).await["version"].as_i64().expect("version");

    let (status, v) = patch(&app, &id, json!({"interval_seconds": 30}), Some(version)).await;
    assert_eq!(status, 200, "the current version must be accepted: {v}");
    assert!(v["version"].as_i64().expect("version") > version, "{v}");

    let (status, v) = patch(&app, &id, json!({"interval_seconds": 45}), Some(version)).await;
    assert_eq!(status, 409, "{v}");
    assert_error_body(&v);
    assert_eq!(
        app.task(&id).await["interval_seconds"],
        30,
        "a stale patch was applied"
    );
    shut_down(app).await;
}

async fn a_completed_or_stopped_task_cannot_be_patched(backend: Backend) {
    let app = spawn_app(backend).await;
    let done = app.create_task(once_task(&app, "/patch-done", None)).await;
    app.wait_task(&done, secs(15), |v| v["status"] == "completed")
        .await;
    let (status, v) = patch(&app, &done, json!({"body": {"x": 1}}), None).await;
    assert_eq!(status, 409, "patching a completed task: {v}");
    assert_error_body(&v);

    let stopped = app
        .create_task(interval_task(&app, "/patch-stopped", 60))
        .await;
    let (status, v) = app.cancel(&stopped).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = patch(&app, &stopped, json!({"interval_seconds": 5}), None).await;
    assert_eq!(status, 409, "patching a stopped task: {v}");
    assert_error_body(&v);
    shut_down(app).await;
}

async fn a_patch_cannot_change_the_owner(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app
        .create_task(interval_task(&app, "/patch-owner", 60))
        .await;
    let (status, v) = patch(&app, &id, json!({"user_id": 5}), None).await;
    assert_eq!(status, 400, "{v}");
    assert_error_body(&v);
    assert!(
        v["message"].as_str().unwrap_or("").contains("user_id"),
        "the error should name user_id: {v}"
    );
    assert_eq!(app.task(&id).await["user_id"], 1001);
    shut_down(app).await;
}

async fn a_patched_body_is_sent_on_the_next_fire(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = interval_task(&app, "/patch-body", 1);
    body["body"] = json!({"v": 1});
    let id = app.create_task(body).await;
    let got = app.sink.wait_for("/patch-body", 1, secs(15)).await;
    assert_eq!(body_json(&got[0]), json!({"v": 1}));

    let (status, v) = patch(&app, &id, json!({"body": {"v": 2}}), None).await;
    let done = now_ms();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["body"], json!({"v": 2}), "{v}");
    let got = wait_arrivals(&app, "/patch-body", secs(15), |g| {
        g.iter().any(|a| slot_of(a, &id) > done)
    })
    .await;
    for a in got.iter().filter(|a| slot_of(a, &id) > done) {
        assert_eq!(body_json(a), json!({"v": 2}), "a fire after the patch");
    }
    shut_down(app).await;
}

// ---- 11. rate limit --------------------------------------------------------------------------

async fn the_per_host_rate_limit_delays_calls_but_never_drops_them(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.ratelimit.per_host_rps = 2;
        s.ratelimit.per_host_burst = 1;
    })
    .await;
    // All six due at the same moment, on one host:port.
    let at = rfc3339_in(2500);
    let mut ids = Vec::new();
    for i in 0..6 {
        let path = format!("/rate/{i}");
        ids.push(
            app.create_task(once_task(&app, &path, Some(at.clone())))
                .await,
        );
    }
    let mut arrivals = Vec::new();
    for i in 0..6 {
        let got = app.sink.wait_for(&format!("/rate/{i}"), 1, secs(20)).await;
        arrivals.push(got[0].at_ms);
    }
    let spread = arrivals.iter().max().unwrap() - arrivals.iter().min().unwrap();
    assert!(
        spread >= 1900,
        "6 calls at 2/s with burst 1 arrived within {spread} ms: {arrivals:?}"
    );
    for id in &ids {
        let v = wait_final(&app, id).await;
        assert_eq!(v["status"], "completed", "{v}");
        let logs = sorted_logs(&app, id).await;
        assert_eq!(
            attempts(&logs),
            vec![1],
            "a delayed call was retried: {logs:?}"
        );
        assert_eq!(logs[0]["http_status"], 200, "{logs:?}");
    }
    shut_down(app).await;
}

// ---- 12. truncation --------------------------------------------------------------------------

async fn response_bodies_are_truncated_at_the_configured_size(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.http.max_response_bytes = 100).await;
    let long = "0123456789".repeat(100);
    app.sink
        .default_reply("/long", Reply::status(200).body(long.clone()));
    let id = app.create_task(once_task(&app, "/long", None)).await;

    let v = app
        .wait_task(&id, secs(15), |v| v["status"] == "completed")
        .await;
    let logs = sorted_logs(&app, &id).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    let logged = logs[0]["response_body"].as_str().expect("response_body");
    assert!(
        !logged.is_empty() && logged.len() <= 100,
        "logged body of {} bytes",
        logged.len()
    );
    assert!(long.starts_with(logged), "not a prefix: {logged}");
    let last = v["last_execution"]["response_body"]
        .as_str()
        .unwrap_or_else(|| panic!("no last_execution.response_body: {v}"));
    assert!(last.len() <= 100, "view body of {} bytes", last.len());
    assert_eq!(last, logged);
    shut_down(app).await;
}

// ---- 13. redirects ---------------------------------------------------------------------------

async fn a_redirect_is_not_followed_and_counts_as_a_failed_attempt(backend: Backend) {
    let app = spawn_app(backend).await;
    let target = app.sink.url("/redirect-target");
    app.sink
        .default_reply("/redirect", Reply::status(302).header("Location", &target));
    let mut body = once_task(&app, "/redirect", None);
    body["retry"] = json!({"max_retries": 1});
    let id = app.create_task(body).await;

    let v = wait_final(&app, &id).await;
    assert_eq!(v["status"], "failed", "a 302 is not a success: {v}");
    let logs = sorted_logs(&app, &id).await;
    assert_eq!(
        attempts(&logs),
        vec![1, 2],
        "the 302 was not retried: {logs:?}"
    );
    assert_eq!(statuses(&logs), vec![json!(302), json!(302)]);
    assert_eq!(app.sink.count("/redirect"), 2);
    assert_eq!(
        app.sink.count("/redirect-target"),
        0,
        "the redirect was followed"
    );
    shut_down(app).await;
}

// ---- 14. timeouts and connect errors ---------------------------------------------------------

async fn a_request_that_times_out_is_logged_as_a_timeout_without_a_status(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.http.request_timeout_ms = 500).await;
    app.sink
        .default_reply("/slow", Reply::status(200).delay(Duration::from_secs(2)));
    let mut body = once_task(&app, "/slow", None);
    body["retry"] = json!({"max_retries": 0});
    let id = app.create_task(body).await;

    let v = wait_final(&app, &id).await;
    assert_eq!(v["status"], "failed", "{v}");
    let logs = sorted_logs(&app, &id).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    let l = &logs[0];
    assert_eq!(l["http_status"], Value::Null, "{l}");
    let error = l["error"].as_str().unwrap_or("");
    assert!(error.to_ascii_lowercase().contains("timeout"), "{l}");
    let took = l["duration_ms"].as_i64().expect("duration_ms");
    assert!(
        took < 1900,
        "the 500 ms timeout waited {took} ms for a 2 s answer"
    );
    shut_down(app).await;
}

async fn a_refused_connection_is_logged_as_a_connect_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let id = app
        .create_task(json!({
            "user_id": 1001, "type": "once",
            "http_endpoint": format!("http://127.0.0.1:{port}/closed"),
            "retry": {"max_retries": 0},
        }))
        .await;

    let v = wait_final(&app, &id).await;
    assert_eq!(v["status"], "failed", "{v}");
    let logs = sorted_logs(&app, &id).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["http_status"], Value::Null, "{logs:?}");
    let error = logs[0]["error"].as_str().unwrap_or("");
    assert!(
        error.to_ascii_lowercase().contains("connect"),
        "error should mention connect: {error:?}"
    );
    shut_down(app).await;
}

// ---- 15. what is sent ------------------------------------------------------------------------

async fn a_post_carries_the_user_headers_the_tickwheel_headers_and_the_json_body(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = once_task(&app, "/headers", None);
    body["method"] = json!("POST");
    body["headers"] = json!({"X-Custom-Header": "abc-123", "Authorization": "Bearer t0k"});
    body["body"] = json!({"data": "example", "n": 1});
    let id = app.create_task(body).await;

    let a = app.sink.wait_for("/headers", 1, secs(15)).await[0].clone();
    assert_eq!(a.method, "POST");
    assert_eq!(a.header("x-custom-header"), Some("abc-123"));
    assert_eq!(a.header("authorization"), Some("Bearer t0k"));
    let ua = a.header("user-agent").unwrap_or("");
    assert!(ua.starts_with("tickwheel/"), "User-Agent: {ua:?}");
    assert_eq!(a.header("x-tickwheel-task-id"), Some(id.as_str()));
    slot_of(&a, &id);
    let ts: i64 = a
        .header("webhook-timestamp")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("webhook-timestamp is not a number: {a:?}"));
    assert!(
        (ts - a.at_ms / 1000).abs() <= 5,
        "webhook-timestamp {ts} is not seconds near {}",
        a.at_ms / 1000
    );
    let ct = a.header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "Content-Type: {ct:?}");
    assert_eq!(body_json(&a), json!({"data": "example", "n": 1}));
    shut_down(app).await;
}

async fn a_get_sends_no_body(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = once_task(&app, "/get", None);
    body["method"] = json!("GET");
    body["body"] = json!({"data": "example"});
    app.create_task(body).await;

    let a = app.sink.wait_for("/get", 1, secs(15)).await[0].clone();
    assert_eq!(a.method, "GET");
    assert_eq!(a.body, "", "a GET carried a body");
    shut_down(app).await;
}

// ---- 16. Retry-After -------------------------------------------------------------------------

async fn a_retry_after_answer_delays_the_next_attempt_at_least_that_long(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sink.script(
        "/retry-after",
        [Reply::status(429).header("Retry-After", "2")],
    );
    let id = app.create_task(once_task(&app, "/retry-after", None)).await;

    let got = app.sink.wait_for("/retry-after", 2, secs(15)).await;
    let gap = got[1].at_ms - got[0].at_ms;
    assert!(
        gap >= 1900,
        "the retry came {gap} ms after a 429 with Retry-After: 2"
    );
    let v = app
        .wait_task(&id, secs(15), |v| v["status"] == "completed")
        .await;
    assert_eq!(v["execution_count"], 1, "{v}");
    let logs = sorted_logs(&app, &id).await;
    assert_eq!(statuses(&logs), vec![json!(429), json!(200)], "{logs:?}");
    shut_down(app).await;
}

on_both_backends!(
    interval_tasks_fire_on_a_grid_anchored_at_their_start_time,
    the_create_response_gives_the_first_run_of_each_schedule_type,
    a_failed_attempt_is_retried_with_growing_backoff_under_one_webhook_id,
    a_once_task_that_always_fails_ends_failed_after_four_attempts,
    max_cnt_completes_a_task_after_that_many_executions,
    a_matching_response_completes_the_task,
    a_dotted_response_match_reaches_into_nested_objects,
    end_time_completes_a_task_with_no_fire_after_it,
    a_new_task_is_pending_and_runs_after_its_first_execution,
    a_fire_due_while_the_previous_execution_is_in_flight_is_skipped_and_logged,
    cancel_aborts_the_request_in_flight_and_stops_the_task,
    delete_stops_the_task_and_removes_it_with_its_logs,
    patching_the_interval_re_anchors_a_running_task,
    a_patch_with_a_stale_if_match_version_is_a_conflict,
    a_completed_or_stopped_task_cannot_be_patched,
    a_patch_cannot_change_the_owner,
    a_patched_body_is_sent_on_the_next_fire,
    the_per_host_rate_limit_delays_calls_but_never_drops_them,
    response_bodies_are_truncated_at_the_configured_size,
    a_redirect_is_not_followed_and_counts_as_a_failed_attempt,
    a_request_that_times_out_is_logged_as_a_timeout_without_a_status,
    a_refused_connection_is_logged_as_a_connect_error,
    a_post_carries_the_user_headers_the_tickwheel_headers_and_the_json_body,
    a_get_sends_no_body,
    a_retry_after_answer_delays_the_next_attempt_at_least_that_long,
);

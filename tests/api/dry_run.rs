//! `POST /api/v1/tasks?dry_run=true`: every check of a create (destination and quota
//! included), then the request the task would send (header values redacted), its first five
//! runs and warnings — and nothing stored, reserved or sent.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

const SECRET_VALUE: &str = "Bearer s3cr3t-never-shown";

async fn dry_run(app: &TestApp, query: &str, body: &Value) -> (u16, Value, String) {
    let r = app
        .client
        .post(app.url(&format!("/api/v1/tasks?{query}")))
        .bearer_auth(token(1001))
        .json(body)
        .send()
        .await
        .expect("dry run request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

fn codes(v: &Value) -> Vec<String> {
    v["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings list: {v}"))
        .iter()
        .map(|w| w["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn a_dry_run_shows_the_request_and_runs_and_stores_and_sends_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let start = rfc3339_in(1_000);
    let (status, v, text) = dry_run(
        &app,
        "dry_run=true",
        &json!({
            "user_id": 1001, "type": "interval", "interval_seconds": 1,
            "http_endpoint": app.sink.url("/dry"), "method": "PUT",
            "headers": {"Authorization": SECRET_VALUE, "X-Custom": SECRET_VALUE},
            "body": {"data": 1}, "start_time": start,
        }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "success");
    assert!(!text.contains("s3cr3t"), "a header value leaked: {text}");
    let req = &v["request"];
    assert_eq!(req["method"], "PUT");
    assert_eq!(req["url"], app.sink.url("/dry"));
    assert_eq!(req["body"], json!({"data": 1}));
    let headers = &req["headers"];
    assert_eq!(headers["Authorization"], "<redacted>", "{v}");
    assert_eq!(headers["X-Custom"], "<redacted>", "{v}");
    assert!(
        headers["User-Agent"]
            .as_str()
            .unwrap_or_default()
            .starts_with("tickwheel/"),
        "{v}"
    );
    assert_eq!(headers["Content-Type"], "application/json", "{v}");
    for name in ["X-Tickwheel-Task-Id", "webhook-id", "webhook-timestamp"] {
        assert!(headers[name].is_string(), "{name} missing: {v}");
    }
    let times: Vec<i64> = v["next_run_times"]
        .as_array()
        .expect("next_run_times")
        .iter()
        .map(parse_time)
        .collect();
    let first = parse_time(&json!(start));
    assert_eq!(
        times,
        (0..5).map(|k| first + k * 1000).collect::<Vec<_>>(),
        "{v}"
    );
    assert_eq!(codes(&v), Vec::<String>::new(), "{v}");

    // A GET sends no body and no Content-Type.
    let (status, v, _) = dry_run(
        &app,
        "dry_run=true",
        &json!({"user_id": 1001, "type": "once", "http_endpoint": app.sink.url("/dry"),
                "method": "GET", "body": {"ignored": true}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["request"]["body"], Value::Null, "{v}");
    assert!(v["request"]["headers"].get("Content-Type").is_none(), "{v}");
    assert_eq!(v["next_run_times"].as_array().map(Vec::len), Some(1), "{v}");

    // Nothing stored; nothing sent (the first run would have been due a second after start).
    actix_web::rt::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(app.sink.count("/dry"), 0, "a dry run sent a request");
    let (status, list) = app.get_json("/api/v1/users/1001/tasks", 1001).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 0, "a dry run stored a task: {list}");
}

async fn dry_run_accepts_true_or_false_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let task = interval_task(&app, "/d", 3600);
    for bad in ["1", "yes", "TRUE", ""] {
        let (status, v, _) = dry_run(&app, &format!("dry_run={bad}"), &task).await;
        assert_eq!(status, 400, "dry_run={bad}: {v}");
        assert_eq!(v["code"], "invalid_input", "{v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("dry_run"),
            "{v}"
        );
    }
    let (status, v, _) = dry_run(&app, "dry_run=false", &task).await;
    assert_eq!(status, 201, "dry_run=false creates: {v}");
}

async fn a_dry_run_refuses_what_create_refuses(backend: Backend) {
    let app = spawn_app(backend).await;
    for (field, body) in [
        (
            "interval_seconds",
            json!({"user_id": 1001, "type": "interval", "interval_seconds": 0,
                   "http_endpoint": app.sink.url("/d")}),
        ),
        (
            "cron_expression",
            json!({"user_id": 1001, "type": "cron", "cron_expression": "0 0 12 1 * MON",
                   "http_endpoint": app.sink.url("/d")}),
        ),
        (
            "http_endpoint",
            json!({"user_id": 1001, "type": "once", "http_endpoint": "ftp://example.com/"}),
        ),
    ] {
        let (status, v, _) = dry_run(&app, "dry_run=true", &body).await;
        assert_eq!(status, 400, "{field}: {v}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(field),
            "{field}: {v}"
        );
    }
    let (status, v, _) = dry_run(
        &app,
        "dry_run=true",
        &json!({"user_id": 2002, "type": "once", "http_endpoint": app.sink.url("/d")}),
    )
    .await;
    assert_eq!(status, 403, "another user's id: {v}");
}

async fn a_dry_run_of_a_private_target_is_refused_unless_allowed(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.http.allow_private_targets = false).await;
    let (status, v, _) = dry_run(&app, "dry_run=true", &interval_task(&app, "/d", 60)).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("http_endpoint"),
        "{v}"
    );
}

async fn a_dry_run_over_a_quota_is_refused_and_reserves_nothing(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.limits.max_active_tasks_per_user = 1).await;
    let task = interval_task(&app, "/d", 3600);
    for _ in 0..3 {
        let (status, v, _) = dry_run(&app, "dry_run=true", &task).await;
        assert_eq!(status, 200, "{v}");
    }
    app.create_task(task.clone()).await;
    let (status, v, _) = dry_run(&app, "dry_run=true", &task).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["code"], "quota_exceeded", "{v}");
}

async fn a_dry_run_warns_of_what_is_legal_but_probably_unintended(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, v, _) = dry_run(
        &app,
        "dry_run=true",
        &json!({"user_id": 1001, "type": "cron", "cron_expression": "* 5 * * * ?",
                "http_endpoint": app.sink.url("/d"), "start_time": "2020-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        codes(&v),
        vec!["start_time_in_past", "fires_every_second"],
        "{v}"
    );
    for w in v["warnings"].as_array().expect("warnings") {
        assert!(w["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    let (status, v, _) = dry_run(
        &app,
        "dry_run=true",
        &json!({"user_id": 1001, "type": "once",
                "http_endpoint": "http://no-such-host.invalid/hook"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(codes(&v), vec!["host_unresolvable"], "{v}");
}

on_both_backends!(
    a_dry_run_shows_the_request_and_runs_and_stores_and_sends_nothing,
    dry_run_accepts_true_or_false_only,
    a_dry_run_refuses_what_create_refuses,
    a_dry_run_of_a_private_target_is_refused_unless_allowed,
    a_dry_run_over_a_quota_is_refused_and_reserves_nothing,
    a_dry_run_warns_of_what_is_legal_but_probably_unintended,
);

//! The API contract at the HTTP edge (README, "The API": conventions, authentication, the
//! task, endpoints, outbound safety): what a create accepts and refuses, who may see what, the shape
//! of listings and of the task view, the outbound address check, the probes, and that a 201
//! means the task is already in the database with its header values encrypted.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

// ---- helpers ------------------------------------------------------------------------------

/// Asserts `{"status": "error", "message": <string>}` with the given status code.
fn assert_error_shape(case: &str, got: u16, body: &Value, status: u16) -> String {
    assert_eq!(
        got, status,
        "{case}: expected HTTP {status}, got {got} with body {body}"
    );
    assert_eq!(
        body["status"], "error",
        "{case}: an error body must be {{\"status\": \"error\", \"message\": …}}, got {body}"
    );
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: `message` must be a string, got {body}"))
        .to_string()
}

/// Asserts an error response with `status` whose message names `field`.
fn assert_error(case: &str, got: u16, body: &Value, status: u16, field: &str) {
    let message = assert_error_shape(case, got, body, status);
    assert!(
        message.contains(field),
        "{case}: the message should name `{field}`, got {message:?}"
    );
}

/// One request with an optional raw `Authorization` value and an optional JSON body.
async fn call_with_auth(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request is answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// One request with `Authorization: Bearer <token>` and an optional JSON body.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    call_with_auth(app, method, path, Some(&format!("Bearer {token}")), body).await
}

/// POST /api/v1/tasks as user 1001 with a raw body and an optional Content-Type.
async fn post_raw(app: &TestApp, content_type: Option<&str>, body: String) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url("/api/v1/tasks"))
        .bearer_auth(token(1001))
        .body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request.send().await.expect("create request is answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().expect("an object").remove(key);
    v
}

/// `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`, without a regex crate.
fn is_utc_millis(s: &str) -> bool {
    s.len() == 24
        && s.bytes().enumerate().all(|(i, c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Asserts that `v` is an RFC 3339 UTC time with millisecond precision and a `Z`.
fn assert_time(case: &str, v: &Value) -> i64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{case}: expected a time string, got {v}"));
    assert!(
        is_utc_millis(s),
        "{case}: {s:?} is not RFC 3339 UTC with milliseconds and Z (2025-04-22T10:00:20.000Z)"
    );
    parse_time(v)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An HS256 token with exactly these claims.
fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a test token")
}

/// An interval task for `user` that will not fire during a test.
fn quiet_task(app: &TestApp, user: i64, path: &str) -> Value {
    json!({
        "user_id": user,
        "type": "interval",
        "http_endpoint": app.sink.url(path),
        "interval_seconds": 3600,
    })
}

fn ids_of(list: &Value) -> Vec<String> {
    list["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("`tasks` must be an array: {list}"))
        .iter()
        .map(|t| t["task_id"].as_str().expect("task_id").to_string())
        .collect()
}

// ---- 1. the design document's example -----------------------------------------------------

async fn the_design_documents_create_example_is_accepted_as_is(backend: Backend) {
    let app = spawn_app(backend).await;
    // The README's example verbatim, except the destination: the sink instead of api.example.com,
    // which does not resolve here.
    let example = json!({
        "user_id": 1001,
        "type": "interval",
        "http_endpoint": app.sink.url("/execute"),
        "method": "POST",
        "headers": {"Authorization": "Bearer {service_token}"},
        "body": {"data": "example"},
        "interval_seconds": 20,
        "cron_expression": "0 0 12 * * ?",
        "start_time": "2025-04-22T10:00:00Z",
        "stop_condition": {"max_cnt": 300, "finsh": true}
    });
    let before = now_ms();
    let (status, created) = app.create_as(1001, &example).await;
    let after = now_ms();
    assert_eq!(status, 201, "the example must be accepted: {created}");
    assert_eq!(created["status"], "success", "{created}");
    let id = created["task_id"].as_str().expect("task_id is a string");
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "task_id {id:?} is not a UUID"
    );
    // start_time is in the past, so the first run is now + interval.
    let next = assert_time("next_run_time", &created["next_run_time"]);
    assert!(
        next >= before + 20_000 - 1_000 && next <= after + 20_000 + 1_000,
        "next_run_time should be about now + 20 s, got {} ({} ms from the request)",
        created["next_run_time"],
        next - before
    );

    let view = app.task(id).await;
    assert_eq!(view["type"], "interval");
    assert_eq!(view["method"], "POST");
    assert_eq!(view["interval_seconds"], 20);
    assert_eq!(
        view["cron_expression"],
        Value::Null,
        "a field that does not belong to the type is ignored: {view}"
    );
    assert_eq!(view["header_names"], json!(["Authorization"]));
    assert_eq!(
        view["stop_condition"],
        json!({"max_cnt": 300, "finsh": true})
    );
    assert!(!view.to_string().contains("{service_token}"), "{view}");

    // It would fire in 20 s: remove it.
    let (status, deleted) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/tasks/{id}"),
        &token(1001),
        None,
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(
        deleted,
        json!({"status": "success", "message": "Task deleted permanently"})
    );
}

on_both_backends!(the_design_documents_create_example_is_accepted_as_is);

/// The example exactly as the design document has it, api.example.com included: accepted,
/// then deleted long before its first run (20 s away), so nothing is sent anywhere.
#[actix_web::test]
async fn the_design_documents_example_with_its_own_url_is_accepted() {
    let app = spawn_app(Backend::Sqlite).await;
    let example = json!({
        "user_id": 1001,
        "type": "interval",
        "http_endpoint": "https://api.example.com/execute",
        "method": "POST",
        "headers": {"Authorization": "Bearer {service_token}"},
        "body": {"data": "example"},
        "interval_seconds": 20,
        "cron_expression": "0 0 12 * * ?",
        "start_time": "2025-04-22T10:00:00Z",
        "stop_condition": {"max_cnt": 300, "finsh": true}
    });
    let (status, created) = app.create_as(1001, &example).await;
    assert_eq!(status, 201, "the example must be accepted: {created}");
    let id = created["task_id"].as_str().expect("task_id");
    let view = app.task(id).await;
    assert_eq!(view["http_endpoint"], "https://api.example.com/execute");
    let (status, deleted) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/tasks/{id}"),
        &token(1001),
        None,
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
}

// ---- 2. bad create bodies -----------------------------------------------------------------

#[actix_web::test]
async fn invalid_create_bodies_are_refused_with_400_naming_the_field() {
    let app = spawn_app(Backend::Sqlite).await;
    let interval = quiet_task(&app, 1001, "/never");
    let cron = json!({
        "user_id": 1001,
        "type": "cron",
        "http_endpoint": app.sink.url("/never"),
        "cron_expression": "0 0 12 * * ?",
    });
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed JSON", r#"{"user_id":"#.to_string(), "JSON"),
        ("a body that is not an object", "[1, 2, 3]".into(), "body"),
        (
            "missing type",
            without(interval.clone(), "type").to_string(),
            "type",
        ),
        (
            "unknown type",
            with(interval.clone(), "type", json!("weekly")).to_string(),
            "type",
        ),
        (
            "missing http_endpoint",
            without(interval.clone(), "http_endpoint").to_string(),
            "http_endpoint",
        ),
        (
            "an http_endpoint that is not a URL",
            with(interval.clone(), "http_endpoint", json!("not a url")).to_string(),
            "http_endpoint",
        ),
        (
            "an ftp:// http_endpoint",
            with(
                interval.clone(),
                "http_endpoint",
                json!("ftp://files.example.com/x"),
            )
            .to_string(),
            "http_endpoint",
        ),
        (
            "interval_seconds 0",
            with(interval.clone(), "interval_seconds", json!(0)).to_string(),
            "interval_seconds",
        ),
        (
            "interval_seconds -5",
            with(interval.clone(), "interval_seconds", json!(-5)).to_string(),
            "interval_seconds",
        ),
        (
            "interval_seconds as a string",
            with(interval.clone(), "interval_seconds", json!("10")).to_string(),
            "interval_seconds",
        ),
        (
            "interval_seconds 1.5",
            with(interval.clone(), "interval_seconds", json!(1.5)).to_string(),
            "interval_seconds",
        ),
        (
            "an interval task without interval_seconds",
            without(interval.clone(), "interval_seconds").to_string(),
            "interval_seconds",
        ),
        (
            "a cron task without cron_expression",
            without(cron.clone(), "cron_expression").to_string(),
            "cron_expression",
        ),
        (
            "an invalid cron_expression",
            with(cron.clone(), "cron_expression", json!("not a cron")).to_string(),
            "cron_expression",
        ),
        (
            "a cron_expression restricting both day fields",
            with(cron.clone(), "cron_expression", json!("0 0 12 15 * MON")).to_string(),
            "cron_expression",
        ),
        (
            "a cron_expression with L in a list (Quartz refuses it)",
            with(cron.clone(), "cron_expression", json!("0 0 12 L,15 * ?")).to_string(),
            "cron_expression",
        ),
        (
            "an unknown timezone",
            with(cron.clone(), "timezone", json!("Mars/Olympus")).to_string(),
            "timezone",
        ),
        (
            "an unknown method",
            with(interval.clone(), "method", json!("FETCH")).to_string(),
            "method",
        ),
        (
            "a start_time that is not RFC 3339",
            with(interval.clone(), "start_time", json!("yesterday")).to_string(),
            "start_time",
        ),
        (
            "stop_condition.max_cnt 0",
            with(interval.clone(), "stop_condition", json!({"max_cnt": 0})).to_string(),
            "max_cnt",
        ),
        (
            "a header value that is not a string",
            with(interval.clone(), "headers", json!({"X-A": 5})).to_string(),
            "headers",
        ),
        (
            "missing user_id",
            without(interval.clone(), "user_id").to_string(),
            "user_id",
        ),
        (
            "retry.max_retries -1",
            with(interval.clone(), "retry", json!({"max_retries": -1})).to_string(),
            "max_retries",
        ),
    ];
    for (case, body, field) in &cases {
        let (status, v) = post_raw(&app, Some("application/json"), body.clone()).await;
        assert_error(case, status, &v, 400, field);
    }

    // 'L' is named in its refusal, so the user knows what is wrong.
    let (_, v) = app
        .create_as(
            1001,
            &with(cron.clone(), "cron_expression", json!("0 0 12 L,15 * ?")),
        )
        .await;
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| word == "L"),
        "the refusal of `L` should name it: {message:?}"
    );

    // None of them created anything.
    let (status, list) = app.get_json("/api/v1/users/1001/tasks", 1001).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 0, "a refused create stored a task: {list}");
}

// ---- 3. size, content type, path parameters -----------------------------------------------

#[actix_web::test]
async fn a_body_larger_than_max_body_bytes_is_refused_with_413() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.server.max_body_bytes = 2048).await;
    let mut body = quiet_task(&app, 1001, "/big");
    body["body"] = json!({"padding": "x".repeat(10 * 1024)});
    let (status, v) = post_raw(&app, Some("application/json"), body.to_string()).await;
    assert_error_shape("a 10 KB body with a 2 KB limit", status, &v, 413);

    // The same task without the padding fits.
    let (status, v) = app.create_as(1001, &without(body, "body")).await;
    assert_eq!(status, 201, "a small body is accepted: {v}");
}

#[actix_web::test]
async fn a_body_not_declared_as_json_is_refused_with_415() {
    let app = spawn_app(Backend::Sqlite).await;
    let body = quiet_task(&app, 1001, "/ct").to_string();
    for (case, ct) in [
        ("Content-Type: text/plain", Some("text/plain")),
        ("no Content-Type", None),
    ] {
        let (status, v) = post_raw(&app, ct, body.clone()).await;
        let message = assert_error_shape(case, status, &v, 415);
        assert!(
            message.to_ascii_lowercase().contains("content-type"),
            "{case}: the message should name Content-Type: {message:?}"
        );
    }
}

#[actix_web::test]
async fn a_task_id_that_is_not_a_uuid_is_refused_with_400() {
    let app = spawn_app(Backend::Sqlite).await;
    let patch = json!({"interval_seconds": 30});
    let cases = [
        ("view", Method::GET, "/api/v1/tasks/not-a-uuid", None),
        (
            "patch",
            Method::PATCH,
            "/api/v1/tasks/not-a-uuid",
            Some(&patch),
        ),
        (
            "cancel",
            Method::PUT,
            "/api/v1/tasks/not-a-uuid/cancel",
            None,
        ),
        ("delete", Method::DELETE, "/api/v1/tasks/not-a-uuid", None),
        ("logs", Method::GET, "/api/v1/tasks/not-a-uuid/logs", None),
    ];
    for (case, method, path, body) in cases {
        let (status, v) = call(&app, method, path, &token(1001), body).await;
        assert_error(case, status, &v, 400, "task_id");
    }
}

#[actix_web::test]
async fn a_user_id_that_is_not_a_number_is_refused_with_400() {
    let app = spawn_app(Backend::Sqlite).await;
    for path in [
        "/api/v1/users/abc/tasks",
        "/api/v1/users/abc/tasks/running-count",
        "/api/v1/users/1.5/tasks",
    ] {
        let (status, v) = app.get_json(path, 1001).await;
        assert_error(path, status, &v, 400, "user_id");
    }
}

// ---- 4. authentication and authorisation --------------------------------------------------

#[actix_web::test]
async fn requests_without_a_valid_token_are_refused_with_401() {
    let app = spawn_app(Backend::Sqlite).await;
    let now = now_ms() / 1000;
    let expired = sign(&json!({"sub": "1001", "exp": now - 600}), SECRET);
    let no_exp = sign(&json!({"sub": "1001"}), SECRET);
    let other_secret = sign(
        &json!({"sub": "1001", "exp": now + 3600}),
        "another-secret-entirely",
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("a garbage token", Some("Bearer garbage".into())),
        (
            "a token signed with another secret",
            Some(format!("Bearer {other_secret}")),
        ),
        (
            "a token expired 10 minutes ago",
            Some(format!("Bearer {expired}")),
        ),
        ("a token without exp", Some(format!("Bearer {no_exp}"))),
        ("a Basic scheme", Some("Basic dXNlcjpwdw==".into())),
    ];
    let body = quiet_task(&app, 1001, "/auth");
    for (case, authorization) in &cases {
        let requests = [
            ("create", Method::POST, "/api/v1/tasks", Some(&body)),
            ("list", Method::GET, "/api/v1/users/1001/tasks", None),
            (
                "running-count",
                Method::GET,
                "/api/v1/users/1001/tasks/running-count",
                None,
            ),
            (
                "view",
                Method::GET,
                "/api/v1/tasks/0190a5c4-7b9e-7000-8000-000000000000",
                None,
            ),
        ];
        for (what, method, path, body) in requests {
            let (status, v) =
                call_with_auth(&app, method, path, authorization.as_deref(), body).await;
            assert_error_shape(&format!("{what} with {case}"), status, &v, 401);
        }
    }
    // Nothing was created by the refused creates.
    let (status, list) = app.get_json("/api/v1/users/1001/tasks", 1001).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 0, "{list}");

    // Control: a token expired within the 60 s leeway is still accepted.
    let recent = sign(&json!({"sub": "1001", "exp": now - 10}), SECRET);
    let (status, v) = call(&app, Method::GET, "/api/v1/users/1001/tasks", &recent, None).await;
    assert_eq!(status, 200, "a token 10 s past exp is within leeway: {v}");
}

#[actix_web::test]
async fn a_user_cannot_create_a_task_for_another_user() {
    let app = spawn_app(Backend::Sqlite).await;
    let (status, v) = app.create_as(1001, &quiet_task(&app, 2002, "/x")).await;
    assert_error("user 1001 creating for 2002", status, &v, 403, "user_id");
    let (_, list) = app.get_json("/api/v1/users/2002/tasks", 2002).await;
    assert_eq!(list["total"], 0, "the refused create stored a task: {list}");
}

async fn another_users_task_is_not_found_for_every_operation(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_task(quiet_task(&app, 1001, "/mine")).await;
    let before = app.task(&id).await;
    let missing = uuid::Uuid::new_v4().to_string();
    let patch = json!({"interval_seconds": 30});
    for task in [&id, &missing] {
        let cases = [
            ("view", Method::GET, format!("/api/v1/tasks/{task}"), None),
            (
                "patch",
                Method::PATCH,
                format!("/api/v1/tasks/{task}"),
                Some(&patch),
            ),
            (
                "cancel",
                Method::PUT,
                format!("/api/v1/tasks/{task}/cancel"),
                None,
            ),
            (
                "delete",
                Method::DELETE,
                format!("/api/v1/tasks/{task}"),
                None,
            ),
            (
                "logs",
                Method::GET,
                format!("/api/v1/tasks/{task}/logs"),
                None,
            ),
        ];
        for (case, method, path, body) in cases {
            let (status, v) = call(&app, method, &path, &token(2002), body).await;
            let which = if task == &id {
                "user 1001's task"
            } else {
                "a task that does not exist"
            };
            assert_error_shape(&format!("user 2002: {case} of {which}"), status, &v, 404);
        }
    }
    // And the answer is the same as for a task that does not exist: nothing reveals it.
    let (_, foreign) = app.get_json(&format!("/api/v1/tasks/{id}"), 2002).await;
    let (_, absent) = app
        .get_json(&format!("/api/v1/tasks/{missing}"), 2002)
        .await;
    assert_eq!(
        foreign, absent,
        "another user's task must look like no task"
    );

    // Nothing happened to it.
    let after = app.task(&id).await;
    assert_eq!(after["status"], "pending", "{after}");
    assert_eq!(after["interval_seconds"], 3600, "{after}");
    assert_eq!(after["version"], before["version"], "{after}");
}

on_both_backends!(another_users_task_is_not_found_for_every_operation);

#[actix_web::test]
async fn a_user_cannot_list_another_users_tasks() {
    let app = spawn_app(Backend::Sqlite).await;
    for path in [
        "/api/v1/users/1001/tasks",
        "/api/v1/users/1001/tasks/running-count",
    ] {
        let (status, v) = app.get_json(path, 2002).await;
        assert_error(&format!("user 2002: {path}"), status, &v, 403, "user_id");
    }
}

async fn an_admin_may_create_view_and_list_for_any_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = admin_token();
    let own = app.create_task(quiet_task(&app, 1001, "/user")).await;

    let (status, created) = call(
        &app,
        Method::POST,
        "/api/v1/tasks",
        &admin,
        Some(&quiet_task(&app, 3003, "/admin")),
    )
    .await;
    assert_eq!(status, 201, "admin creates for user 3003: {created}");
    let theirs = created["task_id"].as_str().expect("task_id").to_string();

    for (task, owner) in [(&own, 1001), (&theirs, 3003)] {
        let (status, v) = call(
            &app,
            Method::GET,
            &format!("/api/v1/tasks/{task}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 200, "admin views user {owner}'s task: {v}");
        assert_eq!(v["user_id"], owner, "{v}");

        let (status, list) = call(
            &app,
            Method::GET,
            &format!("/api/v1/users/{owner}/tasks"),
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 200, "admin lists user {owner}'s tasks: {list}");
        assert_eq!(ids_of(&list), vec![task.clone()], "{list}");

        let (status, count) = call(
            &app,
            Method::GET,
            &format!("/api/v1/users/{owner}/tasks/running-count"),
            &admin,
            None,
        )
        .await;
        assert_eq!(
            status, 200,
            "admin reads user {owner}'s running count: {count}"
        );
        assert_eq!(count["user_id"], owner, "{count}");
    }

    // The task the admin created belongs to 3003, who sees it as their own.
    let (status, v) = app.get_json(&format!("/api/v1/tasks/{theirs}"), 3003).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["user_id"], 3003);
}

on_both_backends!(an_admin_may_create_view_and_list_for_any_user);

// ---- 5. listing ---------------------------------------------------------------------------

async fn listing_a_users_tasks_filters_pages_and_counts_all_matches(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut mine = Vec::new();
    for i in 0..5 {
        mine.push(
            app.create_task(quiet_task(&app, 1001, &format!("/list/{i}")))
                .await,
        );
    }
    let mut stopped = HashSet::new();
    for id in &mine[..2] {
        let (status, v) = app.cancel(id).await;
        assert_eq!(status, 200, "cancel: {v}");
        stopped.insert(id.clone());
    }
    let (status, v) = app.create_as(2002, &quiet_task(&app, 2002, "/other")).await;
    assert_eq!(status, 201, "{v}");
    let other = v["task_id"].as_str().expect("task_id").to_string();

    let (status, all) = app.get_json("/api/v1/users/1001/tasks", 1001).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["total"], 5, "{all}");
    let ids: HashSet<String> = ids_of(&all).into_iter().collect();
    let expected: HashSet<String> = mine.iter().cloned().collect();
    assert_eq!(ids, expected, "only user 1001's tasks, all of them");
    assert!(!ids.contains(&other));
    for item in all["tasks"].as_array().expect("tasks") {
        let obj = item.as_object().expect("an item is an object");
        for key in [
            "task_id",
            "status",
            "type",
            "http_endpoint",
            "next_run_time",
        ] {
            assert!(obj.contains_key(key), "list item lacks `{key}`: {item}");
        }
        assert_eq!(item["type"], "interval", "{item}");
        assert!(
            item["http_endpoint"]
                .as_str()
                .is_some_and(|u| u.starts_with(&app.sink.url("/list/"))),
            "{item}"
        );
        let id = item["task_id"].as_str().expect("task_id");
        let want = if stopped.contains(id) {
            "stopped"
        } else {
            "pending"
        };
        assert_eq!(item["status"], want, "{item}");
        if want == "pending" {
            assert_time("list next_run_time", &item["next_run_time"]);
        }
    }

    let (status, list) = app
        .get_json("/api/v1/users/1001/tasks?status=stopped", 1001)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 2, "{list}");
    assert_eq!(
        ids_of(&list).into_iter().collect::<HashSet<_>>(),
        stopped,
        "{list}"
    );
    let (_, list) = app
        .get_json("/api/v1/users/1001/tasks?status=pending", 1001)
        .await;
    assert_eq!(list["total"], 3, "{list}");
    let (_, list) = app
        .get_json("/api/v1/users/1001/tasks?status=running", 1001)
        .await;
    assert_eq!(list["total"], 0, "{list}");
    assert_eq!(list["tasks"], json!([]), "{list}");

    let mut seen = HashSet::new();
    for (offset, len) in [(0, 2), (2, 2), (4, 1)] {
        let path = format!("/api/v1/users/1001/tasks?limit=2&offset={offset}");
        let (status, page) = app.get_json(&path, 1001).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert_eq!(page["total"], 5, "{path}: total counts every match: {page}");
        let ids = ids_of(&page);
        assert_eq!(ids.len(), len, "{path}: {page}");
        for id in ids {
            assert!(
                seen.insert(id.clone()),
                "{path}: {id} was on an earlier page"
            );
        }
    }
    assert_eq!(seen, expected, "the pages together are every task");

    let (_, page) = app
        .get_json(
            "/api/v1/users/1001/tasks?status=pending&limit=2&offset=2",
            1001,
        )
        .await;
    assert_eq!(page["total"], 3, "{page}");
    assert_eq!(ids_of(&page).len(), 1, "{page}");
}

on_both_backends!(listing_a_users_tasks_filters_pages_and_counts_all_matches);

#[actix_web::test]
async fn listing_query_parameters_are_validated() {
    let app = spawn_app(Backend::Sqlite).await;
    for (query, field) in [
        ("status=bogus", "status"),
        ("status=RUNNING!", "status"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
    ] {
        let path = format!("/api/v1/users/1001/tasks?{query}");
        let (status, v) = app.get_json(&path, 1001).await;
        assert_error(&path, status, &v, 400, field);
    }
    for query in ["limit=1", "limit=1000", "offset=0", "status=completed"] {
        let path = format!("/api/v1/users/1001/tasks?{query}");
        let (status, v) = app.get_json(&path, 1001).await;
        assert_eq!(status, 200, "{path}: {v}");
    }
}

async fn the_running_count_counts_only_running_tasks(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = "/api/v1/users/1001/tasks/running-count";
    let (status, v) = app.get_json(path, 1001).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["user_id"], json!(1001), "user_id is the integer: {v}");
    assert_eq!(v["running_tasks"], json!(0), "{v}");
    assert_time("last_updated", &v["last_updated"]);

    // One task that starts running (fires every second), one pending, one stopped, and one
    // of another user's that runs.
    let running = app
        .create_task(interval_task(&app, "/count/running", 1))
        .await;
    app.create_task(quiet_task(&app, 1001, "/count/pending"))
        .await;
    let stopped = app
        .create_task(quiet_task(&app, 1001, "/count/stopped"))
        .await;
    assert_eq!(app.cancel(&stopped).await.0, 200);
    let mut foreign = interval_task(&app, "/count/foreign", 1);
    foreign["user_id"] = json!(2002);
    assert_eq!(app.create_as(2002, &foreign).await.0, 201);
    app.wait_task(&running, Duration::from_secs(10), |v| {
        v["status"] == "running"
    })
    .await;

    let (status, v) = app.get_json(path, 1001).await;
    assert_eq!(status, 200, "{v}");
    let keys: HashSet<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        HashSet::from(["user_id", "running_tasks", "last_updated"]),
        "{v}"
    );
    assert_eq!(v["user_id"], json!(1001), "{v}");
    assert_eq!(v["running_tasks"], json!(1), "{v}");
    let at = assert_time("last_updated", &v["last_updated"]);
    assert!(
        (at - now_ms()).abs() < 60_000,
        "last_updated should be about now: {v}"
    );
}

on_both_backends!(the_running_count_counts_only_running_tasks);

// ---- 6. the task view ---------------------------------------------------------------------

async fn the_task_view_has_every_documented_field_and_no_header_value(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = quiet_task(&app, 1001, "/view");
    body["headers"] = json!({
        "Authorization": "Bearer view-secret-value",
        "X-Trace-Token": "trace-secret-value",
    });
    body["stop_condition"] = json!({"max_cnt": 3, "result.done": true});
    body["body"] = json!({"k": "v"});
    let (status, created) = app.create_as(1001, &body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["task_id"].as_str().expect("task_id").to_string();
    for secret in ["view-secret-value", "trace-secret-value"] {
        assert!(!created.to_string().contains(secret), "{created}");
    }

    let view = app.task(&id).await;
    let obj = view.as_object().expect("the view is an object");
    for key in [
        "task_id",
        "user_id",
        "type",
        "status",
        "http_endpoint",
        "method",
        "header_names",
        "interval_seconds",
        "cron_expression",
        "timezone",
        "stop_condition",
        "execution_count",
        "last_execution",
        "next_run_time",
        "version",
        "created_at",
        "updated_at",
    ] {
        assert!(obj.contains_key(key), "the view lacks `{key}`: {view}");
    }
    assert_eq!(view["task_id"], id.as_str());
    assert_eq!(view["user_id"], json!(1001));
    assert_eq!(view["type"], "interval");
    assert_eq!(view["status"], "pending");
    assert_eq!(view["http_endpoint"], app.sink.url("/view"));
    assert_eq!(view["method"], "POST", "method defaults to POST");
    let mut names: Vec<&str> = view["header_names"]
        .as_array()
        .expect("header_names is an array")
        .iter()
        .map(|n| n.as_str().expect("a header name"))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec!["Authorization", "X-Trace-Token"],
        "as the user wrote them"
    );
    assert_eq!(view["interval_seconds"], json!(3600));
    assert_eq!(view["cron_expression"], Value::Null);
    assert_eq!(view["timezone"], Value::Null);
    assert_eq!(
        view["stop_condition"],
        json!({"max_cnt": 3, "result.done": true})
    );
    assert_eq!(view["execution_count"], json!(0));
    assert_eq!(
        view["last_execution"],
        Value::Null,
        "null before the first execution"
    );
    assert!(view["version"].is_i64(), "version is an integer: {view}");
    assert_eq!(
        assert_time("view next_run_time", &view["next_run_time"]),
        parse_time(&created["next_run_time"]),
        "the view and the 201 agree on the next run"
    );
    let created_at = assert_time("created_at", &view["created_at"]);
    let updated_at = assert_time("updated_at", &view["updated_at"]);
    assert!(updated_at >= created_at, "{view}");
    assert!((created_at - now_ms()).abs() < 60_000, "{view}");

    let text = view.to_string();
    for secret in ["view-secret-value", "trace-secret-value"] {
        assert!(
            !text.contains(secret),
            "a header value appears in the view: {view}"
        );
    }
    let (_, list) = app.get_json("/api/v1/users/1001/tasks", 1001).await;
    assert!(!list.to_string().contains("secret-value"), "{list}");

    // A cron task shows its expression and its (default) zone.
    let cron = app
        .create_task(json!({
            "user_id": 1001,
            "type": "cron",
            "http_endpoint": app.sink.url("/view/cron"),
            "cron_expression": "0 0 12 * * ?",
        }))
        .await;
    let view = app.task(&cron).await;
    assert_eq!(view["type"], "cron");
    assert_eq!(view["cron_expression"], "0 0 12 * * ?");
    assert_eq!(view["timezone"], "UTC", "the zone defaults to UTC: {view}");
    assert_eq!(view["interval_seconds"], Value::Null);
    let next = assert_time("cron next_run_time", &view["next_run_time"]);
    assert_eq!(next % 86_400_000, 12 * 3_600_000, "next noon UTC: {view}");
}

on_both_backends!(the_task_view_has_every_documented_field_and_no_header_value);

async fn a_start_time_with_an_offset_is_normalised_to_utc(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = once_task(&app, "/offset", Some("2030-01-01T12:00:00+02:00".into()));
    let (status, created) = app.create_as(1001, &body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["next_run_time"], "2030-01-01T10:00:00.000Z");
    let view = app
        .task(created["task_id"].as_str().expect("task_id"))
        .await;
    assert_eq!(view["next_run_time"], "2030-01-01T10:00:00.000Z", "{view}");
    assert_eq!(view["type"], "once");
    assert_eq!(view["interval_seconds"], Value::Null);

    // Milliseconds in the input survive, in UTC.
    let body = once_task(
        &app,
        "/offset",
        Some("2030-06-30T23:30:00.250-05:30".into()),
    );
    let (status, created) = app.create_as(1001, &body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["next_run_time"], "2030-07-01T05:00:00.250Z");
}

on_both_backends!(a_start_time_with_an_offset_is_normalised_to_utc);

// ---- 7. outbound safety -------------------------------------------------------------------

#[actix_web::test]
async fn private_destinations_are_refused_at_create_unless_allowed() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.http.allow_private_targets = false).await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
    ] {
        let body = json!({
            "user_id": 1001,
            "type": "once",
            "http_endpoint": url,
            "start_time": "2030-01-01T00:00:00Z",
        });
        let (status, v) = app.create_as(1001, &body).await;
        assert_error(url, status, &v, 400, "http_endpoint");
    }
    let (_, list) = app.get_json("/api/v1/users/1001/tasks", 1001).await;
    assert_eq!(list["total"], 0, "a refused destination was stored: {list}");

    // Control: a public address literal passes the check (nothing is sent: it is due in 2030
    // and deleted at once).
    let (status, v) = app
        .create_as(
            1001,
            &json!({
                "user_id": 1001,
                "type": "once",
                "http_endpoint": "https://1.1.1.1/hook",
                "start_time": "2030-01-01T00:00:00Z",
            }),
        )
        .await;
    assert_eq!(status, 201, "a public destination is allowed: {v}");
    let id = v["task_id"].as_str().expect("task_id");
    let (status, v) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/tasks/{id}"),
        &token(1001),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
}

// ---- 8. probes and unknown routes ---------------------------------------------------------

#[actix_web::test]
async fn the_health_and_readiness_probes_answer_200_without_a_token() {
    let app = spawn_app(Backend::Sqlite).await;
    for path in ["/healthz", "/readyz"] {
        let r = app
            .client
            .get(app.url(path))
            .send()
            .await
            .expect("probe answers");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
}

#[actix_web::test]
async fn an_unknown_path_is_a_json_404() {
    let app = spawn_app(Backend::Sqlite).await;
    for (path, authorization) in [
        ("/nope", None),
        ("/api/v1/nope", Some(format!("Bearer {}", token(1001)))),
        (
            "/api/v1/users/1001/tasks/running-count/extra",
            Some(format!("Bearer {}", token(1001))),
        ),
    ] {
        let (status, v) =
            call_with_auth(&app, Method::GET, path, authorization.as_deref(), None).await;
        assert_error_shape(path, status, &v, 404);
    }
}

#[actix_web::test]
async fn a_wrong_method_on_a_known_path_is_a_json_405() {
    let app = spawn_app(Backend::Sqlite).await;
    let some_task = uuid::Uuid::new_v4();
    for (method, path) in [
        (Method::GET, "/api/v1/tasks".to_string()),
        (Method::PUT, "/api/v1/tasks".to_string()),
        (Method::POST, format!("/api/v1/tasks/{some_task}")),
        (Method::GET, format!("/api/v1/tasks/{some_task}/cancel")),
        (Method::DELETE, "/api/v1/users/1001/tasks".to_string()),
    ] {
        let case = format!("{method} {path}");
        let (status, v) = call(&app, method, &path, &token(1001), None).await;
        assert_error_shape(&case, status, &v, 405);
    }
}

// ---- 9. durability and encryption at rest -------------------------------------------------

async fn a_created_task_is_stored_before_201_with_its_header_values_encrypted(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};

    let app = spawn_app(backend).await;
    let mut body = quiet_task(&app, 1001, "/durable");
    body["headers"] = json!({"Authorization": "Bearer top-secret-value"});
    let id = app.create_task(body).await;

    // Straight after the 201, from a connection of our own.
    let db = sea_orm::Database::connect(app.db.url.as_str())
        .await
        .expect("connect to the test database");
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT task_id, headers FROM tasks",
        ))
        .await
        .expect("query tasks");
    let row = rows
        .iter()
        .find(|r| r.try_get::<String>("", "task_id").ok().as_deref() == Some(id.as_str()))
        .unwrap_or_else(|| panic!("task {id} is not in the database right after its 201"));
    let headers: Option<Vec<u8>> = row.try_get("", "headers").expect("headers column");
    let headers = headers.expect("the headers column holds the encrypted headers");
    let secret = b"top-secret-value";
    assert!(
        !headers.windows(secret.len()).any(|w| w == secret),
        "the headers column holds the header value in clear text"
    );
    assert!(
        !headers.windows(6).any(|w| w == b"Bearer"),
        "the headers column holds the header value in clear text"
    );
    let _ = db.close().await;

    // The task still reads back with its header name.
    assert_eq!(
        app.task(&id).await["header_names"],
        json!(["Authorization"])
    );
}

on_both_backends!(a_created_task_is_stored_before_201_with_its_header_values_encrypted);

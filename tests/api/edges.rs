//! The API's edges as a hostile or careless client finds them (README, "The API"): every
//! number range-checked, URLs that must name their host and carry no credentials, times
//! bounded to what a schedule supports, a stable `code` per case, and 401 messages in our own
//! words.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

/// One request as user 1001 (or with the raw `Authorization` given), with an optional body.
async fn request(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: Option<String>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut r = app.client.request(method, app.url(path));
    r = r.header(
        "authorization",
        authorization.unwrap_or_else(|| format!("Bearer {}", token(1001))),
    );
    if let Some(body) = body {
        r = r.json(body);
    }
    let response = r.send().await.expect("request is answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asserts an error with `status`, `code` and a message naming `field`.
fn assert_refused(case: &str, got: (u16, Value), status: u16, code: &str, field: &str) {
    let (got_status, body) = got;
    assert_eq!(got_status, status, "{case}: {body}");
    assert_eq!(body["status"], "error", "{case}: {body}");
    assert_eq!(body["code"], code, "{case}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(field),
        "{case}: the message should name `{field}`: {body}"
    );
}

fn sign(claims: &Value, secret: &str, alg: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---- numbers ---------------------------------------------------------------------------------

async fn offsets_past_what_a_database_takes_are_refused_not_a_panic(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_task(interval_task(&app, "/offset", 3600)).await;
    let logs = format!("/api/v1/tasks/{id}/logs");
    for base in ["/api/v1/users/1001/tasks", logs.as_str()] {
        for offset in [
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            let path = format!("{base}?offset={offset}");
            let got = request(&app, Method::GET, &path, None, None).await;
            assert_refused(&path, got, 400, "invalid_input", "offset");
        }
        // The largest offset accepted is answered, with an empty page.
        let path = format!("{base}?offset=9223372036854775807");
        let (status, v) = request(&app, Method::GET, &path, None, None).await;
        assert_eq!(status, 200, "{path}: {v}");
        let page = v.get("tasks").or_else(|| v.get("logs")).expect("a page");
        assert_eq!(page, &json!([]), "{path}: {v}");
    }
    // The service is still there.
    let (status, _) = app.get_json(&format!("/api/v1/tasks/{id}"), 1001).await;
    assert_eq!(status, 200);
}
on_both_backends!(offsets_past_what_a_database_takes_are_refused_not_a_panic);

async fn a_max_cnt_past_what_storage_holds_is_refused_and_the_largest_is_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    for too_big in [
        json!(9_223_372_036_854_775_808u64),
        json!(u64::MAX),
        json!(1e30),
    ] {
        let body = json!({
            "user_id": 1001, "type": "interval", "interval_seconds": 1,
            "http_endpoint": app.sink.url("/max"), "stop_condition": {"max_cnt": too_big},
        });
        let got = app.create_as(1001, &body).await;
        assert_refused(
            &format!("max_cnt {too_big}"),
            got,
            400,
            "invalid_input",
            "stop_condition.max_cnt",
        );
    }
    // The largest accepted count is stored as given and does not end the task after a run.
    let id = app
        .create_task(json!({
            "user_id": 1001, "type": "interval", "interval_seconds": 1,
            "http_endpoint": app.sink.url("/max"),
            "stop_condition": {"max_cnt": i64::MAX},
        }))
        .await;
    let view = app
        .wait_task(&id, Duration::from_secs(30), |v| {
            v["execution_count"].as_i64() >= Some(2)
        })
        .await;
    assert_eq!(view["status"], "running", "{view}");
    assert_eq!(view["stop_condition"]["max_cnt"], json!(i64::MAX), "{view}");
    app.cancel(&id).await;
}
on_both_backends!(a_max_cnt_past_what_storage_holds_is_refused_and_the_largest_is_kept);

// ---- URLs ------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_url_must_name_its_host_and_carry_no_credentials() {
    let app = spawn_app(Backend::Sqlite).await;
    let good = app.sink.url("/creds");
    let port = app
        .sink
        .url("/")
        .split(':')
        .nth(2)
        .map(|p| p.trim_end_matches('/').to_owned());
    let port = port.expect("sink port");
    for url in [
        "http:///path".to_owned(),
        "http:/127.0.0.1/path".to_owned(),
        format!("http:127.0.0.1:{port}/path"),
        format!("http:\\\\127.0.0.1:{port}\\path"),
        "https://".to_owned(),
        "http://?x=1".to_owned(),
        format!("http://user:secret@127.0.0.1:{port}/path"),
        format!("http://user@127.0.0.1:{port}/path"),
        format!("http://:secret@127.0.0.1:{port}/path"),
        format!("http://@127.0.0.1:{port}/path"),
    ] {
        let body = json!({"user_id": 1001, "type": "once", "http_endpoint": url});
        let got = app.create_as(1001, &body).await;
        assert_refused(&url, got, 400, "invalid_input", "http_endpoint");
    }
    // PATCH checks the same.
    let id = app
        .create_task(
            json!({"user_id": 1001, "type": "interval", "interval_seconds": 3600,
            "http_endpoint": good}),
        )
        .await;
    let patch = json!({"http_endpoint": format!("http://admin:hunter2@127.0.0.1:{port}/")});
    let got = request(
        &app,
        Method::PATCH,
        &format!("/api/v1/tasks/{id}"),
        None,
        Some(&patch),
    )
    .await;
    let text = got.1.to_string();
    assert_refused(
        "patch with credentials",
        got,
        400,
        "invalid_input",
        "http_endpoint",
    );
    assert!(!text.contains("hunter2"), "the secret is echoed: {text}");
    // Nothing stored a credential: the task still shows its old URL.
    let view = app.task(&id).await;
    assert!(!view.to_string().contains("hunter2"), "{view}");
}

// ---- times -----------------------------------------------------------------------------------

async fn times_outside_what_a_schedule_supports_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.sink.url("/times");
    let cases = [
        (
            "a start in year 10000 once normalised to UTC",
            json!({"type": "interval", "interval_seconds": 60,
                   "start_time": "9999-12-31T23:00:00-05:00"}),
            "start_time",
        ),
        (
            "a start after 2199",
            json!({"type": "once", "start_time": "2200-01-01T00:00:00Z"}),
            "start_time",
        ),
        (
            "a start before 1970",
            json!({"type": "interval", "interval_seconds": 60,
                   "start_time": "1969-12-31T23:59:59Z"}),
            "start_time",
        ),
        (
            "a cron start after 2199",
            json!({"type": "cron", "cron_expression": "0 0 0 1 1 ?",
                   "start_time": "2300-01-01T00:00:00Z"}),
            "start_time",
        ),
        (
            "a cron whose every fire lies before its start",
            json!({"type": "cron", "cron_expression": "0 0 0 1 1 ? 2030",
                   "start_time": "2031-01-01T00:00:00Z"}),
            "cron_expression",
        ),
        (
            "a cron whose every fire lies in the past",
            json!({"type": "cron", "cron_expression": "0 0 0 1 1 ? 2020"}),
            "cron_expression",
        ),
        (
            "an end_time after 2199",
            json!({"type": "interval", "interval_seconds": 60,
                   "stop_condition": {"end_time": "9999-12-31T23:59:59Z"}}),
            "stop_condition.end_time",
        ),
    ];
    for (case, fields, field) in cases {
        let mut body = fields.clone();
        body["user_id"] = json!(1001);
        body["http_endpoint"] = json!(url);
        let got = app.create_as(1001, &body).await;
        assert_refused(case, got, 400, "invalid_input", field);
    }
    let (_, list) = app.get_json("/api/v1/users/1001/tasks", 1001).await;
    assert_eq!(
        list["total"], 0,
        "a refused create stored something: {list}"
    );

    // The last supported year still works, and its first run is shown as a plain RFC 3339 time.
    let (status, v) = app
        .create_as(
            1001,
            &json!({"user_id": 1001, "type": "cron", "http_endpoint": url,
                    "cron_expression": "0 0 0 1 7 ?", "start_time": "2199-06-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["next_run_time"], "2199-07-01T00:00:00.000Z", "{v}");
    // A PATCH that would leave a cron task no fire is refused, and the task keeps its schedule.
    let id = v["task_id"].as_str().expect("task_id");
    let patch = json!({"cron_expression": "0 0 0 1 1 ? 2100"});
    let got = request(
        &app,
        Method::PATCH,
        &format!("/api/v1/tasks/{id}"),
        None,
        Some(&patch),
    )
    .await;
    assert_refused(
        "patch to a cron with no fire left",
        got,
        400,
        "invalid_input",
        "cron_expression",
    );
    assert_eq!(app.task(id).await["cron_expression"], "0 0 0 1 7 ?");
}
on_both_backends!(times_outside_what_a_schedule_supports_are_refused);

// ---- error codes -----------------------------------------------------------------------------

async fn each_error_carries_the_code_of_its_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_task(interval_task(&app, "/codes", 3600)).await;
    let task = format!("/api/v1/tasks/{id}");

    let missing = "/api/v1/tasks/0190a5c4-7b9e-7000-8000-000000000000";
    let got = request(&app, Method::GET, missing, None, None).await;
    assert_refused("a missing task", got, 404, "task_not_found", "task");
    let got = request(
        &app,
        Method::GET,
        &task,
        Some(format!("Bearer {}", token(2002))),
        None,
    )
    .await;
    assert_refused("another user's task", got, 404, "task_not_found", "task");
    let got = request(&app, Method::GET, "/api/v1/nothing-here", None, None).await;
    assert_refused("a missing route", got, 404, "route_not_found", "endpoint");
    let got = request(&app, Method::DELETE, "/api/v1/users/1001/tasks", None, None).await;
    assert_refused("a wrong method", got, 405, "method_not_allowed", "DELETE");

    // A stale If-Match is a version mismatch …
    let stale = app
        .client
        .patch(app.url(&task))
        .bearer_auth(token(1001))
        .header("if-match", "999")
        .json(&json!({"interval_seconds": 7200}))
        .send()
        .await
        .expect("patch");
    let status = stale.status().as_u16();
    let body: Value = stale.json().await.expect("json");
    assert_refused(
        "a stale If-Match",
        (status, body),
        409,
        "version_mismatch",
        "If-Match",
    );
    // … a finished task is the wrong state.
    assert_eq!(app.cancel(&id).await.0, 200);
    let got = app.cancel(&id).await;
    assert_refused(
        "cancel of a stopped task",
        got,
        409,
        "invalid_state",
        "status",
    );
    let got = request(
        &app,
        Method::PATCH,
        &task,
        None,
        Some(&json!({"interval_seconds": 7200})),
    )
    .await;
    assert_refused(
        "patch of a stopped task",
        got,
        409,
        "invalid_state",
        "status",
    );

    // Bodies.
    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/api/v1/tasks"))
            .bearer_auth(token(1001))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let r = raw(r#"{"user_id": "#, "application/json")
        .await
        .expect("post");
    let status = r.status().as_u16();
    let got = (status, r.json().await.expect("json"));
    assert_refused("malformed JSON", got, 400, "invalid_json", "body");
    let r = raw(r#"{"user_id": 1001}"#, "text/plain")
        .await
        .expect("post");
    let status = r.status().as_u16();
    let got = (status, r.json().await.expect("json"));
    assert_refused(
        "a text body",
        got,
        415,
        "unsupported_media_type",
        "Content-Type",
    );
    let huge = json!({"user_id": 1001, "type": "once", "http_endpoint": app.sink.url("/"),
        "body": "x".repeat(2 * 1024 * 1024)});
    let got = app.create_as(1001, &huge).await;
    assert_refused(
        "a body over the limit",
        got,
        413,
        "payload_too_large",
        "max_body_bytes",
    );
    let got = app
        .create_as(1001, &json!({"user_id": 1001, "type": "weekly"}))
        .await;
    assert_refused("an invalid field", got, 400, "invalid_input", "type");

    // Tokens and permissions.
    let got = request(&app, Method::GET, "/api/v1/users/2002/tasks", None, None).await;
    assert_refused("another user's list", got, 403, "forbidden", "user");
    let expired = sign(
        &json!({"sub": "1001", "exp": now_secs() - 600}),
        SECRET,
        jsonwebtoken::Algorithm::HS256,
    );
    let got = request(
        &app,
        Method::GET,
        "/api/v1/users/1001/tasks",
        Some(format!("Bearer {expired}")),
        None,
    )
    .await;
    assert_refused("an expired token", got, 401, "token_expired", "expired");
    let got = request(
        &app,
        Method::GET,
        "/api/v1/users/1001/tasks",
        Some("Bearer x.y.z".into()),
        None,
    )
    .await;
    assert_refused("a garbage token", got, 401, "unauthorized", "token");
}
on_both_backends!(each_error_carries_the_code_of_its_case);

#[actix_web::test]
async fn the_openapi_document_lists_every_error_code() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let schema = &doc["components"]["schemas"]["ErrorCode"];
    let mut listed: Vec<String> = Vec::new();
    let mut collect = |v: &Value| {
        if let Some(values) = v["enum"].as_array() {
            listed.extend(values.iter().filter_map(|s| s.as_str().map(str::to_owned)));
        }
    };
    collect(schema);
    for variant in schema["oneOf"].as_array().into_iter().flatten() {
        collect(variant);
    }
    for code in [
        "invalid_input",
        "invalid_json",
        "unauthorized",
        "token_expired",
        "forbidden",
        "task_not_found",
        "route_not_found",
        "method_not_allowed",
        "version_mismatch",
        "invalid_state",
        "payload_too_large",
        "unsupported_media_type",
        "quota_exceeded",
        "not_ready",
        "internal",
    ] {
        assert!(
            listed.iter().any(|c| c == code),
            "{code} missing from {schema}"
        );
    }
}

#[actix_web::test]
async fn a_refused_token_is_told_why_in_our_words_not_the_librarys() {
    let app = spawn_app(Backend::Sqlite).await;
    let exp = now_secs() + 3600;
    use jsonwebtoken::Algorithm::{HS256, HS512};
    let cases = [
        ("garbage", "garbage".to_owned()),
        ("three garbage parts", "eyJ.eyJ.sig".to_owned()),
        (
            "a numeric sub",
            sign(&json!({"sub": 1001, "exp": exp}), SECRET, HS256),
        ),
        ("no sub", sign(&json!({"exp": exp}), SECRET, HS256)),
        (
            "a string exp",
            sign(&json!({"sub": "1001", "exp": "soon"}), SECRET, HS256),
        ),
        (
            "a role that is a number",
            sign(
                &json!({"sub": "1001", "exp": exp, "role": 7}),
                SECRET,
                HS256,
            ),
        ),
        (
            "a non-numeric sub",
            sign(&json!({"sub": "alice", "exp": exp}), SECRET, HS256),
        ),
        ("no exp", sign(&json!({"sub": "1001"}), SECRET, HS256)),
        (
            "HS512",
            sign(&json!({"sub": "1001", "exp": exp}), SECRET, HS512),
        ),
        (
            "another secret",
            sign(&json!({"sub": "1001", "exp": exp}), "other", HS256),
        ),
    ];
    let ours = [
        "malformed bearer token",
        "the token's signature does not verify",
        "the token must be signed with HS256",
        "the token lacks the required claim",
        "the token's claims are not valid",
        "the token's claim `sub` must be a decimal integer user id",
    ];
    for (case, token) in cases {
        let (status, body) = request(
            &app,
            Method::GET,
            "/api/v1/users/1001/tasks",
            Some(format!("Bearer {token}")),
            None,
        )
        .await;
        assert_eq!(status, 401, "{case}: {body}");
        assert_eq!(body["code"], "unauthorized", "{case}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            ours.iter().any(|m| message.starts_with(m)),
            "{case}: not one of our messages: {message:?}"
        );
        for internal in [
            "Error(",
            "Json",
            "invalid type",
            "line ",
            "column ",
            "ErrorKind",
        ] {
            assert!(!message.contains(internal), "{case}: {message:?}");
        }
    }
}

// ---- rows accepted before the bounds ---------------------------------------------------------

async fn a_task_stored_before_todays_bounds_still_loads(backend: Backend) {
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let app = spawn_app(backend).await;
    let id = app.create_task(interval_task(&app, "/legacy", 3600)).await;
    // What an earlier version accepted: more match keys than today's bound, a count past
    // i64::MAX, an end time after 2199, a start before 1970 and credentials in the URL.
    let mut legacy = serde_json::Map::new();
    for i in 0..40 {
        legacy.insert(format!("k{i}"), json!(i));
    }
    legacy.insert("max_cnt".into(), json!(u64::MAX));
    legacy.insert("end_time".into(), json!("9999-12-31T23:59:59Z"));
    let port = app
        .sink
        .url("/")
        .split(':')
        .nth(2)
        .map(|p| p.trim_end_matches('/').to_owned());
    let db = sea_orm::Database::connect(&app.db.url)
        .await
        .expect("connect");
    let row = entities::tasks::Entity::find_by_id(id.clone())
        .one(&db)
        .await
        .expect("read")
        .expect("row");
    let mut row: entities::tasks::ActiveModel = row.into();
    row.stop_condition = Set(Some(Value::Object(legacy).to_string()));
    row.start_time = Set(Some(-86_400_000));
    row.http_endpoint = Set(format!(
        "http://user:pw@127.0.0.1:{}/legacy",
        port.expect("port")
    ));
    row.update(&db).await.expect("rewrite the row");

    // PATCH reads the stored definition back: it must load, not answer 500.
    let (status, v) = request(
        &app,
        Method::PATCH,
        &format!("/api/v1/tasks/{id}"),
        None,
        Some(&json!({"interval_seconds": 7200})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["interval_seconds"], 7200, "{v}");
    assert_eq!(v["stop_condition"]["k39"], 39, "{v}");
    assert!(!v.to_string().contains("user:pw"), "{v}");
}
on_both_backends!(a_task_stored_before_todays_bounds_still_loads);

//! Input that validation accepts is stored on every backend (README, "Configuration"): a task
//! with the largest value of every field is created and read back on SQLite and MariaDB
//! alike, and one byte (or one item) more is refused with a 400 naming the field — never a
//! 500 from a column that is too narrow.

use serde_json::{json, Value};
use tickwheel::domain::limits::{MAX_MATCH_KEYS, MAX_MATCH_KEY_BYTES, MAX_MATCH_VALUE_BYTES};

use crate::helpers::*;
use crate::on_both_backends;

/// The longest canonical IANA zone name.
const LONGEST_ZONE: &str = "America/Argentina/ComodRivadavia";

/// A valid cron expression of exactly `len` bytes: seconds `0,0,…,0` (or one `00` to make the
/// length come out even) at noon on the first of January.
fn cron_of_len(len: usize) -> String {
    let tail = " 0 12 1 1 ?";
    let list_len = len - tail.len();
    let mut seconds = vec!["0"; list_len.div_ceil(2)];
    if list_len % 2 == 0 {
        seconds[0] = "00";
    }
    let expression = format!("{}{tail}", seconds.join(","));
    assert_eq!(expression.len(), len);
    expression
}

/// The largest stop condition: every reserved key and as many response-match keys as allowed,
/// each key and expected value as long as allowed (within `max_bytes` as compact JSON).
fn largest_stop_condition(max_bytes: usize) -> Value {
    let mut condition = json!({
        "max_cnt": i64::MAX,
        "end_time": "2199-12-31T23:59:59.999Z",
        "max_failures": u32::MAX,
    });
    for i in 0..MAX_MATCH_KEYS {
        let prefix = format!("k{i:02}.");
        let key = format!("{prefix}{}", "a".repeat(MAX_MATCH_KEY_BYTES - prefix.len()));
        // A string's JSON has two quotes.
        condition[key] = json!("v".repeat(MAX_MATCH_VALUE_BYTES - 2));
    }
    assert!(condition.to_string().len() <= max_bytes);
    condition
}

/// A URL on the sink of exactly `len` bytes (already in normalised form).
fn url_of_len(app: &TestApp, len: usize) -> String {
    let base = app.sink.url("/");
    format!("{base}{}", "p".repeat(len - base.len()))
}

/// The largest cron task the limits allow, with its body filling the request up to
/// `server.max_body_bytes`.
fn largest_task(app: &TestApp) -> Value {
    let limits = app.settings.limits.input();
    let mut headers = serde_json::Map::new();
    for i in 0..limits.max_headers {
        let prefix = format!("X-H{i:03}-");
        let name = format!(
            "{prefix}{}",
            "n".repeat(limits.max_header_name_bytes - prefix.len())
        );
        // Quotes take two bytes once the list is stored as JSON: the largest stored form.
        headers.insert(name, json!("\"".repeat(limits.max_header_value_bytes)));
    }
    let mut task = json!({
        "user_id": 1001,
        "type": "cron",
        "http_endpoint": url_of_len(app, limits.max_url_bytes),
        "method": "DELETE",
        "headers": headers,
        "cron_expression": cron_of_len(limits.max_cron_expression_bytes),
        "timezone": LONGEST_ZONE,
        "stop_condition": largest_stop_condition(limits.max_stop_condition_bytes),
        "retry": {"max_retries": 20, "backoff_ms": 3_600_000},
        "body": {"data": ""},
    });
    let short = serde_json::to_vec(&task).expect("json").len();
    let room = app.settings.server.max_body_bytes - short;
    task["body"]["data"] = json!("b".repeat(room));
    assert_eq!(
        serde_json::to_vec(&task).expect("json").len(),
        app.settings.server.max_body_bytes
    );
    task
}

on_both_backends!(the_largest_value_of_every_field_is_stored_and_read_back);

async fn the_largest_value_of_every_field_is_stored_and_read_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let task = largest_task(&app);
    let (status, created) = app.create_as(1001, &task).await;
    assert_eq!(status, 201, "the largest valid task is stored: {created}");
    let id = created["task_id"].as_str().expect("task_id");

    let view = app.task(id).await;
    for field in [
        "http_endpoint",
        "method",
        "cron_expression",
        "timezone",
        "stop_condition",
        "retry",
        "body",
    ] {
        assert!(
            view[field] == task[field],
            "{field} comes back as it was sent ({} bytes sent, {} read)",
            task[field].to_string().len(),
            view[field].to_string().len()
        );
    }
    let names: Vec<&str> = task["headers"]
        .as_object()
        .expect("headers")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        view["header_names"],
        json!(names),
        "every header is stored and opens again"
    );
}

on_both_backends!(one_past_each_limit_is_refused_naming_the_field);

async fn one_past_each_limit_is_refused_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let limits = app.settings.limits.input();
    let base = json!({
        "user_id": 1001,
        "type": "cron",
        "http_endpoint": app.sink.url("/limits"),
        "cron_expression": "0 0 12 1 1 ?",
    });
    let with = |key: &str, value: Value| {
        let mut v = base.clone();
        v[key] = value;
        v
    };
    let too_many: serde_json::Map<String, Value> = (0..=limits.max_headers)
        .map(|i| (format!("X-H{i}"), json!("v")))
        .collect();
    let long_name = "N".repeat(limits.max_header_name_bytes + 1);
    let cases = [
        (
            "a URL one byte too long",
            with(
                "http_endpoint",
                json!(url_of_len(&app, limits.max_url_bytes + 1)),
            ),
            "http_endpoint",
        ),
        (
            "one header too many",
            with("headers", Value::Object(too_many)),
            "headers",
        ),
        (
            "a header name one byte too long",
            with("headers", json!({ long_name: "v" })),
            "headers",
        ),
        (
            "a header value one byte too long",
            with(
                "headers",
                json!({"X-Long": "v".repeat(limits.max_header_value_bytes + 1)}),
            ),
            "headers.X-Long",
        ),
        (
            "a cron expression one byte too long",
            with(
                "cron_expression",
                json!(cron_of_len(limits.max_cron_expression_bytes + 1)),
            ),
            "cron_expression",
        ),
        (
            "one response-match key too many",
            with(
                "stop_condition",
                Value::Object(
                    (0..=MAX_MATCH_KEYS)
                        .map(|i| (format!("k{i}"), json!(true)))
                        .collect(),
                ),
            ),
            "stop_condition",
        ),
        (
            "a response-match key one byte too long",
            with(
                "stop_condition",
                json!({ "k".repeat(MAX_MATCH_KEY_BYTES + 1): true }),
            ),
            "stop_condition",
        ),
        (
            "an expected value one byte too long",
            with(
                "stop_condition",
                json!({"k": "v".repeat(MAX_MATCH_VALUE_BYTES - 1)}),
            ),
            "stop_condition.k",
        ),
        (
            "one retry too many",
            with("retry", json!({"max_retries": 21})),
            "retry.max_retries",
        ),
        (
            "a backoff one millisecond too long",
            with("retry", json!({"backoff_ms": 3_600_001})),
            "retry.backoff_ms",
        ),
        (
            "a zone that does not exist",
            with("timezone", json!(format!("{LONGEST_ZONE}x"))),
            "timezone",
        ),
        (
            "a method that is not one of the five",
            with("method", json!("HEAD")),
            "method",
        ),
    ];
    for (case, body, field) in cases {
        let (status, v) = app.create_as(1001, &body).await;
        assert_eq!(status, 400, "{case}: {v}");
        assert_eq!(v["code"], "invalid_input", "{case}: {v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{field}:")),
            "{case}: the message names {field}: {message}"
        );
    }

    // The body is bounded by the request: one byte past `server.max_body_bytes` is 413.
    let mut big = largest_task(&app);
    let data = big["body"]["data"].as_str().expect("data").to_owned() + "b";
    big["body"]["data"] = json!(data);
    let (status, v) = app.create_as(1001, &big).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["code"], "payload_too_large", "{v}");
}

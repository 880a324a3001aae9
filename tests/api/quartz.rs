//! Quartz's special cron forms over the API: a created task's `next_run_time` is the fire time
//! Quartz 2.3 gives for its expression, zone and start time (from the committed corpus,
//! `tests/data/quartz/corpus.tsv`, made by `scripts/quartz-corpus.sh`).

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

const CORPUS: &str = include_str!("../data/quartz/corpus.tsv");

/// Quartz's first fire time after `reference_ms` for `expr` in `zone`, from the corpus.
fn quartz_first_fire(expr: &str, zone: &str, reference_ms: i64) -> i64 {
    let reference = reference_ms.to_string();
    CORPUS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split('\t').collect::<Vec<_>>())
        .find(|cols| cols[0] == expr && cols[1] == zone && cols[2] == reference)
        .unwrap_or_else(|| panic!("no corpus case for {expr} | {zone} | {reference}"))[3]
        .parse()
        .expect("a fire time")
}

async fn create_cron(app: &TestApp, expr: &str, zone: &str, start_time: &str) -> (u16, Value) {
    app.create_as(
        1001,
        &json!({
            "user_id": 1001,
            "type": "cron",
            "http_endpoint": app.sink.url("/q"),
            "cron_expression": expr,
            "timezone": zone,
            "start_time": start_time,
        }),
    )
    .await
}

#[actix_web::test]
async fn quartz_special_forms_get_quartzs_next_run_time_over_the_api() {
    let app = spawn_app(Backend::Sqlite).await;
    for (expr, zone, start_time) in [
        ("0 15 10 L * ?", "Europe/Berlin", "2031-02-01T00:00:00Z"),
        ("0 0 12 15W * ?", "America/New_York", "2031-03-01T00:00:00Z"),
        (
            "0 15 10 ? * 6#3",
            "Australia/Lord_Howe",
            "2031-04-01T00:00:00Z",
        ),
        ("0 0 22-2 * * ?", "America/New_York", "2031-11-02T05:30:00Z"),
    ] {
        let start_ms = parse_time(&json!(start_time));
        // A fire time at or after the start time is the first after start_time - 1 ms.
        let expected = quartz_first_fire(expr, zone, start_ms - 1);
        let (status, v) = create_cron(&app, expr, zone, start_time).await;
        assert_eq!(status, 201, "{expr}: {v}");
        assert_eq!(
            parse_time(&v["next_run_time"]),
            expected,
            "{expr} in {zone} from {start_time}: got {}, Quartz says {}",
            v["next_run_time"],
            tickwheel::time::to_rfc3339(expected)
        );
        let id = v["task_id"].as_str().expect("task_id");
        let r = app
            .client
            .delete(app.url(&format!("/api/v1/tasks/{id}")))
            .bearer_auth(token(1001))
            .send()
            .await
            .expect("delete");
        assert!(
            r.status().is_success(),
            "{expr}: delete gave {}",
            r.status()
        );
    }
    let (status, list) = app.get_json("/api/v1/users/1001/tasks", 1001).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 0, "{list}");
}

/// Quartz reads a month or weekday name and ignores a step after it (`MON/2` is every Monday,
/// `JAN/3` January alone): such a task is created with Quartz's next run time and keeps its
/// expression as written. A step that is not a positive number, or an unknown name, is still
/// a 400 naming `cron_expression`.
async fn a_name_with_a_step_is_accepted_and_fires_as_quartz_fires_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let start_time = "2031-02-01T00:00:00Z";
    let start_ms = parse_time(&json!(start_time));
    for (expr, zone) in [
        ("0 0 9 ? * MON/2", "Europe/Berlin"),
        ("0 0 6 10 JAN/3 ?", "America/New_York"),
    ] {
        let expected = quartz_first_fire(expr, zone, start_ms - 1);
        let (status, v) = create_cron(&app, expr, zone, start_time).await;
        assert_eq!(status, 201, "{expr}: {v}");
        assert_eq!(
            parse_time(&v["next_run_time"]),
            expected,
            "{expr} in {zone} from {start_time}: got {}, Quartz says {}",
            v["next_run_time"],
            tickwheel::time::to_rfc3339(expected)
        );
        let id = v["task_id"].as_str().expect("task_id");
        let (status, view) = app.get_json(&format!("/api/v1/tasks/{id}"), 1001).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["cron_expression"], expr, "{view}");
        assert_eq!(parse_time(&view["next_run_time"]), expected, "{view}");
    }
    for expr in [
        "0 0 9 ? * MON/0",
        "0 0 9 ? * MON/x",
        "0 0 9 ? * FOO/2",
        "0 0 6 10 JAN/0 ?",
        "0 0 6 10 FOO/2 ?",
    ] {
        let (status, v) = create_cron(&app, expr, "UTC", start_time).await;
        assert_eq!(status, 400, "{expr}: {v}");
        assert_eq!(v["status"], "error", "{expr}: {v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("cron_expression"),
            "{expr}: the refusal should name cron_expression: {message:?}"
        );
    }
    let (status, list) = app.get_json("/api/v1/users/1001/tasks", 1001).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 2, "{list}");
}

on_both_backends!(a_name_with_a_step_is_accepted_and_fires_as_quartz_fires_it);

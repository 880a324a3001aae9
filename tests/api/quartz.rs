//! Quartz's special cron forms over the API: a created task's `next_run_time` is the fire time
//! Quartz 2.3 gives for its expression, zone and start time (from the committed corpus,
//! `tests/data/quartz/corpus.tsv`, made by `scripts/quartz-corpus.sh`).

use serde_json::json;

use crate::helpers::*;

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
        let (status, v) = app
            .create_as(
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
            .await;
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

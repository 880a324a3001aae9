//! `POST /api/v1/schedules/preview` and `GET /api/v1/tasks/{id}/preview`: the next fire times
//! of a schedule with their local times and daylight-saving notes, the same as Quartz 2.3's
//! (the committed corpus) and the same refusals as create; nothing is stored.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

const CORPUS: &str = include_str!("../data/quartz/corpus.tsv");

async fn preview(app: &TestApp, body: &Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url("/api/v1/schedules/preview"))
        .bearer_auth(token(1001))
        .json(body)
        .send()
        .await
        .expect("preview request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// (time, local, note) of each listed fire.
fn rows(v: &Value) -> Vec<(String, String, Value)> {
    v["times"]
        .as_array()
        .unwrap_or_else(|| panic!("no times: {v}"))
        .iter()
        .map(|t| {
            (
                t["time"].as_str().unwrap_or_default().to_owned(),
                t["local"].as_str().unwrap_or_default().to_owned(),
                t["note"].clone(),
            )
        })
        .collect()
}

fn row(time: &str, local: &str, note: Value) -> (String, String, Value) {
    (time.to_owned(), local.to_owned(), note)
}

fn year_of(ms: i64) -> i32 {
    use chrono::Datelike;
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("a time")
        .year()
}

/// Every corpus case in a zone with daylight saving: the preview from `start_time` =
/// reference + 1 ms (its first fire is Quartz's first after the reference) lists Quartz's five
/// fire times; a refused expression is a 400 naming `cron_expression`. Preview touches no
/// storage, so one backend serves.
#[actix_web::test]
async fn the_preview_lists_quartzs_fire_times_for_every_corpus_case_in_a_daylight_saving_zone() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut max_year = i32::MAX;
    let mut checked = 0;
    for line in CORPUS.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if line.starts_with('#') {
            if cols[0] == "# quartz_max_year" {
                max_year = cols[1].parse().expect("a year");
            }
            continue;
        }
        let (expr, zone, reference) = (cols[0], cols[1], cols[2].parse::<i64>().expect("ms"));
        if zone == "UTC" {
            continue;
        }
        let expected = &cols[3..];
        let (status, v) = preview(
            &app,
            &json!({"type": "cron", "cron_expression": expr, "timezone": zone,
                    "start_time": tickwheel::time::to_rfc3339(reference + 1), "count": 5}),
        )
        .await;
        checked += 1;
        if expected[0] == "ERR" {
            assert_eq!(status, 400, "{expr} | {zone}: Quartz refuses it: {v}");
            assert!(
                v["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("cron_expression"),
                "{expr}: {v}"
            );
            continue;
        }
        assert_eq!(status, 200, "{expr} | {zone}: {v}");
        assert_eq!(v["timezone"], zone, "{v}");
        let ours: Vec<i64> = rows(&v).iter().map(|r| parse_time(&json!(r.0))).collect();
        for (i, want) in expected.iter().enumerate() {
            match (*want, ours.get(i)) {
                ("none", None) => break,
                // Quartz stops at its clock's year + 100; tickwheel goes on to 2199.
                ("none", Some(&t)) => {
                    assert!(year_of(t) > max_year, "{expr} | {zone} | {reference}: {v}");
                    break;
                }
                (want, got) => assert_eq!(
                    got.copied(),
                    Some(want.parse::<i64>().expect("ms")),
                    "{expr} | {zone} | {reference}: fire {i}: {v}"
                ),
            }
        }
    }
    assert!(
        checked > 1000,
        "only {checked} cases in daylight-saving zones"
    );
    let (status, list) = app.get_json("/api/v1/users/1001/tasks", 1001).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 0, "a preview stores nothing: {list}");
}

async fn daylight_saving_changes_are_noted(backend: Backend) {
    let app = spawn_app(backend).await;
    let cron = |expr: &str, zone: &str, start: &str, count: u32| {
        json!({"type": "cron", "cron_expression": expr, "timezone": zone,
               "start_time": start, "count": count})
    };
    // Berlin, spring forward on 2026-03-29: 02:30 does not exist.
    let (status, v) = preview(
        &app,
        &cron("0 30 2 * * ?", "Europe/Berlin", "2026-03-27T12:00:00Z", 3),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["timezone"], "Europe/Berlin");
    assert_eq!(
        rows(&v),
        vec![
            row(
                "2026-03-28T01:30:00.000Z",
                "2026-03-28T02:30:00+01:00",
                Value::Null
            ),
            row(
                "2026-03-30T00:30:00.000Z",
                "2026-03-30T02:30:00+02:00",
                json!("dst_gap_skipped")
            ),
            row(
                "2026-03-31T00:30:00.000Z",
                "2026-03-31T02:30:00+02:00",
                Value::Null
            ),
        ]
    );
    // The example of the contract: every half hour across the gap.
    let (status, v) = preview(
        &app,
        &cron("0 0/30 * * * ?", "Europe/Berlin", "2026-03-29T00:30:00Z", 2),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        rows(&v)[1],
        row(
            "2026-03-29T01:00:00.000Z",
            "2026-03-29T03:00:00+02:00",
            json!("dst_gap_skipped")
        )
    );
    // Berlin, fall back on 2026-10-25: 02:30 occurs twice and fires once, at the second.
    let (status, v) = preview(
        &app,
        &cron("0 30 2 * * ?", "Europe/Berlin", "2026-10-23T12:00:00Z", 3),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        rows(&v),
        vec![
            row(
                "2026-10-24T00:30:00.000Z",
                "2026-10-24T02:30:00+02:00",
                Value::Null
            ),
            row(
                "2026-10-25T01:30:00.000Z",
                "2026-10-25T02:30:00+01:00",
                json!("dst_overlap")
            ),
            row(
                "2026-10-26T01:30:00.000Z",
                "2026-10-26T02:30:00+01:00",
                Value::Null
            ),
        ]
    );
    // New York: spring forward on 2026-03-08, fall back on 2026-11-01.
    let (status, v) = preview(
        &app,
        &cron(
            "0 30 2 * * ?",
            "America/New_York",
            "2026-03-07T12:00:00Z",
            2,
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        rows(&v),
        vec![
            row(
                "2026-03-09T06:30:00.000Z",
                "2026-03-09T02:30:00-04:00",
                json!("dst_gap_skipped")
            ),
            row(
                "2026-03-10T06:30:00.000Z",
                "2026-03-10T02:30:00-04:00",
                Value::Null
            ),
        ]
    );
    let (status, v) = preview(
        &app,
        &cron(
            "0 30 1 * * ?",
            "America/New_York",
            "2026-10-31T12:00:00Z",
            2,
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        rows(&v),
        vec![
            row(
                "2026-11-01T06:30:00.000Z",
                "2026-11-01T01:30:00-05:00",
                json!("dst_overlap")
            ),
            row(
                "2026-11-02T06:30:00.000Z",
                "2026-11-02T01:30:00-05:00",
                Value::Null
            ),
        ]
    );
}

async fn interval_and_once_previews_list_their_times(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, v) = preview(
        &app,
        &json!({"type": "interval", "interval_seconds": 20, "start_time": "2031-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["timezone"], "UTC");
    let r = rows(&v);
    assert_eq!(r.len(), 10, "count defaults to 10: {v}");
    assert_eq!(
        r[0],
        row(
            "2031-01-01T00:00:00.000Z",
            "2031-01-01T00:00:00+00:00",
            Value::Null
        )
    );
    assert_eq!(r[9].0, "2031-01-01T00:03:00.000Z");
    let (status, v) = preview(
        &app,
        &json!({"type": "once", "start_time": "2031-01-01T00:00:00Z", "timezone": "Asia/Tokyo",
                "count": 100}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["timezone"], "Asia/Tokyo");
    assert_eq!(
        rows(&v),
        vec![row(
            "2031-01-01T00:00:00.000Z",
            "2031-01-01T09:00:00+09:00",
            Value::Null
        )]
    );
}

async fn count_out_of_range_is_refused_naming_count(backend: Backend) {
    let app = spawn_app(backend).await;
    for count in [json!(0), json!(101), json!("x"), json!(1.5), json!(-1)] {
        let (status, v) = preview(
            &app,
            &json!({"type": "interval", "interval_seconds": 20, "count": count}),
        )
        .await;
        assert_eq!(status, 400, "count {count}: {v}");
        assert_eq!(v["code"], "invalid_input", "{v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("count"),
            "count {count}: {v}"
        );
    }
    let id = app.create_task(interval_task(&app, "/p", 3600)).await;
    for count in ["0", "101", "x"] {
        let (status, v) = app
            .get_json(&format!("/api/v1/tasks/{id}/preview?count={count}"), 1001)
            .await;
        assert_eq!(status, 400, "count {count}: {v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("count"),
            "{v}"
        );
    }
}

async fn an_invalid_schedule_gets_the_same_refusal_as_create(backend: Backend) {
    let app = spawn_app(backend).await;
    for schedule in [
        json!({"type": "cron", "cron_expression": "0 0 12 1 * MON"}),
        json!({"type": "cron", "cron_expression": "not a cron"}),
        json!({"type": "cron", "cron_expression": "0 0 12 * * ?", "timezone": "Mars/Base"}),
        json!({"type": "interval", "interval_seconds": 0}),
        json!({"type": "interval"}),
        json!({"type": "weekly"}),
        json!({"type": "once", "start_time": "yesterday"}),
    ] {
        let (status, v) = preview(&app, &schedule).await;
        let mut task = schedule.clone();
        task["user_id"] = json!(1001);
        task["http_endpoint"] = json!(app.sink.url("/x"));
        let (create_status, created) = app.create_as(1001, &task).await;
        assert_eq!(status, 400, "{schedule}: {v}");
        assert_eq!((status, &v), (create_status, &created), "{schedule}");
    }
    let (status, list) = app.get_json("/api/v1/users/1001/tasks", 1001).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 0, "{list}");
}

async fn a_preview_needs_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app
        .client
        .post(app.url("/api/v1/schedules/preview"))
        .json(&json!({"type": "interval", "interval_seconds": 20}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    let id = app.create_task(interval_task(&app, "/p", 3600)).await;
    let r = app
        .client
        .get(app.url(&format!("/api/v1/tasks/{id}/preview")))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
}

async fn a_tasks_preview_starts_at_its_next_run_and_is_its_owners_alone(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app
        .create_task(json!({
            "user_id": 1001, "type": "cron", "http_endpoint": app.sink.url("/c"),
            "cron_expression": "0 30 2 * * ?", "timezone": "Europe/Berlin",
            "start_time": "2031-03-29T00:00:00Z", "stop_condition": {"max_cnt": 4},
        }))
        .await;
    let task = app.task(&id).await;
    let (status, v) = app
        .get_json(&format!("/api/v1/tasks/{id}/preview?count=3"), 1001)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["timezone"], "Europe/Berlin");
    let r = rows(&v);
    assert_eq!(r.len(), 3, "{v}");
    assert_eq!(json!(r[0].0), task["next_run_time"], "{v}");
    // 2031-03-30 is the change; 02:30 on that day does not exist.
    assert_eq!(r[0].0, "2031-03-29T01:30:00.000Z", "{v}");
    assert_eq!(
        r[1],
        row(
            "2031-03-31T00:30:00.000Z",
            "2031-03-31T02:30:00+02:00",
            json!("dst_gap_skipped")
        )
    );
    // The stop condition ends it after four runs.
    let (_, v) = app
        .get_json(&format!("/api/v1/tasks/{id}/preview"), 1001)
        .await;
    assert_eq!(rows(&v).len(), 4, "max_cnt 4: {v}");

    let (status, v) = app
        .get_json(&format!("/api/v1/tasks/{id}/preview"), 2002)
        .await;
    assert_eq!(status, 404, "another user's task: {v}");
    let unknown = uuid::Uuid::new_v4();
    let (status, v) = app
        .get_json(&format!("/api/v1/tasks/{unknown}/preview"), 1001)
        .await;
    assert_eq!(status, 404, "{v}");

    // Paused: the slots after now; stopped: none.
    let pause = app
        .client
        .put(app.url(&format!("/api/v1/tasks/{id}/pause")))
        .bearer_auth(token(1001))
        .send()
        .await
        .expect("pause");
    assert_eq!(pause.status(), 200);
    let (status, v) = app
        .get_json(&format!("/api/v1/tasks/{id}/preview?count=2"), 1001)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(rows(&v)[0].0, "2031-03-29T01:30:00.000Z", "{v}");
    let (status, v) = app.cancel(&id).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = app
        .get_json(&format!("/api/v1/tasks/{id}/preview"), 1001)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["times"], json!([]), "{v}");
    assert_eq!(app.task(&id).await["status"], "stopped");
}

on_both_backends!(
    daylight_saving_changes_are_noted,
    interval_and_once_previews_list_their_times,
    count_out_of_range_is_refused_naming_count,
    an_invalid_schedule_gets_the_same_refusal_as_create,
    a_preview_needs_a_token,
    a_tasks_preview_starts_at_its_next_run_and_is_its_owners_alone,
);

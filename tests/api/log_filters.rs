//! Filtering a task's history (README, "The API": `GET /api/v1/tasks/{task_id}/logs`):
//! `outcome` (success = sent and answered 2xx, failure = sent and answered otherwise or not at
//! all, skipped = not sent), `since` (inclusive) and `until` (exclusive) on the row's
//! `timestamp` in any RFC 3339 offset, `total` counting every match; bad values are 400 naming
//! the parameter, another user's task 404. Each row tells what started its execution
//! (`trigger`) and how late its first attempt was (`lateness_ms`), a catch-up after a `kill -9`
//! included. Every test runs on SQLite and MariaDB.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{FixedOffset, TimeZone};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;
use crate::recovery::{self, interval_body, now_ms, wait_arrivals_since, Setup, EVENT_WAIT};

on_both_backends!(
    the_history_is_filtered_by_outcome_and_time_and_rows_tell_their_trigger_and_lateness,
    bad_history_filters_are_refused_naming_the_parameter,
    a_catch_up_after_a_kill_9_is_logged_as_such,
);

fn outcome_of(l: &Value) -> &'static str {
    let attempt = l["attempt"].as_i64().expect("attempt");
    if attempt == 0 {
        return "skipped";
    }
    match l["http_status"].as_i64() {
        Some(s) if (200..300).contains(&s) => "success",
        _ => "failure",
    }
}

/// `ms` as RFC 3339 in UTC+05:30, percent-encoded for a query string.
fn in_india(ms: i64) -> String {
    let t = FixedOffset::east_opt(5 * 3600 + 1800)
        .expect("offset")
        .timestamp_millis_opt(ms)
        .single()
        .expect("a time");
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
        .replace('+', "%2B")
}

async fn page(app: &TestApp, id: &str, query: &str) -> (Vec<String>, u64) {
    let (status, v) = app
        .get_json(&format!("/api/v1/tasks/{id}/logs?limit=1000&{query}"), 1001)
        .await;
    assert_eq!(status, 200, "?{query}: {v}");
    let ids = v["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l["log_id"].as_str().expect("log_id").to_string())
        .collect();
    (ids, v["total"].as_u64().expect("total"))
}

async fn the_history_is_filtered_by_outcome_and_time_and_rows_tell_their_trigger_and_lateness(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    // The first execution fails; the later ones take longer than the interval, so the slots
    // that fall due meanwhile are skipped.
    app.sink.script("/filters", [Reply::status(500)]);
    app.sink.default_reply(
        "/filters",
        Reply::status(200).delay(Duration::from_millis(1500)),
    );
    let mut body = interval_task(&app, "/filters", 1);
    body["retry"] = json!({"max_retries": 0});
    let id = app.create_task(body).await;

    let start = Instant::now();
    loop {
        let logs = app.logs(&id).await["logs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let seen: Vec<&str> = logs.iter().map(outcome_of).collect();
        let n = |o: &str| seen.iter().filter(|s| **s == o).count();
        if n("failure") >= 1 && n("success") >= 2 && n("skipped") >= 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "expected a failure, two successes and a skip: {seen:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, v) = app.cancel(&id).await;
    assert_eq!(status, 200, "{v}");
    let all = app.logs(&id).await;
    let all = all["logs"].as_array().cloned().expect("logs");

    // Triggers and lateness: every row here is of a scheduled slot; a sent one was late by a
    // non-negative amount, a skipped one was never sent, so it has no lateness.
    for l in &all {
        assert_eq!(l["trigger"], "schedule", "{l}");
        if outcome_of(l) == "skipped" {
            assert_eq!(l["lateness_ms"], Value::Null, "{l}");
        } else {
            let late = l["lateness_ms"].as_i64();
            assert!(
                late.is_some_and(|ms| ms >= 0),
                "lateness of a sent attempt: {l}"
            );
        }
    }

    let ids_where = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        all.iter()
            .filter(|l| pred(l))
            .map(|l| l["log_id"].as_str().expect("log_id").to_string())
            .collect()
    };
    let mut by_outcome = 0;
    for outcome in ["success", "failure", "skipped"] {
        let (got, total) = page(&app, &id, &format!("outcome={outcome}")).await;
        let want = ids_where(&|l| outcome_of(l) == outcome);
        assert!(!want.is_empty(), "no {outcome} row to filter: {all:?}");
        assert_eq!(
            got, want,
            "outcome={outcome}: the matching rows, newest first"
        );
        assert_eq!(total, want.len() as u64, "outcome={outcome}");
        by_outcome += total;
    }
    assert_eq!(
        by_outcome,
        all.len() as u64,
        "every row has exactly one outcome"
    );

    // A pivot between rows: `since` includes it, `until` excludes it.
    let mut times: Vec<i64> = all.iter().map(|l| parse_time(&l["timestamp"])).collect();
    times.sort_unstable();
    times.dedup();
    assert!(
        times.len() >= 3,
        "rows at three different times at least: {all:?}"
    );
    let pivot = times[times.len() / 2];
    let (since, since_total) = page(&app, &id, &format!("since={}", in_india(pivot))).await;
    assert_eq!(since, ids_where(&|l| parse_time(&l["timestamp"]) >= pivot));
    assert_eq!(since_total, since.len() as u64);
    let (until, until_total) = page(&app, &id, &format!("until={}", in_india(pivot))).await;
    assert_eq!(until, ids_where(&|l| parse_time(&l["timestamp"]) < pivot));
    assert_eq!(since_total + until_total, all.len() as u64);
    let utc = tickwheel::time::to_rfc3339(pivot);
    let (same, total) = page(&app, &id, &format!("since={utc}&until={utc}")).await;
    assert!(
        same.is_empty() && total == 0,
        "an empty window is empty, not an error"
    );

    let first = times[0];
    let window = format!("since={}&until={}", in_india(first), in_india(pivot));
    let (got, total) = page(&app, &id, &format!("outcome=success&{window}")).await;
    let want = ids_where(&|l| {
        let t = parse_time(&l["timestamp"]);
        outcome_of(l) == "success" && t >= first && t < pivot
    });
    assert_eq!(got, want, "outcome and window together");
    assert_eq!(total, want.len() as u64);

    // `total` counts the matches, not the page.
    let (status, v) = app
        .get_json(
            &format!("/api/v1/tasks/{id}/logs?outcome=skipped&limit=1"),
            1001,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["logs"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(
        v["total"].as_u64(),
        Some(ids_where(&|l| outcome_of(l) == "skipped").len() as u64),
        "{v}"
    );
}

async fn bad_history_filters_are_refused_naming_the_parameter(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app
        .create_task(json!({
            "user_id": 1001, "type": "once", "http_endpoint": app.sink.url("/filters/bad"),
            "start_time": rfc3339_in(3_600_000),
        }))
        .await;
    for (query, field) in [
        ("outcome=ok", "outcome"),
        ("outcome=", "outcome"),
        ("outcome=Success", "outcome"),
        ("since=yesterday", "since"),
        ("since=2025-04-22", "since"),
        ("until=2025-04-22T10:00:00", "until"),
        ("until=1745316000000", "until"),
        (
            "since=2025-04-22T10:00:00Z&until=2025-04-22T11:59:59%2B02:00",
            "until",
        ),
    ] {
        let (status, v) = app
            .get_json(&format!("/api/v1/tasks/{id}/logs?{query}"), 1001)
            .await;
        assert_eq!(status, 400, "?{query}: {v}");
        assert_eq!(v["code"], "invalid_input", "?{query}: {v}");
        let message = v["message"].as_str().expect("message");
        assert!(
            message.starts_with(&format!("{field}:")),
            "?{query}: the message names {field}: {v}"
        );
    }
    // Valid filters on another user's task: it does not exist for them.
    let (status, v) = app
        .get_json(
            &format!("/api/v1/tasks/{id}/logs?outcome=success&since=2025-04-22T10:00:00Z"),
            2002,
        )
        .await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["code"], "task_not_found", "{v}");
}

/// The slots missed while the service was down are fired once, late on purpose: that row says
/// `catch_up` and carries the lateness; the executions after it are `schedule` again.
async fn a_catch_up_after_a_kill_9_is_logged_as_such(backend: Backend) {
    const PATH: &str = "/filters/catch-up";
    let sink = Sink::start();
    let setup = Setup::new(backend).await;
    let mut first = setup.serve().await;
    let id = first.create_id(&interval_body(&sink, PATH)).await;
    sink.wait_for(PATH, 2, EVENT_WAIT).await;
    first.kill9();
    // Downtime has to pass for slots to be missed.
    recovery::pause(3500).await;
    let restart_ms = now_ms();
    let second = setup.serve().await;
    let ready_ms = now_ms();
    wait_arrivals_since(&sink, PATH, restart_ms, 2).await;

    let start = Instant::now();
    let logs = loop {
        let (status, v) = second
            .get_with(&format!("/api/v1/tasks/{id}/logs?limit=1000"), &token(1001))
            .await;
        assert_eq!(status, 200, "{v}");
        let logs = v["logs"].as_array().cloned().unwrap_or_default();
        let after: usize = logs
            .iter()
            .filter(|l| parse_time(&l["scheduled_time"]) >= restart_ms)
            .count();
        if logs.iter().any(|l| l["trigger"] == "catch_up") && after >= 1 {
            break logs;
        }
        assert!(
            start.elapsed() < EVENT_WAIT,
            "no catch-up row was logged: {v}"
        );
        recovery::pause(50).await;
    };
    let catch_ups: Vec<&Value> = logs.iter().filter(|l| l["trigger"] == "catch_up").collect();
    let slots: BTreeSet<i64> = catch_ups
        .iter()
        .map(|l| parse_time(&l["scheduled_time"]))
        .collect();
    assert_eq!(slots.len(), 1, "one catch-up execution: {catch_ups:?}");
    let c = catch_ups[0];
    // Missed while down: at or before the moment the restarted service was ready (its boot
    // takes a while after `restart_ms`).
    assert!(
        parse_time(&c["scheduled_time"]) <= ready_ms + 100,
        "the catch-up is for a slot missed while down (ready at {ready_ms}): {c}"
    );
    let late = c["lateness_ms"]
        .as_i64()
        .expect("a catch-up was sent: lateness");
    assert!(
        late >= restart_ms - parse_time(&c["scheduled_time"]) - 50,
        "the catch-up's lateness covers the downtime: {c}"
    );
    for l in &logs {
        if l["trigger"] != "catch_up" {
            assert_eq!(l["trigger"], "schedule", "{l}");
        }
    }
    // The catch-up row is found by the outcome filter like any other success.
    let (status, v) = second
        .get_with(
            &format!("/api/v1/tasks/{id}/logs?outcome=success&limit=1000"),
            &token(1001),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let total = v["total"].as_u64().expect("total");
    assert!(
        v["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .any(|l| l["trigger"] == "catch_up"),
        "{v}"
    );
    assert!(
        total >= 3,
        "two before the kill, the catch-up and more after it"
    );
}

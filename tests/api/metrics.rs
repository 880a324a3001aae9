//! `GET /metrics`: the named series exist with plausible values. Metrics are process-wide, so
//! these tests rely on nextest's one process per test (the README's test command).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

/// Parses the text exposition into `name{labels}` → value (labels as written).
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The values of the series `name` whose labels include every one of `labels`.
fn matching<'a>(
    m: &'a HashMap<String, f64>,
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = f64> + 'a {
    m.iter()
        .filter(move |(k, _)| {
            let (n, rest) = k.split_once('{').unwrap_or((k.as_str(), ""));
            n == name
                && labels
                    .iter()
                    .all(|(lk, lv)| rest.contains(&format!("{lk}=\"{lv}\"")))
        })
        .map(|(_, v)| *v)
}

fn value(m: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    matching(m, name, labels).next()
}

fn sum(m: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(m, name, labels).sum()
}

async fn scrape(app: &TestApp) -> (String, HashMap<String, f64>) {
    let r = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), 200, "/metrics needs no token");
    let text = r.text().await.expect("text");
    let parsed = parse(&text);
    (text, parsed)
}

#[actix_web::test]
async fn metrics_count_every_fire_and_every_actor_kind() {
    let app = spawn_app(Backend::Sqlite).await;
    // Three tasks of two executions each; one of them fails once first (a retry).
    app.sink.script("/m/retry", [Reply::status(500)]);
    let mut done = Vec::new();
    for path in ["/m/a", "/m/b", "/m/retry"] {
        let mut body = interval_task(&app, path, 1);
        body["stop_condition"] = json!({"max_cnt": 2});
        done.push(app.create_task(body).await);
    }
    // Two that stay scheduled an hour from now.
    for path in ["/m/idle1", "/m/idle2"] {
        app.create_task(interval_task(&app, path, 3600)).await;
    }
    for id in &done {
        app.wait_task(id, Duration::from_secs(20), |v| v["status"] == "completed")
            .await;
    }
    let arrivals: usize = ["/m/a", "/m/b", "/m/retry"]
        .iter()
        .map(|p| app.sink.count(p))
        .sum();
    assert_eq!(arrivals, 7, "2 + 2 + (2 + one retried attempt)");

    // Messages still on their way between threads (a Deregister to the wheel, a Stop to a
    // finished task) settle within moments: wait for every mailbox to be empty.
    let start = std::time::Instant::now();
    let (text, m) = loop {
        let (text, m) = scrape(&app).await;
        let idle = ["registry", "task", "wheel", "worker", "persistence"]
            .iter()
            .all(|a| value(&m, "tickwheel_actor_mailbox_depth", &[("actor", a)]) == Some(0.0));
        if idle && value(&m, "tickwheel_actor_live", &[("actor", "task")]) == Some(2.0) {
            break (text, m);
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the actors never went idle\n{text}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    let ok = value(&m, "tickwheel_fires_total", &[("outcome", "success")]).unwrap_or(0.0);
    let http_err = value(&m, "tickwheel_fires_total", &[("outcome", "http_error")]).unwrap_or(0.0);
    assert_eq!(
        ok + http_err,
        arrivals as f64,
        "fires counted = sink arrivals\n{text}"
    );
    assert_eq!(http_err, 1.0, "{text}");
    assert!(
        value(&m, "tickwheel_retries_scheduled_total", &[]).unwrap_or(0.0) >= 1.0,
        "{text}"
    );

    // Lateness: one observation per first attempt (6), in the buckets from 0.5 ms to 10 s.
    assert_eq!(
        value(&m, "tickwheel_fire_lateness_seconds_count", &[]),
        Some(6.0),
        "{text}"
    );
    assert!(value(
        &m,
        "tickwheel_fire_lateness_seconds_bucket",
        &[("le", "0.0005")]
    )
    .is_some());
    assert_eq!(
        value(
            &m,
            "tickwheel_fire_lateness_seconds_bucket",
            &[("le", "10")]
        ),
        Some(6.0),
        "every fire left within 10 s\n{text}"
    );
    assert!(
        value(&m, "tickwheel_downstream_request_seconds_count", &[]).unwrap_or(0.0) >= 7.0,
        "{text}"
    );

    // Task actors alive = active tasks (the two idle ones).
    assert_eq!(
        value(&m, "tickwheel_actor_live", &[("actor", "task")]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&m, "tickwheel_tasks", &[("state", "completed")]),
        Some(3.0)
    );
    assert_eq!(
        value(&m, "tickwheel_tasks", &[("state", "pending")]),
        Some(2.0)
    );
    assert_eq!(
        sum(&m, "tickwheel_wheel_timers", &[]),
        2.0,
        "the two idle tasks are on the wheel\n{text}"
    );

    for actor in ["registry", "task", "wheel", "worker", "persistence"] {
        assert!(
            sum(&m, "tickwheel_actor_messages_total", &[("actor", actor)]) > 0.0,
            "no messages counted for {actor}\n{text}"
        );
        assert!(
            value(
                &m,
                "tickwheel_actor_handling_seconds_count",
                &[("actor", actor)]
            )
            .unwrap_or(0.0)
                > 0.0,
            "no handling time for {actor}\n{text}"
        );
        // Idle now: every message sent has been handled (sends and handlings balance).
        assert_eq!(
            value(&m, "tickwheel_actor_mailbox_depth", &[("actor", actor)]),
            Some(0.0),
            "mailbox depth for {actor}\n{text}"
        );
        assert_eq!(
            value(&m, "tickwheel_actor_restarts_total", &[("actor", actor)]),
            Some(0.0),
            "{text}"
        );
    }
    for actor in ["registry", "wheel", "persistence"] {
        assert_eq!(
            value(&m, "tickwheel_actor_live", &[("actor", actor)]),
            Some(1.0),
            "{actor}\n{text}"
        );
    }
    assert_eq!(
        value(&m, "tickwheel_actor_live", &[("actor", "worker")]),
        Some(2.0)
    );
    assert!(
        value(
            &m,
            "tickwheel_actor_messages_total",
            &[("actor", "task"), ("message", "Fire")]
        )
        .unwrap_or(0.0)
            >= 6.0,
        "{text}"
    );
    assert!(value(&m, "tickwheel_persistence_batch_size_count", &[]).unwrap_or(0.0) >= 1.0);
    assert!(value(&m, "tickwheel_persistence_commit_seconds_count", &[]).unwrap_or(0.0) >= 1.0);
}

#[actix_web::test]
async fn a_skipped_fire_is_counted_by_its_outcome() {
    let app = spawn_app(Backend::Sqlite).await;
    app.sink.default_reply(
        "/m/slow",
        Reply::status(200).delay(Duration::from_millis(2500)),
    );
    let id = app.create_task(interval_task(&app, "/m/slow", 1)).await;
    app.wait_logs(&id, 1, Duration::from_secs(20)).await;
    let start = std::time::Instant::now();
    loop {
        let (text, m) = scrape(&app).await;
        if value(
            &m,
            "tickwheel_fires_total",
            &[("outcome", "skipped_overlap")],
        )
        .unwrap_or(0.0)
            >= 1.0
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{text}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn metrics_can_be_turned_off() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.metrics.enabled = false).await;
    let r = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), 404);
}

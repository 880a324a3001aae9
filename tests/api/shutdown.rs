//! Graceful shutdown: SIGTERM in the middle of a load loses no execution log and no task.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{self, Backend};
use crate::on_both_backends;
use crate::recovery::{interval_body, pause, slot_of, Setup, EVENT_WAIT};
use crate::sink::{Reply, Sink};

const SLOW: &str = "/shutdown/slow";
/// Each call takes this long to answer, so some are always on the wire.
const REPLY_MS: u64 = 700;

async fn sigterm_mid_load_finishes_in_flight_calls_and_loses_nothing(backend: Backend) {
    let sink = Sink::start();
    sink.default_reply(
        SLOW,
        Reply::status(200)
            .body("done")
            .delay(Duration::from_millis(REPLY_MS)),
    );
    let setup = Setup::new(backend).await;
    let mut server = setup.serve().await;

    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(server.create_id(&interval_body(&sink, SLOW)).await);
    }
    sink.wait_for(SLOW, 15, EVENT_WAIT).await;

    // Keep creating tasks while the shutdown happens: every 201 must survive it.
    let created: Arc<Mutex<Vec<String>>> = Arc::default();
    let creator = {
        let created = created.clone();
        let url = format!("http://127.0.0.1:{}/api/v1/tasks", server_port(&server));
        let body = json!({
            "user_id": 1001,
            "type": "once",
            "http_endpoint": sink.url("/shutdown/later"),
            "start_time": tickwheel::time::to_rfc3339(chrono::Utc::now().timestamp_millis() + 3_600_000),
        });
        actix_web::rt::spawn(async move {
            let client = reqwest::Client::new();
            for _ in 0..2000 {
                let r = client
                    .post(&url)
                    .bearer_auth(helpers::token(1001))
                    .json(&body)
                    .send()
                    .await;
                let Ok(r) = r else { break };
                if r.status() != 201 {
                    break;
                }
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if let Some(id) = v["task_id"].as_str() {
                    created.lock().unwrap().push(id.to_string());
                }
            }
        })
    };

    // SIGTERM right after a call arrived, so that it is on the wire (answered REPLY_MS later).
    let start = Instant::now();
    loop {
        let now = chrono::Utc::now().timestamp_millis();
        if sink.arrivals(SLOW).iter().any(|a| now - a.at_ms < 150) {
            break;
        }
        assert!(start.elapsed() < EVENT_WAIT, "no call arrived");
        pause(5).await;
    }
    let term_at = chrono::Utc::now().timestamp_millis();
    let code = server.terminate(Duration::from_secs(30)).await;
    assert_eq!(
        code,
        Some(0),
        "SIGTERM must end in exit code 0; stderr:\n{}",
        server.stderr()
    );
    let _ = creator.await;
    let arrivals = sink.arrivals(SLOW);
    let in_flight = arrivals
        .iter()
        .filter(|a| a.at_ms <= term_at && term_at - a.at_ms < REPLY_MS as i64)
        .count();
    assert!(
        in_flight > 0,
        "the test meant to stop with calls on the wire"
    );

    // Restart on the same database and look at what was recorded.
    let server = setup.serve().await;
    for id in &ids {
        let (status, v) = server
            .get_with(
                &format!("/api/v1/tasks/{id}/logs?limit=1000"),
                &helpers::token(1001),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let logged: Vec<(String, i64, String)> = v["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .map(|l| {
                (
                    l["scheduled_time"].as_str().unwrap_or("").to_string(),
                    l["http_status"].as_i64().unwrap_or(0),
                    l["error"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        for a in arrivals
            .iter()
            .filter(|a| a.header("x-tickwheel-task-id") == Some(id.as_str()) && a.at_ms <= term_at)
        {
            let slot = tickwheel::time::to_rfc3339(slot_of(a, id));
            assert!(
                logged.iter().any(|(s, st, _)| *s == slot && *st == 200),
                "call for {id} at {slot} reached the sink before SIGTERM but has no log row \
                 with status 200: {logged:?}"
            );
        }
    }
    let created = created.lock().unwrap().clone();
    for id in ids.iter().chain(created.iter()) {
        let (status, v) = server
            .get_with(&format!("/api/v1/tasks/{id}"), &helpers::token(1001))
            .await;
        assert_eq!(status, 200, "task {id} acknowledged with 201 is gone: {v}");
    }
}

fn server_port(server: &crate::recovery::Server) -> u16 {
    let url = server.url("");
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in url")
}

on_both_backends!(sigterm_mid_load_finishes_in_flight_calls_and_loses_nothing);

//! 11. Notifications across a take-over: a task's owner is killed (`kill -9`) between its
//!     `failing` and its `recovered`; the node that takes the task over reads the stored
//!     streak of failures, so `recovered` is still sent, and each event arrives once (one
//!     `webhook-id` per event, whichever node delivers it).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster::{Cluster, Config};
use crate::hooks::{Reply, Sink};
use crate::procs::{pause, wait_for};

/// `type` → the distinct `webhook-id`s it arrived with, at `path` of `sink`.
fn events(sink: &Sink, path: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in sink.arrivals(path) {
        let payload: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        let kind = payload["type"].as_str().unwrap_or("?").to_owned();
        let id = a.header("webhook-id").unwrap_or("?").to_owned();
        let ids = by_type.entry(kind).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    by_type
}

#[actix_web::test]
async fn a_task_whose_owner_dies_between_failing_and_recovered_notifies_each_once() {
    let cfg = Config {
        tasks: 10,
        ..Config::default()
    };
    let (mut c, own) = Cluster::loaded(cfg).await;
    let names = c.names();
    let hooks = Sink::start();
    hooks.default_reply("/flaky", Reply::status(500));

    let mut body = c.interval_body("/unused");
    body["http_endpoint"] = json!(hooks.url("/flaky"));
    body["retry"] = json!({"max_retries": 0});
    body["notify"] = json!({"url": hooks.url("/hook"), "events": ["failing", "recovered"]});
    let (status, v) = c.node(&names[0]).post("/api/v1/tasks", &body).await;
    assert_eq!(status, 201, "{v}");
    let id: uuid::Uuid = v["task_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no task_id: {v}"));
    let owner = own.owner_of(id).to_string();

    wait_for(
        "failing delivered",
        Duration::from_secs(20),
        50,
        || {
            let e = events(&hooks, "/hook");
            async move { e.contains_key("task.failing").then_some(()) }
        },
        || format!("{:?}", events(&hooks, "/hook")),
    )
    .await;
    // A few more failures in the run, then the owner dies; the sink recovers meanwhile.
    pause(1500).await;
    c.node_mut(&owner).kill9();
    hooks.default_reply("/flaky", Reply::status(200));

    wait_for(
        "recovered delivered after the take-over",
        Duration::from_secs(60),
        100,
        || {
            let e = events(&hooks, "/hook");
            async move { e.contains_key("task.recovered").then_some(()) }
        },
        || format!("{:?}", events(&hooks, "/hook")),
    )
    .await;
    // Long enough for a duplicate (a second owner, a retry) to show.
    pause(3000).await;
    let e = events(&hooks, "/hook");
    assert_eq!(
        e.keys().collect::<Vec<_>>(),
        vec!["task.failing", "task.recovered"],
        "{e:?}"
    );
    assert_eq!(e["task.failing"].len(), 1, "one failing: {e:?}");
    assert_eq!(e["task.recovered"].len(), 1, "one recovered: {e:?}");

    let survivor = names.iter().find(|n| **n != owner).expect("a survivor");
    let (status, v) = c
        .node(survivor)
        .get(&format!("/api/v1/tasks/{id}/notifications"))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["total"], 2, "{v}");
}

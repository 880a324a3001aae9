//! 10. Run now through any node: a request sent to a node that does not own the task is
//!     forwarded to its owner, which runs it exactly once (one arrival at the sink, sent by the
//!     owner, its `webhook-id` the answered `scheduled_time`), logged as `manual`, with no
//!     scheduled slot moved.

use std::time::Duration;

use serde_json::json;

use crate::cluster::{Cluster, Config};
use crate::procs::{now_ms, pause, wait_for};

const PROBES: usize = 3;
const PATH: &str = "/run-now";

#[actix_web::test]
async fn run_now_sent_to_a_node_that_does_not_own_the_task_runs_once_on_its_owner() {
    let cfg = Config {
        tasks: 30,
        ..Config::default()
    };
    let (c, own) = Cluster::loaded(cfg).await;
    let names = c.names();

    // Idle probes: their first run is an hour away, so every arrival is a manual run.
    let mut probes = Vec::new();
    for i in 0..PROBES {
        let mut body = c.interval_body(PATH);
        body["interval_seconds"] = json!(3600);
        body["start_time"] = json!(tickwheel::time::to_rfc3339(now_ms() + 3_600_000));
        let creator = c.node(&names[i % names.len()]);
        let (status, v) = creator.post("/api/v1/tasks", &body).await;
        assert_eq!(status, 201, "create on {}: {v}", creator.name);
        let id: uuid::Uuid = v["task_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no task_id: {v}"));
        probes.push((id, v["next_run_time"].clone()));
    }

    let mut asked = Vec::new();
    for (id, _) in &probes {
        let owner = own.owner_of(*id);
        let sender = names
            .iter()
            .find(|n| n.as_str() != owner)
            .expect("a node that does not own it");
        let (status, v) = c
            .node(sender)
            .post(&format!("/api/v1/tasks/{id}/run"), &json!({}))
            .await;
        assert_eq!(
            status, 202,
            "run now of {id} on {sender} (owner {owner}): {v}"
        );
        let slot = v["scheduled_time"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp_millis())
            .unwrap_or_else(|| panic!("no scheduled_time: {v}"));
        asked.push((*id, slot, owner.to_string(), sender.clone()));
    }

    wait_for(
        "an arrival of every probe",
        Duration::from_secs(20),
        50,
        || {
            let d = c.deliveries();
            let ok = asked
                .iter()
                .all(|(id, _, _, _)| d.iter().any(|x| x.task == *id));
            async move { ok.then_some(()) }
        },
        || format!("{} deliveries so far", c.sink.len()),
    )
    .await;
    // Long enough for a second send (by the forwarding node, or a retry) to show.
    pause(2000).await;
    let d = c.deliveries();
    for (id, slot, owner, sender) in &asked {
        let got: Vec<_> = d.iter().filter(|x| x.task == *id).collect();
        assert_eq!(
            got.len(),
            1,
            "probe {id} (asked on {sender}, owned by {owner}) arrived {} times: {got:?}",
            got.len()
        );
        assert_eq!(got[0].slot, *slot, "webhook-id carries the answered time");
        if let Some(node) = &got[0].node {
            assert_eq!(node.as_ref(), owner.as_str(), "sent by the owner");
        }
    }

    // The owner recorded it: one execution, logged as manual, the schedule untouched.
    for ((id, _, _, sender), (_, next)) in asked.iter().zip(&probes) {
        let node = c.node(sender);
        let v = wait_for(
            "the execution recorded",
            Duration::from_secs(20),
            50,
            || async move {
                let (status, v) = node.get(&format!("/api/v1/tasks/{id}")).await;
                (status == 200 && v["execution_count"] == 1).then_some(v)
            },
            || format!("task {id} not counted yet"),
        )
        .await;
        assert_eq!(&v["next_run_time"], next, "no slot moved: {v}");
        let (status, logs) = node.get(&format!("/api/v1/tasks/{id}/logs")).await;
        assert_eq!(status, 200, "{logs}");
        assert_eq!(logs["logs"][0]["trigger"], "manual", "{logs}");
    }
}

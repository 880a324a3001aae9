//! 8. Any node serves any call: tasks created on one node, cancelled on a second, owned by
//!    (if possible) a third. The owner fires the first slot on time and nothing scheduled more
//!    than a second after the cancel answered.

use std::time::Duration;

use uuid::Uuid;

use crate::cluster::{Cluster, Config, TaskInfo};
use crate::procs::{now_ms, pause, wait_for};

const PROBES: usize = 9;
const PATH: &str = "/probe";

#[actix_web::test]
async fn a_task_created_on_one_node_and_cancelled_on_another_stops() {
    let (mut c, own) = Cluster::loaded(Config::default()).await;
    let names = c.names();

    // Creator round-robin; the canceller is a node that is neither creator nor owner when
    // there is one.
    let (probes, _) = c.create_tasks(PROBES, PATH, None).await;
    let created_at = now_ms();
    let plan: Vec<(TaskInfo, String, String)> = probes
        .into_iter()
        .map(|t| {
            let owner = own.owner_of(t.id).to_string();
            let canceller = names
                .iter()
                .find(|n| **n != t.created_on && **n != owner)
                .or_else(|| names.iter().find(|n| **n != t.created_on))
                .expect("another node")
                .clone();
            (t, owner, canceller)
        })
        .collect();
    let three_way = plan.iter().filter(|(t, o, _)| *o != t.created_on).count();
    eprintln!(
        "[api] {PROBES} probes; {three_way} created on a node that does not own them: {:?}",
        plan.iter()
            .map(|(t, o, x)| format!(
                "created on {}, owned by {o}, cancelled on {x}",
                t.created_on
            ))
            .collect::<Vec<_>>()
    );
    assert!(three_way > 0, "no probe landed on another node's partition");

    // Each probe fires its first slot (the create reached the owner in time) and a second.
    let ids: Vec<Uuid> = plan.iter().map(|p| p.0.id).collect();
    wait_for(
        "two deliveries of every probe",
        Duration::from_secs(20),
        50,
        || {
            let d = c.deliveries();
            let ok = ids
                .iter()
                .all(|id| d.iter().filter(|x| x.task == *id).count() >= 2);
            async move { ok.then_some(()) }
        },
        || format!("{} deliveries so far", c.sink.len()),
    )
    .await;
    let d = c.deliveries();
    let mut first_late = Vec::new();
    for (t, owner, _) in &plan {
        let first = d
            .iter()
            .filter(|x| x.task == t.id && x.slot == t.first_slot)
            .map(|x| x.at)
            .min();
        let first = first.unwrap_or_else(|| {
            panic!(
                "probe {} (created on {}, owned by {owner}) never delivered its first slot {}",
                t.id, t.created_on, t.first_slot
            )
        });
        first_late.push(first - t.first_slot);
    }
    eprintln!(
        "[api] first slot lateness per probe (ms): {first_late:?} (creates answered by {} ms \
         before the first slot at least)",
        plan.iter().map(|p| p.0.first_slot).min().unwrap() - created_at
    );
    assert!(
        first_late.iter().all(|l| *l < 1000),
        "a probe's first slot came a second or more late: {first_late:?}"
    );

    // Cancel each on its canceller.
    let mut answered = Vec::new();
    for (t, _, canceller) in &plan {
        let (status, v) = c
            .node(canceller)
            .put(&format!("/api/v1/tasks/{}/cancel", t.id))
            .await;
        assert_eq!(status, 200, "cancel of {} on {canceller}: {v}", t.id);
        answered.push(now_ms());
    }
    pause(3000).await;

    let d = c.observe();
    for ((t, owner, canceller), at) in plan.iter().zip(&answered) {
        let after: Vec<i64> = d
            .iter()
            .filter(|x| x.task == t.id && x.slot > at + 1000)
            .map(|x| x.slot - at)
            .collect();
        let last = d
            .iter()
            .filter(|x| x.task == t.id)
            .map(|x| x.slot - at)
            .max();
        eprintln!(
            "[api] probe owned by {owner}, cancelled on {canceller}: last slot delivered \
             {last:?} ms after the cancel answered"
        );
        assert!(
            after.is_empty(),
            "probe {} (owned by {owner}) kept firing after its cancel on {canceller} answered: \
             slots at {after:?} ms after it",
            t.id
        );
        // Every node shows the same stopped task. (Its execution_count may be one short of
        // the deliveries: an advance batched behind the cancel never touches a stopped task.)
        let mut views = Vec::new();
        for n in &names {
            let (status, v) = c.node(n).get(&format!("/api/v1/tasks/{}", t.id)).await;
            assert_eq!(status, 200, "view on {n}: {v}");
            assert_eq!(v["status"], "stopped", "view of {} on {n}: {v}", t.id);
            assert!(v["execution_count"].as_i64() >= Some(1), "{v}");
            views.push(v);
        }
        assert!(
            views.windows(2).all(|w| w[0] == w[1]),
            "the nodes show {} differently: {views:?}",
            t.id
        );
        let (status, v) = c
            .node(&t.created_on)
            .get(&format!("/api/v1/tasks/{}/logs", t.id))
            .await;
        assert_eq!(status, 200, "logs on {}: {v}", t.created_on);
        assert!(
            v["logs"].as_array().is_some_and(|l| l.len() >= 2),
            "logs of {} on {}: {v}",
            t.id,
            t.created_on
        );
    }
}

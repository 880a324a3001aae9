//! 1. Steady state: three nodes, the load spread over all three; over about 8 s nothing is
//!    missed, nothing delivered twice, and each task is delivered by its partition's owner.

use std::time::Duration;

use crate::analysis::{check_logs, settle};
use crate::cluster::{Cluster, Config, TaskInfo};
use crate::procs::now_ms;

#[actix_web::test]
async fn steady_state_three_nodes_nothing_missed_nothing_twice() {
    let (mut c, own) = Cluster::loaded(Config::default()).await;
    let names = c.names();

    for n in &names {
        let parts = own.partitions_of(n).len();
        let tasks = own.tasks_of(n, &c.tasks).len();
        eprintln!("[steady] {n}: {parts} partitions, {tasks} tasks");
        assert!(
            tasks > 0,
            "node {n} owns no task of the load: {}",
            own.summary()
        );
    }

    let from = now_ms() + 500;
    let to = from + 8000;
    settle(to).await;
    let d = c.observe();
    let all: Vec<&TaskInfo> = c.tasks.iter().collect();
    let r = c.analyse("steady", &d, &all, from, to).await;
    r.assert_clean();

    // Who sent what: every delivery by the owner of the task's partition, every node's tasks
    // delivered by that node.
    let window: Vec<_> = d
        .iter()
        .filter(|x| x.slot >= from && x.slot <= to)
        .cloned()
        .collect();
    eprintln!(
        "[steady] deliveries per node: {:?}",
        Cluster::per_node(&window)
    );
    let untraced = window.iter().filter(|x| x.node.is_none()).count();
    assert_eq!(
        untraced, 0,
        "the sink could not trace {untraced} deliveries to a node (test harness)"
    );
    let wrong = Cluster::misattributed(&own, &window, i64::MIN, i64::MAX);
    assert!(
        wrong.is_empty(),
        "{} deliveries by a node that does not own the task's partition, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    for n in &names {
        let by_n = window
            .iter()
            .filter(|x| x.node.as_deref() == Some(n.as_str()))
            .count();
        assert!(by_n > 0, "node {n} delivered nothing");
    }

    // The membership did not move meanwhile.
    let again = c.wait_settled(&names, Duration::from_secs(10)).await;
    assert_eq!(own, again, "ownership changed in a steady cluster");

    // Every Redis key belongs to this cluster's root.
    let keys = c.redis.keys();
    let root = c.root.trim_start_matches('/').to_string();
    let foreign: Vec<&String> = keys.iter().filter(|k| !k.contains(&root)).collect();
    eprintln!("[steady] {} Redis keys", keys.len());
    assert!(
        foreign.is_empty(),
        "Redis keys outside the cluster root {}: {:?}",
        c.root,
        &foreign[..foreign.len().min(5)]
    );

    let db = c.db.connect().await;
    check_logs(&db, &d, &c.tasks, from, to, Duration::from_secs(15), |_| {
        false
    })
    .await
    .assert_consistent("steady");
}

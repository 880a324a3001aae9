//! 4. A fourth node joins a loaded cluster of three: all four agree on the membership, the
//!    newcomer takes partitions only from the others (nothing moves between the old members),
//!    and over the hand-over nothing is missed or delivered twice.

use std::time::Duration;

use crate::analysis::{check_logs, settle};
use crate::cluster::{Cluster, Config, TaskInfo};
use crate::procs::{now_ms, stamp};

#[actix_web::test]
async fn a_fourth_node_joins_without_a_missed_or_duplicate_slot() {
    let (mut c, before) = Cluster::loaded(Config::default()).await;

    let join_at = now_ms();
    c.add_node("n4").await;
    let ready_at = now_ms();
    let names = c.names();
    let after = c.wait_settled(&names, Duration::from_secs(30)).await;
    let settled_at = now_ms();
    eprintln!(
        "[join] n4 started at {}, ready {} ms later, membership of 4 agreed {} ms after the \
         start: {}",
        stamp(join_at),
        ready_at - join_at,
        settled_at - join_at,
        after.summary()
    );
    assert!(!after.partitions_of("n4").is_empty());
    let moves = before.moves_to(&after);
    let between_old: Vec<_> = moves.iter().filter(|m| m.2 != "n4").collect();
    eprintln!(
        "[join] {} partitions moved, all to n4: {}",
        moves.len(),
        between_old.is_empty()
    );
    assert!(
        between_old.is_empty(),
        "partitions moved between old members when n4 joined (the assignment should move as \
         few as possible): {between_old:?}"
    );

    let from = join_at - 3000;
    let to = settled_at + 5000;
    settle(to).await;
    let d = c.observe();
    let all: Vec<&TaskInfo> = c.tasks.iter().collect();
    let r = c.analyse("join", &d, &all, from, to).await;
    r.assert_clean();
    let n4_tasks: Vec<&TaskInfo> = after.tasks_of("n4", &c.tasks);
    c.analyse("join: n4's tasks", &d, &n4_tasks, from, to).await;

    // After the hand-over, n4 delivers its tasks and nobody else does.
    let late = settled_at + 2000;
    let wrong = Cluster::misattributed(&after, &d, late, i64::MAX);
    assert!(
        wrong.is_empty(),
        "{} deliveries after the join by a node that does not own the task's partition, e.g. \
         {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    let by_n4 = d
        .iter()
        .filter(|x| x.at >= late && x.node.as_deref() == Some("n4"))
        .count();
    eprintln!(
        "[join] n4 delivered {by_n4} times in the last {} ms",
        to - late
    );
    assert!(by_n4 > 0, "n4 delivered nothing after joining");

    let db = c.db.connect().await;
    check_logs(&db, &d, &c.tasks, from, to, Duration::from_secs(15), |_| {
        false
    })
    .await
    .assert_consistent("join");
}
